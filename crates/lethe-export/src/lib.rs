//! The data-export archive (PIPL Art. 45, GDPR Art. 15 and 20): what a
//! subject takes with them before erasure, or asks for on its own.
//!
//! - [`Archive`] writes a ZIP as a stream (no seeking, so it can go straight
//!   through [`seal`] to disk): per dataset one JSON file and one CSV file,
//!   a README in zh-CN and en describing each file, and `manifest.json` with
//!   the SHA-256 and size of every other file. Memory stays constant: rows
//!   are written as they come.
//! - [`seal`] / [`open`] encrypt and decrypt the archive at rest
//!   (XChaCha20-Poly1305 STREAM, 64 KiB segments); destroying the key is
//!   destroying the archive.
//! - [`verify`] reads an archive back and checks every file against the
//!   manifest.

mod crypt;

pub use crypt::{KEY_LEN, Key, OpenReader, SealWriter, open, seal};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use zip::write::SimpleFileOptions;

/// Rows one dataset may hold in an archive.
pub const MAX_ROWS_PER_DATASET: u64 = 10_000_000;
/// Datasets one archive may hold.
pub const MAX_DATASETS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing the archive failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the archive is malformed: {0}")]
    Zip(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{file}: {problem}")]
    Mismatch { file: String, problem: String },
}

impl From<zip::result::ZipError> for ExportError {
    fn from(e: zip::result::ZipError) -> Self {
        Self::Zip(e.to_string())
    }
}

/// One file of the archive as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// One dataset as the manifest and README describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetEntry {
    pub system: String,
    pub name: String,
    pub rows: u64,
    pub columns: Vec<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The export's id (the request or case it belongs to).
    pub export_id: String,
    pub created_at: String,
    pub datasets: Vec<DatasetEntry>,
    pub files: Vec<FileEntry>,
}

/// A writer that hashes and counts what goes through it.
fn segment(s: &str) -> String {
    let mut o: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if o.is_empty() || o.chars().all(|c| c == '.') {
        o = "_".into();
    }
    o
}

/// A streaming archive under construction.
///
/// Datasets are pushed row by row ([`Archive::begin_dataset`],
/// [`Archive::row`], [`Archive::end_dataset`]): each row goes into the
/// dataset's JSON file inside the ZIP, and into a CSV spool file on disk,
/// sealed under a key that exists only in memory; when the dataset ends,
/// the spool is copied into the ZIP as the CSV file and removed. One read
/// of the source gives both files, so they always agree, and memory stays
/// constant whatever the number of rows.
///
/// The work is split over three threads: the caller's formats rows (JSON
/// and CSV) and hashes the JSON; a dataset's CSV thread hashes its CSV and
/// deflates it into the sealed spool; a compressing thread owns the ZIP,
/// deflates the JSON it is sent and copies each deflated CSV spool in
/// verbatim. Each hand-over is a bounded queue of [`CHUNK`]-byte buffers.
/// So a dataset's JSON and CSV are compressed at the same time as its rows
/// are formatted, and nothing is compressed twice.
pub struct Archive<W: Write + Send + 'static> {
    zip: Option<Zipper<W>>,
    /// JSON bytes not yet handed to the compressing thread.
    pending: Vec<u8>,
    export_id: String,
    created_at: String,
    datasets: Vec<DatasetEntry>,
    files: Vec<FileEntry>,
    spool_dir: std::path::PathBuf,
    current: Option<Current>,
}

