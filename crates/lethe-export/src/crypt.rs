//! Encryption at rest: XChaCha20-Poly1305 in the STREAM construction
//! (big-endian 32-bit segment counter, last-segment flag), 64 KiB segments.
//! A truncated, reordered or altered file fails to open.
//!
//! Layout: `LETHEX1\0` (8 bytes), the 19-byte stream nonce, then segments
//! of ciphertext + 16-byte tag.

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use std::io::{Read, Write};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const KEY_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"LETHEX1\0";
const NONCE_LEN: usize = 19;
const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;

/// An archive key. Zeroed on drop; destroying it destroys the archive.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::fill(&mut k);
        Self(k)
    }
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        Self(b)
    }
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

fn aead(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new((&key.0).into())
}

fn crypto_err() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the archive file is damaged or the key is wrong",
    )
}

/// Encrypts what is written to it; call [`SealWriter::finish`] at the end.
pub struct SealWriter<W: Write> {
    out: W,
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    buf: Vec<u8>,
}

/// Starts an encrypted file on `out` under `key`.
pub fn seal<W: Write>(key: &Key, mut out: W) -> std::io::Result<SealWriter<W>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    out.write_all(MAGIC)?;
    out.write_all(&nonce)?;
    Ok(SealWriter {
        out,
        enc: Some(EncryptorBE32::from_aead(aead(key), (&nonce).into())),
        buf: Vec::with_capacity(SEGMENT),
    })
}

impl<W: Write> SealWriter<W> {
    /// Encrypts the last segment and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let enc = self.enc.take().ok_or_else(crypto_err)?;
        let ct = enc
            .encrypt_last(self.buf.as_slice())
            .map_err(|_| crypto_err())?;
        self.buf.zeroize();
        self.out.write_all(&ct)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == SEGMENT {
                let enc = self.enc.as_mut().ok_or_else(crypto_err)?;
                let ct = enc
                    .encrypt_next(self.buf.as_slice())
                    .map_err(|_| crypto_err())?;
                self.out.write_all(&ct)?;
                self.buf.zeroize();
                self.buf.clear();
            }
            let n = rest.len().min(SEGMENT - self.buf.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // Segments are written whole; what is buffered goes out at finish.
        self.out.flush()
    }
}

/// Decrypts an archive file as it is read.
pub struct OpenReader<R: Read> {
    inp: R,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    plain: Vec<u8>,
    pos: usize,
    /// One byte read ahead to learn whether a full segment is the last.
    ahead: Option<u8>,
}

/// Opens an encrypted archive file under `key`.
pub fn open<R: Read>(key: &Key, mut inp: R) -> std::io::Result<OpenReader<R>> {
    let mut head = [0u8; 8 + NONCE_LEN];
    inp.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a Lethe export file",
        ));
    }
    let nonce: [u8; NONCE_LEN] = head[8..].try_into().map_err(|_| crypto_err())?;
    Ok(OpenReader {
        inp,
        dec: Some(DecryptorBE32::from_aead(aead(key), (&nonce).into())),
        plain: vec![],
        pos: 0,
        ahead: None,
    })
}

impl<R: Read> OpenReader<R> {
    /// Reads the next segment; `false` at the end.
    fn next_segment(&mut self) -> std::io::Result<bool> {
        if self.dec.is_none() {
            return Ok(false);
        }
        let mut seg = Vec::with_capacity(SEGMENT + TAG);
        if let Some(b) = self.ahead.take() {
            seg.push(b);
        }
        let want = SEGMENT + TAG - seg.len();
        (&mut self.inp).take(want as u64).read_to_end(&mut seg)?;
        let mut one = [0u8; 1];
        let more = self.inp.read(&mut one)? == 1;
        let plain = if more && seg.len() == SEGMENT + TAG {
            self.ahead = Some(one[0]);
            let dec = self.dec.as_mut().ok_or_else(crypto_err)?;
            dec.decrypt_next(seg.as_slice()).map_err(|_| crypto_err())?
        } else if more {
            return Err(crypto_err());
        } else {
            let dec = self.dec.take().ok_or_else(crypto_err)?;
            dec.decrypt_last(seg.as_slice()).map_err(|_| crypto_err())?
        };
        self.plain.zeroize();
        self.plain = plain;
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.plain.len() {
            if !self.next_segment()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> Drop for OpenReader<R> {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}
