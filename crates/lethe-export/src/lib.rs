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
///
/// Datasets are pushed row by row ([`Archive::begin_dataset`],
/// [`Archive::row`], [`Archive::end_dataset`]): each row goes straight into
/// the dataset's JSON file inside the ZIP, and into a CSV spool file on
/// disk, sealed under a key that exists only in memory; when the dataset
/// ends, the spool is copied into the ZIP as the CSV file and removed. One
/// read of the source gives both files, so they always agree, and memory
/// stays constant whatever the number of rows.
pub struct Archive<W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<W>>,
    export_id: String,
    created_at: String,
    datasets: Vec<DatasetEntry>,
    files: Vec<FileEntry>,
    spool_dir: std::path::PathBuf,
    current: Option<Current>,
}

/// The dataset being written.
struct Current {
    system: String,
    name: String,
    base: String,
    columns: Vec<String>,
    rows: u64,
    hash: Sha256,
    bytes: u64,
    csv: csv::Writer<SealWriter<std::io::BufWriter<std::fs::File>>>,
    /// The spool file, removed when the dataset ends or the archive is
    /// dropped half-way.
    spool: SpoolGuard,
    spool_key: Key,
}

/// Removes a spool file however the dataset ends.
struct SpoolGuard(std::path::PathBuf);

impl Drop for SpoolGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl<W: Write> Archive<W> {
    pub fn new(out: W, export_id: &str, created_at: &str) -> Self {
        Self {
            zip: zip::ZipWriter::new_stream(out),
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

    fn options() -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true)
    }

    /// Writes one whole file, hashing what is written.
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

    /// Writes bytes of the current dataset's JSON file.
    fn json(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let c = self
            .current
            .as_mut()
            .ok_or_else(|| ExportError::Invalid("no dataset is open".into()))?;
        self.zip.write_all(bytes)?;
        c.hash.update(bytes);
        c.bytes += bytes.len() as u64;
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
        let mut sealed = seal(&spool_key, std::io::BufWriter::new(file))?;
        // A BOM so spreadsheet programs read UTF-8 (Chinese) correctly.
        sealed.write_all("\u{feff}".as_bytes())?;
        let mut csv = csv::Writer::from_writer(sealed);
        csv.write_record(columns).map_err(std::io::Error::other)?;
        self.zip
            .start_file(format!("{base}.json"), Self::options())?;
        self.current = Some(Current {
            system: system.to_owned(),
            name: name.to_owned(),
            base,
            columns: columns.to_vec(),
            rows: 0,
            hash: Sha256::new(),
            bytes: 0,
            csv,
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
        let rows = match &self.current {
            Some(c) => c.rows,
            None => return Err(ExportError::Invalid("no dataset is open".into())),
        };
        if rows >= MAX_ROWS_PER_DATASET {
            return Err(ExportError::Invalid(format!(
                "a dataset holds at most {MAX_ROWS_PER_DATASET} rows"
            )));
        }
        let mut buf = Vec::with_capacity(256);
        if rows > 0 {
            buf.push(b',');
        }
        buf.push(b'\n');
        serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
        self.json(&buf)?;
        if let Some(c) = self.current.as_mut() {
            c.rows += 1;
            let rec = c.columns.iter().map(|k| match row.get(k) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            });
            c.csv.write_record(rec).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Ends the open dataset: closes its JSON file and copies the CSV spool
    /// into the archive. Returns the number of rows.
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
        let sealed = c
            .csv
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        sealed.finish()?.flush()?;
        let mut spool = open(
            &c.spool_key,
            std::io::BufReader::new(std::fs::File::open(&c.spool.0)?),
        )?;
        self.file(format!("{}.csv", c.base), |w| {
            std::io::copy(&mut spool, w)?;
            Ok(())
        })?;
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