/// Bytes handed to the compressing thread at a time.
pub const CHUNK: usize = 64 * 1024;
/// Buffers waiting for the compressing thread at most (memory: this many
/// times [`CHUNK`]).
const QUEUE: usize = 16;
/// The deflate level: fast (1). Exports are read once; level 1 keeps most
/// of the size saving at a fraction of the time.
const LEVEL: i64 = 1;
/// A compressing thread this many buffers behind its producer stores what
/// it is given (DEFLATE stored blocks) instead of deflating it, until it is
/// back to [`DEFLATE_AT`] or fewer: on a busy machine the export is as fast
/// as its rows can be read and the archive is larger, never slower than
/// that. Content, hashes and the manifest do not depend on it.
const STORE_AT: usize = QUEUE * 3 / 4;
/// See [`STORE_AT`].
const DEFLATE_AT: usize = QUEUE / 4;
/// Deflating that does not pay is stopped for a while: a buffer of at least
/// [`PROBE_MIN`] bytes that deflates to 15/16 of its size or more (random
/// tokens, hashes, media already compressed: level 1's static codes save
/// nothing on them) has the next [`SKIP_AFTER_POOR`] buffers stored, then
/// deflating is tried again. Data that compresses is deflated throughout.
const SKIP_AFTER_POOR: u32 = 15;
/// See [`SKIP_AFTER_POOR`].
const PROBE_MIN: u64 = (CHUNK / 2) as u64;
// Storing starts only with a queue that can hold that many, and stops lower.
const _: () = assert!(DEFLATE_AT < STORE_AT && STORE_AT <= QUEUE);

/// Lowers the calling thread's CPU priority (Linux: nice +10; a thread's
/// nice value is its own there). The compressing threads call it: deflating
/// is what an export can do without, so it gets the CPU time the rest of
/// the export (reading, formatting, hashing) and the server's requests
/// leave, and a compressor short of time falls behind and stores (see
/// [`STORE_AT`]) instead of slowing the export down.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; `who` 0 is this thread.
    // A refusal (a sandbox without the permission) leaves the priority
    // as it was, which is only slower.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Buffers sent to a compressing thread and not yet taken by it.
type Backlog = std::sync::Arc<std::sync::atomic::AtomicUsize>;

fn backlog_add(b: &Backlog) {
    b.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// One buffer taken: the backlog left behind it.
fn backlog_take(b: &Backlog) -> usize {
    b.fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(1)
}

/// Whether a compressor that is (or is not) storing should store next,
/// given its backlog.
fn store_next(storing: bool, backlog: usize) -> bool {
    if storing {
        backlog > DEFLATE_AT
    } else {
        backlog >= STORE_AT
    }
}

/// What the compressing thread is told to do.
enum ZipCmd {
    Start(String),
    Data(Vec<u8>),
    /// Copy a sealed spool of already deflated CSV in as the file `path`,
    /// verbatim (the spool is removed when the guard drops).
    Spool {
        path: String,
        spool: SpoolGuard,
        key: Key,
        /// CRC-32 and size of the plain CSV.
        crc32: u32,
        bytes: u64,
    },
    Finish,
}

/// The caller's end of the compressing thread.
struct Zipper<W: Write + Send + 'static> {
    tx: std::sync::mpsc::SyncSender<ZipCmd>,
    backlog: Backlog,
    thread: std::thread::JoinHandle<Result<W, ExportError>>,
}

impl<W: Write + Send + 'static> Zipper<W> {
    fn start(out: W) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ZipCmd>(QUEUE);
        let backlog = Backlog::default();
        let thread = std::thread::spawn({
            let backlog = backlog.clone();
            move || {
                background_priority();
                compress(out, rx, &backlog)
            }
        });
        Self {
            tx,
            backlog,
            thread,
        }
    }
}

fn zip_options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(LEVEL))
        .large_file(true)
}

