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
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A path segment from a system or dataset name: letters, digits, `_`,
/// `-` and `.` kept, anything else becomes `_`; never empty, never `..`.
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
pub struct Archive<W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<W>>,
    export_id: String,
    created_at: String,
    datasets: Vec<DatasetEntry>,
    files: Vec<FileEntry>,
}

impl<W: Write> Archive<W> {
    pub fn new(out: W, export_id: &str, created_at: &str) -> Self {
        Self {
            zip: zip::ZipWriter::new_stream(out),
            export_id: export_id.to_owned(),
            created_at: created_at.to_owned(),
            datasets: vec![],
            files: vec![],
        }
    }

    fn options() -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true)
    }

    /// Writes one file, hashing what is written.
    fn file(
        &mut self,
        path: String,
        body: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        self.zip.start_file(path.as_str(), Self::options())?;
        let mut h = Hashing {
            inner: &mut self.zip,
            hash: Sha256::new(),
            bytes: 0,
        };
        body(&mut h)?;
        let (sha, bytes) = (hex::encode(h.hash.finalize()), h.bytes);
        self.files.push(FileEntry {
            path,
            bytes,
            sha256: sha,
        });
        Ok(())
    }

    /// Adds a dataset: `{system}/{name}.json` (an array of objects) and
    /// `{system}/{name}.csv` (one column per name in `columns`, values as
    /// text, nested values as JSON). `rows` is called twice, once per file,
    /// so a source can stream from its store each time.
    pub fn dataset<I>(
        &mut self,
        system: &str,
        name: &str,
        columns: &[String],
        rows: impl Fn() -> I,
    ) -> Result<u64, ExportError>
    where
        I: Iterator<Item = serde_json::Map<String, serde_json::Value>>,
    {
        if self.datasets.len() >= MAX_DATASETS {
            return Err(ExportError::Invalid(format!(
                "an archive holds at most {MAX_DATASETS} datasets"
            )));
        }
        let base = format!("{}/{}", segment(system), segment(name));
        if self.files.iter().any(|f| f.path == format!("{base}.json")) {
            return Err(ExportError::Invalid(format!("dataset {base} added twice")));
        }
        let mut count = 0u64;
        self.file(format!("{base}.json"), |w| {
            w.write_all(b"[")?;
            for (i, row) in rows().enumerate() {
                if i as u64 >= MAX_ROWS_PER_DATASET {
                    return Err(ExportError::Invalid(format!(
                        "a dataset holds at most {MAX_ROWS_PER_DATASET} rows"
                    )));
                }
                if i > 0 {
                    w.write_all(b",")?;
                }
                w.write_all(b"\n")?;
                serde_json::to_writer(&mut *w, &row).map_err(std::io::Error::other)?;
                count += 1;
            }
            w.write_all(b"\n]\n")?;
            Ok(())
        })?;
        self.file(format!("{base}.csv"), |w| {
            // A BOM so spreadsheet programs read UTF-8 (Chinese) correctly.
            w.write_all("\u{feff}".as_bytes())?;
            let mut c = csv::Writer::from_writer(w);
            c.write_record(columns).map_err(std::io::Error::other)?;
            for row in rows().take(MAX_ROWS_PER_DATASET as usize) {
                let rec: Vec<String> = columns
                    .iter()
                    .map(|k| match row.get(k) {
                        None | Some(serde_json::Value::Null) => String::new(),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                    })
                    .collect();
                c.write_record(&rec).map_err(std::io::Error::other)?;
            }
            c.flush()?;
            Ok(())
        })?;
        self.datasets.push(DatasetEntry {
            system: system.to_owned(),
            name: name.to_owned(),
            rows: count,
            columns: columns.to_vec(),
        });
        Ok(count)
    }

    /// Writes the README and the manifest and closes the archive.
    pub fn finish(mut self) -> Result<(W, Manifest), ExportError> {
        let readme = readme(&self.export_id, &self.created_at, &self.datasets);
        self.file("README.md".into(), |w| {
            w.write_all(readme.as_bytes())?;
            Ok(())
        })?;
        let manifest = Manifest {
            format: "lethe-export/1".into(),
            export_id: self.export_id.clone(),
            created_at: self.created_at.clone(),
            datasets: self.datasets.clone(),
            files: self.files.clone(),
        };
        self.zip.start_file("manifest.json", Self::options())?;
        serde_json::to_writer_pretty(&mut self.zip, &manifest).map_err(std::io::Error::other)?;
        let out = self.zip.finish()?.into_inner();
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