/// The compressing thread: the ZIP is written here only. A queue closed
/// before `Finish` (the archive dropped half-way) ends it with an error,
/// never with a ZIP that looks complete.
///
/// Each entry's data is deflated here by a [`Deflater`] (raw DEFLATE
/// ending on a sync flush) and written into the entry as it is; the
/// entry's own compressor in `zip` is given nothing and ends the stream
/// with its empty final block when the entry is finished.
fn compress<W: Write>(
    out: W,
    rx: std::sync::mpsc::Receiver<ZipCmd>,
    backlog: &Backlog,
) -> Result<W, ExportError> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let mut entry: Option<Deflater> = None;
    loop {
        let cmd = rx.recv();
        if !matches!(cmd, Ok(ZipCmd::Data(_)))
            && let Some(d) = entry.take()
        {
            end_entry(&mut zip, d)?;
        }
        match cmd {
            Ok(ZipCmd::Start(path)) => {
                zip.start_file(path.as_str(), zip_options())?;
                entry = Some(Deflater::new());
            }
            Ok(ZipCmd::Data(buf)) => {
                let behind = backlog_take(backlog);
                let d = entry.as_mut().ok_or_else(|| {
                    ExportError::Invalid("data for the archive before its file".into())
                })?;
                // SAFETY (get_mut): only appended to, never sought; the
                // stream writer counts the bytes, so the entry's compressed
                // size is right.
                let out = unsafe { zip.get_mut() }
                    .ok_or_else(|| ExportError::Invalid("the archive is closed".into()))?;
                d.feed(&buf, behind, out)?;
            }
            Ok(ZipCmd::Spool {
                path,
                spool,
                key,
                crc32,
                bytes,
            }) => {
                zip.start_file(path.as_str(), zip_options())?;
                // The spool holds a raw DEFLATE stream of the CSV that ends
                // on a sync flush (byte-aligned, no final block); it goes
                // into the entry as it is, never compressed twice.
                // SAFETY (get_mut): as above.
                let out = unsafe { zip.get_mut() }
                    .ok_or_else(|| ExportError::Invalid("the archive is closed".into()))?;
                copy_spool(&spool.0, &key, out)?;
                // SAFETY (set_file_metadata): `bytes` and `crc32` were
                // computed over exactly the plain CSV that was deflated.
                unsafe { zip.set_file_metadata(bytes, crc32) }?;
            }
            Ok(ZipCmd::Finish) => return Ok(zip.finish()?.into_inner()),
            Err(_) => {
                return Err(ExportError::Invalid(
                    "the archive was abandoned before it was finished".into(),
                ));
            }
        }
    }
}

/// Copies a sealed spool into `out`: opened (decrypted) on a thread of its
/// own while this one writes (and the archive's sealing encrypts), so the
/// copy at the end of a dataset uses both cores.
fn copy_spool<W: Write>(path: &std::path::Path, key: &Key, out: &mut W) -> Result<(), ExportError> {
    let file = std::fs::File::open(path)?;
    let mut r = open(key, std::io::BufReader::with_capacity(CHUNK, file))?;
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let reader = s.spawn(move || -> std::io::Result<()> {
            loop {
                let mut buf = Vec::with_capacity(CHUNK);
                if (&mut r).take(CHUNK as u64).read_to_end(&mut buf)? == 0 {
                    return Ok(());
                }
                if tx.send(buf).is_err() {
                    // The writer stopped; its error is reported.
                    return Ok(());
                }
            }
        });
        let written = rx.iter().try_for_each(|buf| out.write_all(&buf));
        // The reader ends once the queue is dropped or the spool is read.
        drop(rx);
        let read = reader
            .join()
            .map_err(|_| ExportError::Invalid("the spool reader failed".into()))?;
        written?;
        read?;
        Ok(())
    })
}

/// Ends the entry being written: the rest of its DEFLATE stream, then its
/// CRC and size.
fn end_entry<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    mut d: Deflater,
) -> Result<(), ExportError> {
    // SAFETY (get_mut): as in `compress`.
    let out = unsafe { zip.get_mut() }
        .ok_or_else(|| ExportError::Invalid("the archive is closed".into()))?;
    let (crc32, bytes) = d.end(out)?;
    // SAFETY (set_file_metadata): the Deflater computed both over exactly
    // the plain bytes it deflated into this entry.
    unsafe { zip.set_file_metadata(bytes, crc32) }?;
    Ok(())
}

/// A raw DEFLATE stream that deflates at [`LEVEL`] while it keeps up with
/// its producer and stores while it falls behind (see [`STORE_AT`]), with
/// the CRC-32 and size of what it was given. It ends on a sync flush
/// (byte-aligned, no final block).
struct Deflater {
    z: flate2::Compress,
    storing: bool,
    /// Buffers still to store because deflating did not pay (see
    /// [`SKIP_AFTER_POOR`]).
    skip: u32,
    crc: crc32fast::Hasher,
    bytes: u64,
    buf: Vec<u8>,
}

impl Deflater {
    fn new() -> Self {
        Self {
            z: flate2::Compress::new(flate2::Compression::new(LEVEL as u32), false),
            storing: false,
            skip: 0,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    /// Compresses `input` into `out`; `behind` is the producer's lead
    /// (buffers waiting) and how well the last buffers deflated decide
    /// between deflating and storing.
    fn feed<W: Write>(&mut self, input: &[u8], behind: usize, out: &mut W) -> std::io::Result<()> {
        let store = store_next(self.storing, behind) || self.skip > 0;
        self.skip = self.skip.saturating_sub(1);
        if store && !self.storing {
            // What the compressor holds is written out and the stream is at
            // a byte boundary, where stored blocks begin.
            self.sync_flush(out)?;
        } else if !store && self.storing {
            // Deflating again with a fresh window: the compressor never
            // refers back past the stored bytes it did not see.
            self.z.reset();
        }
        self.storing = store;
        self.crc.update(input);
        self.bytes += input.len() as u64;
        if store {
            return store_into(input, out);
        }
        let (took, gave) = (self.z.total_in(), self.z.total_out());
        deflate_into(
            &mut self.z,
            input,
            flate2::FlushCompress::None,
            out,
            &mut self.buf,
        )?;
        let (took, gave) = (self.z.total_in() - took, self.z.total_out() - gave);
        if poor(took, gave) {
            self.skip = SKIP_AFTER_POOR;
        }
        Ok(())
    }

    /// Flushes what is pending (sync flush); the CRC-32 and size of all
    /// that was fed.
    fn end<W: Write>(&mut self, out: &mut W) -> std::io::Result<(u32, u64)> {
        if !self.storing {
            self.sync_flush(out)?;
        }
        Ok((self.crc.clone().finalize(), self.bytes))
    }

    /// A sync flush: everything fed so far is written, ending on a byte
    /// boundary (an empty stored block), with no final block.
    fn sync_flush<W: Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        deflate_into(
            &mut self.z,
            &[],
            flate2::FlushCompress::Sync,
            out,
            &mut self.buf,
        )
    }
}

/// Whether deflating `took` bytes into `gave` did not pay (see
/// [`SKIP_AFTER_POOR`]).
fn poor(took: u64, gave: u64) -> bool {
    took >= PROBE_MIN && gave.saturating_mul(16) >= took.saturating_mul(15)
}

/// Writes `input` as DEFLATE stored blocks (RFC 1951, 3.2.4: a byte-aligned
/// header with BFINAL 0 and BTYPE 00, LEN, NLEN, then the bytes), at most
/// 65,535 bytes each. The stream must be at a byte boundary.
fn store_into<W: Write>(input: &[u8], out: &mut W) -> std::io::Result<()> {
    for part in input.chunks(usize::from(u16::MAX)) {
        let len = u16::try_from(part.len()).map_err(std::io::Error::other)?;
        let [l0, l1] = len.to_le_bytes();
        let [n0, n1] = (!len).to_le_bytes();
        out.write_all(&[0, l0, l1, n0, n1])?;
        out.write_all(part)?;
    }
    Ok(())
}

/// The dataset being written.
struct Current {
    system: String,
    name: String,
    base: String,
    columns: Vec<String>,
    /// Where each column was found in the last row (rows of one table come
    /// with their fields in one order, so a column is found in one step).
    positions: Vec<usize>,
    rows: u64,
    hash: Sha256,
    bytes: u64,
    csv: csv::Writer<CsvSink>,
    /// The thread deflating, hashing and sealing the CSV into its spool.
    csv_thread: std::thread::JoinHandle<Result<CsvDone, ExportError>>,
    /// The spool file, removed when the dataset ends or the archive is
    /// dropped half-way.
    spool: SpoolGuard,
    spool_key: Key,
}

/// The caller's end of a dataset's CSV thread: buffers of [`CHUNK`] bytes
/// through a bounded queue.
struct CsvSink {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    backlog: Backlog,
    buf: Vec<u8>,
}

impl CsvSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        backlog_add(&self.backlog);
        match &self.tx {
            Some(tx) if tx.send(buf).is_ok() => Ok(()),
            _ => Err(std::io::Error::other("the CSV thread stopped")),
        }
    }
}

impl Write for CsvSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a dataset's CSV thread measured of the plain CSV.
struct CsvDone {
    sha256: [u8; 32],
    crc32: u32,
    bytes: u64,
}

/// A dataset's CSV thread: hashes (SHA-256 for the manifest; the
/// [`Deflater`] keeps the CRC-32 for the ZIP), deflates (or stores, when
/// behind) and seals what it is sent into the spool. The stream ends on a
/// sync flush, not a final block (see [`ZipCmd::Spool`]).
fn deflate_csv(
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    backlog: &Backlog,
    mut out: SealWriter<std::io::BufWriter<std::fs::File>>,
) -> Result<CsvDone, ExportError> {
    let mut d = Deflater::new();
    let mut sha = Sha256::new();
    for input in rx {
        let behind = backlog_take(backlog);
        sha.update(&input);
        d.feed(&input, behind, &mut out)?;
    }
    let (crc32, bytes) = d.end(&mut out)?;
    out.finish()?.flush()?;
    Ok(CsvDone {
        sha256: sha.finalize().into(),
        crc32,
        bytes,
    })
}

/// Feeds `input` to the compressor and writes what it gives out, until the
/// input is taken and nothing more is pending for `flush`.
fn deflate_into<W: Write>(
    z: &mut flate2::Compress,
    mut input: &[u8],
    flush: flate2::FlushCompress,
    out: &mut W,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    loop {
        buf.clear();
        let before = z.total_in();
        z.compress_vec(input, buf, flush)
            .map_err(std::io::Error::other)?;
        let taken = usize::try_from(z.total_in() - before).unwrap_or(input.len());
        input = &input[taken.min(input.len())..];
        out.write_all(buf)?;
        // A buffer not filled means the compressor has nothing pending.
        if input.is_empty() && buf.len() < buf.capacity() {
            return Ok(());
        }
    }
}

/// One row's fields in the order of its JSON object: each name (unescaped)
/// and its value's JSON text, borrowed from the row where it can be.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'a> Fields<'a> {
    /// The value of field `name`; `hint` is where it was in the last row
    /// and is updated when it moved.
    fn get(&self, name: &str, hint: Option<&mut usize>) -> Option<&'a serde_json::value::RawValue> {
        if let Some(h) = hint {
            if let Some((k, v)) = self.0.get(*h)
                && k == name
            {
                return Some(v);
            }
            let i = self.0.iter().position(|(k, _)| k == name)?;
            *h = i;
            return Some(self.0[i].1);
        }
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8).min(256));
                while let Some((k, val)) =
                    m.next_entry::<Name<'de>, &'de serde_json::value::RawValue>()?
                {
                    v.push((k.0, val));
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A field name: borrowed from the row unless it had escapes.
struct Name<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value as its CSV cell: text as it is, nothing for null or a missing
/// field, numbers and booleans as written, nested values as compact JSON.
fn csv_text(
    v: Option<&serde_json::value::RawValue>,
) -> Result<std::borrow::Cow<'_, str>, serde_json::Error> {
    use std::borrow::Cow;
    let Some(v) = v else {
        return Ok(Cow::Borrowed(""));
    };
    let s = v.get();
    Ok(match s.as_bytes().first() {
        Some(b'n') => Cow::Borrowed(""),
        // A string without escapes is its own text between the quotes.
        Some(b'"') if !s.contains('\\') => Cow::Borrowed(s.get(1..s.len() - 1).unwrap_or("")),
        Some(b'"') => Cow::Owned(serde_json::from_str::<String>(s)?),
        Some(b'{' | b'[') => Cow::Owned(serde_json::from_str::<serde_json::Value>(s)?.to_string()),
        _ => Cow::Borrowed(s),
    })
}

/// Removes a spool file however the dataset ends.
struct SpoolGuard(std::path::PathBuf);

impl Drop for SpoolGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl<W: Write + Send + 'static> Archive<W> {
    pub fn new(out: W, export_id: &str, created_at: &str) -> Self {
        Self {
            zip: Some(Zipper::start(out)),
            pending: Vec::with_capacity(CHUNK),
            export_id: export_id.to_owned(),
            created_at: created_at.to_owned(),
            datasets: vec![],
            files: vec![],
            spool_dir: std::env::temp_dir(),
            current: None,
        }
    }

    /// Where CSV spool files go (sealed; removed when each dataset ends).
    pub fn spool_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.spool_dir = dir.into();
        self
    }

    /// Hands a command to the compressing thread; if that thread stopped
    /// (it failed: the output refused a write, say), its error.
    fn send(&mut self, cmd: ZipCmd) -> Result<(), ExportError> {
        let Some(z) = self.zip.as_ref() else {
            return Err(ExportError::Invalid("the archive failed earlier".into()));
        };
        if matches!(cmd, ZipCmd::Data(_)) {
            backlog_add(&z.backlog);
        }
        if z.tx.send(cmd).is_ok() {
            return Ok(());
        }
        Err(self.stopped())
    }

    /// The compressing thread's error, once it has stopped.
    fn stopped(&mut self) -> ExportError {
        match self.zip.take().map(|z| z.thread.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => ExportError::Invalid("the compressing thread failed".into()),
            _ => ExportError::Invalid("the archive failed earlier".into()),
        }
    }

    /// Hands the buffered JSON bytes over.
    fn flush_pending(&mut self) -> Result<(), ExportError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let buf = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.send(ZipCmd::Data(buf))
    }

    /// Writes one whole file, hashing what is written.
    fn file(&mut self, path: String, body: &[u8]) -> Result<(), ExportError> {
        self.flush_pending()?;
        self.send(ZipCmd::Start(path.clone()))?;
        for chunk in body.chunks(CHUNK) {
            self.send(ZipCmd::Data(chunk.to_vec()))?;
        }
        self.files.push(FileEntry {
            path,
            bytes: body.len() as u64,
            sha256: hex::encode(Sha256::digest(body)),
        });
        Ok(())
    }

    /// Writes bytes of the current dataset's JSON file.
    fn json(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let c = self
            .current
            .as_mut()
            .ok_or_else(|| ExportError::Invalid("no dataset is open".into()))?;
        c.hash.update(bytes);
        c.bytes += bytes.len() as u64;
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Starts a dataset: `{system}/{name}.json` (an array of objects) and
    /// `{system}/{name}.csv` (one column per name in `columns`, values as
    /// text, nested values as JSON, a BOM so spreadsheets read UTF-8).
    pub fn begin_dataset(
        &mut self,
        system: &str,
        name: &str,
        columns: &[String],
    ) -> Result<(), ExportError> {
        if self.current.is_some() {
            return Err(ExportError::Invalid(
                "a dataset is still open; end it first".into(),
            ));
        }
        if self.datasets.len() >= MAX_DATASETS {
            return Err(ExportError::Invalid(format!(
                "an archive holds at most {MAX_DATASETS} datasets"
            )));
        }
        let base = format!("{}/{}", segment(system), segment(name));
        if self.files.iter().any(|f| f.path == format!("{base}.json")) {
            return Err(ExportError::Invalid(format!("dataset {base} added twice")));
        }
        let spool_key = Key::generate();
        let mut rnd = [0u8; 8];
        rand::fill(&mut rnd);
        let spool_path = self.spool_dir.join(format!(
            "{}.{}.csv.spool",
            segment(&self.export_id),
            hex::encode(rnd)
        ));
        let file = std::fs::File::create(&spool_path)?;
        let guard = SpoolGuard(spool_path);
        let sealed = seal(&spool_key, std::io::BufWriter::new(file))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let backlog = Backlog::default();
        let csv_thread = std::thread::spawn({
            let backlog = backlog.clone();
            move || {
                background_priority();
                deflate_csv(rx, &backlog, sealed)
            }
        });
        let mut sink = CsvSink {
            tx: Some(tx),
            backlog,
            buf: Vec::with_capacity(CHUNK),
        };
        // A BOM so spreadsheet programs read UTF-8 (Chinese) correctly.
        sink.write_all("\u{feff}".as_bytes())?;
        let mut csv = csv::Writer::from_writer(sink);
        csv.write_record(columns).map_err(std::io::Error::other)?;
        self.flush_pending()?;
        self.send(ZipCmd::Start(format!("{base}.json")))?;
        self.current = Some(Current {
            system: system.to_owned(),
            name: name.to_owned(),
            base,
            columns: columns.to_vec(),
            positions: (0..columns.len()).collect(),
            rows: 0,
            hash: Sha256::new(),
            bytes: 0,
            csv,
            csv_thread,
            spool: guard,
            spool_key,
        });
        self.json(b"[")
    }

    /// Adds one row to the open dataset.
    pub fn row(
        &mut self,
        row: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ExportError> {
        let text = serde_json::to_string(row).map_err(std::io::Error::other)?;
        self.row_json(&text)
    }

    /// Adds one row to the open dataset, given as the text of a JSON object
    /// (as a database builds it: `row_to_json`, `JSON_OBJECT`,
    /// `json_object`). The JSON file gets the text as it is (the database's
    /// column order and number forms: a `NUMERIC` keeps its digits); the CSV
    /// gets each column's value. Text that is not one JSON object is refused
    /// and nothing of it is written.
    pub fn row_json(&mut self, text: &str) -> Result<(), ExportError> {
        let Some(c) = self.current.as_mut() else {
            return Err(ExportError::Invalid("no dataset is open".into()));
        };
        if c.rows >= MAX_ROWS_PER_DATASET {
            return Err(ExportError::Invalid(format!(
                "a dataset holds at most {MAX_ROWS_PER_DATASET} rows"
            )));
        }
        // The error names the row and the kind of fault, never its content.
        let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| {
            let why = match e.classify() {
                serde_json::error::Category::Data => "not an object",
                serde_json::error::Category::Eof => "cut short",
                _ => "not valid JSON",
            };
            ExportError::Invalid(format!(
                "row {} of {} is not a JSON object ({why} at column {})",
                c.rows + 1,
                c.base,
                e.column()
            ))
        })?;
        // The CSV record first: a value that cannot be read leaves the
        // JSON file untouched.
        let mut record = Vec::with_capacity(c.columns.len());
        for (j, k) in c.columns.iter().enumerate() {
            let value = fields.get(k, c.positions.get_mut(j));
            record.push(csv_text(value).map_err(|_| {
                ExportError::Invalid(format!(
                    "row {} of {}, column {k}: the value cannot be read",
                    c.rows + 1,
                    c.base
                ))
            })?);
        }
        c.csv
            .write_record(record.iter().map(|f| f.as_bytes()))
            .map_err(std::io::Error::other)?;
        let start = self.pending.len();
        if c.rows > 0 {
            self.pending.push(b',');
        }
        self.pending.push(b'\n');
        self.pending.extend_from_slice(text.trim().as_bytes());
        let written = &self.pending[start..];
        c.hash.update(written);
        c.bytes += written.len() as u64;
        c.rows += 1;
        if self.pending.len() >= CHUNK {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Ends the open dataset: closes its JSON file and hands the CSV spool
    /// to the compressing thread. Returns the number of rows.
    pub fn end_dataset(&mut self) -> Result<u64, ExportError> {
        self.json(b"\n]\n")?;
        let Some(c) = self.current.take() else {
            return Err(ExportError::Invalid("no dataset is open".into()));
        };
        self.files.push(FileEntry {
            path: format!("{}.json", c.base),
            bytes: c.bytes,
            sha256: hex::encode(c.hash.finalize()),
        });
        let mut sink = c
            .csv
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // The last buffer, then the end of the queue: the thread finishes.
        let sent = sink.send();
        drop(sink.tx.take());
        let done = match c.csv_thread.join() {
            Ok(r) => r?,
            Err(_) => return Err(ExportError::Invalid("the CSV thread failed".into())),
        };
        sent?;
        self.flush_pending()?;
        let path = format!("{}.csv", c.base);
        self.send(ZipCmd::Spool {
            path: path.clone(),
            spool: c.spool,
            key: c.spool_key,
            crc32: done.crc32,
            bytes: done.bytes,
        })?;
        self.files.push(FileEntry {
            path,
            bytes: done.bytes,
            sha256: hex::encode(done.sha256),
        });
        self.datasets.push(DatasetEntry {
            system: c.system,
            name: c.name,
            rows: c.rows,
            columns: c.columns,
        });
        Ok(c.rows)
    }

    /// Adds a whole dataset from an iterator of rows.
    pub fn dataset<I>(
        &mut self,
        system: &str,
        name: &str,
        columns: &[String],
        rows: I,
    ) -> Result<u64, ExportError>
    where
        I: IntoIterator<Item = serde_json::Map<String, serde_json::Value>>,
    {
        self.begin_dataset(system, name, columns)?;
        for r in rows {
            self.row(&r)?;
        }
        self.end_dataset()
    }

    /// The datasets written so far.
    pub fn datasets(&self) -> &[DatasetEntry] {
        &self.datasets
    }

    /// Writes the README and the manifest and closes the archive.
    pub fn finish(mut self) -> Result<(W, Manifest), ExportError> {
        if self.current.is_some() {
            self.end_dataset()?;
        }
        let readme = readme(&self.export_id, &self.created_at, &self.datasets);
        self.file("README.md".into(), readme.as_bytes())?;
        let manifest = Manifest {
            format: "lethe-export/1".into(),
            export_id: self.export_id.clone(),
            created_at: self.created_at.clone(),
            datasets: self.datasets.clone(),
            files: self.files.clone(),
        };
        let body = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        self.send(ZipCmd::Start("manifest.json".into()))?;
        self.send(ZipCmd::Data(body))?;
        self.send(ZipCmd::Finish)?;
        let out = match self.zip.take().map(|z| z.thread.join()) {
            Some(Ok(r)) => r?,
            _ => return Err(ExportError::Invalid("the compressing thread failed".into())),
        };
        Ok((out, manifest))
    }
}

fn readme(export_id: &str, created_at: &str, datasets: &[DatasetEntry]) -> String {
    let mut s = format!(
        "# 个人信息副本 / Copy of your personal data\n\n\
         导出编号 Export: `{export_id}`  \n生成时间 Created: {created_at}\n\n\
         ## 中文\n\n\
         这是平台在注销前（或应您的请求）为您导出的个人信息副本。每个数据集有两个文件：\
         `.json`（完整数据，适合程序读取）和 `.csv`（表格，可用电子表格软件打开）。\
         `manifest.json` 列出每个文件的 SHA-256 校验值，可用于核对文件未被改动。\n\n\
         ## English\n\n\
         This is the copy of your personal data the platform exported before your account \
         was cancelled (or at your request). Each dataset has two files: `.json` (complete, \
         for programs) and `.csv` (a table for spreadsheet programs). `manifest.json` lists \
         the SHA-256 of every file, so you can check that none was altered.\n\n\
         ## 文件 / Files\n\n| 文件 File | 来源 Source | 行数 Rows | 列 Columns |\n|---|---|---|---|\n"
    );
    for d in datasets {
        let base = format!("{}/{}", segment(&d.system), segment(&d.name));
        s.push_str(&format!(
            "| `{base}.json`, `{base}.csv` | {} / {} | {} | {} |\n",
            d.system,
            d.name,
            d.rows,
            d.columns.join(", ")
        ));
    }
    s
}

/// Reads an archive and checks every file against its manifest: present,
/// same size, same SHA-256, and nothing extra. Returns the manifest.
pub fn verify<R: Read + Seek>(archive: R) -> Result<Manifest, ExportError> {
    let mut zip = zip::ZipArchive::new(archive)?;
    let manifest: Manifest = {
        let f = zip
            .by_name("manifest.json")
            .map_err(|_| ExportError::Invalid("the archive has no manifest.json".into()))?;
        serde_json::from_reader(f.take(16 * 1024 * 1024))
            .map_err(|e| ExportError::Invalid(format!("manifest.json: {e}")))?
    };
    let listed: std::collections::BTreeSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    for i in 0..zip.len() {
        let name = zip.by_index(i)?.name()?.into_owned();
        if name != "manifest.json" && !listed.contains(name.as_str()) {
            return Err(ExportError::Mismatch {
                file: name,
                problem: "is not in the manifest".into(),
            });
        }
    }
    for entry in &manifest.files {
        let mut f = zip
            .by_name(&entry.path)
            .map_err(|_| ExportError::Mismatch {
                file: entry.path.clone(),
                problem: "is missing".into(),
            })?;
        let mut h = Sha256::new();
        let bytes = std::io::copy(&mut f, &mut HashSink(&mut h))?;
        if bytes != entry.bytes || hex::encode(h.finalize()) != entry.sha256 {
            return Err(ExportError::Mismatch {
                file: entry.path.clone(),
                problem: "does not match its SHA-256 in the manifest".into(),
            });
        }
    }
    Ok(manifest)
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
