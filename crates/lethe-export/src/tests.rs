use super::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::io::Cursor;

fn rows() -> Vec<Map<String, Value>> {
    (0..1000)
        .map(|i| {
            json!({"id": i, "name": format!("张三 {i}"), "note": if i % 2 == 0 { json!(null) } else { json!({"a": [1, 2]}) }})
                .as_object()
                .cloned()
                .unwrap()
        })
        .collect()
}

fn build() -> (Vec<u8>, Manifest) {
    let data = rows();
    let mut a = Archive::new(Vec::new(), "exp-1", "2026-11-23T00:00:00Z");
    let cols = vec!["id".to_owned(), "name".to_owned(), "note".to_owned()];
    assert_eq!(
        a.dataset("shop", "users", &cols, data.iter().cloned())
            .unwrap(),
        1000
    );
    a.dataset("cache", "keys session:{subject}:*", &["key".into()], {
        std::iter::once(json!({"key": "s1"}).as_object().cloned().unwrap())
    })
    .unwrap();
    a.finish().unwrap()
}

#[test]
fn archive_has_json_csv_readme_and_a_manifest_that_verifies() {
    let (zip, manifest) = build();
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "shop/users.json",
            "shop/users.csv",
            "cache/keys_session__subject___.json",
            "cache/keys_session__subject___.csv",
            "README.md"
        ]
    );
    let checked = verify(Cursor::new(&zip)).unwrap();
    assert_eq!(checked, manifest);
    let mut z = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let mut json_text = String::new();
    z.by_name("shop/users.json")
        .unwrap()
        .read_to_string(&mut json_text)
        .unwrap();
    let back: Vec<Map<String, Value>> = serde_json::from_str(&json_text).unwrap();
    assert_eq!(back, rows());
    let mut csv_text = String::new();
    z.by_name("shop/users.csv")
        .unwrap()
        .read_to_string(&mut csv_text)
        .unwrap();
    let mut lines = csv_text.trim_start_matches('\u{feff}').lines();
    assert_eq!(lines.next(), Some("id,name,note"));
    assert_eq!(lines.next(), Some("0,张三 0,"));
    assert_eq!(lines.next(), Some("1,张三 1,\"{\"\"a\"\":[1,2]}\""));
    let mut readme = String::new();
    z.by_name("README.md")
        .unwrap()
        .read_to_string(&mut readme)
        .unwrap();
    assert!(readme.contains("个人信息副本") && readme.contains("Copy of your personal data"));
    assert!(readme.contains("`shop/users.json`") && readme.contains("| 1000 |"));
}

#[test]
fn verification_names_an_altered_file() {
    let (zip, _) = build();
    // Rebuild the archive with one file changed and the old manifest.
    let mut src = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut body = Vec::new();
        f.read_to_end(&mut body).unwrap();
        if name == "shop/users.csv" {
            body.extend_from_slice(b"999,forged,\n");
        }
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&body).unwrap();
    }
    let forged = out.finish().unwrap().into_inner();
    let e = verify(Cursor::new(&forged)).unwrap_err().to_string();
    assert!(e.contains("shop/users.csv") && e.contains("SHA-256"), "{e}");
}

#[test]
fn sealed_archives_open_only_with_their_key_and_intact() {
    let (zip, _) = build();
    let key = Key::generate();
    let mut w = seal(&key, Vec::new()).unwrap();
    w.write_all(&zip).unwrap();
    let sealed = w.finish().unwrap();
    assert!(sealed.len() > zip.len());
    assert!(!sealed.windows(6).any(|w| w == "张三".as_bytes()));
    let mut back = Vec::new();
    open(&key, Cursor::new(&sealed))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, zip);
    // Wrong key, truncation, a flipped bit: refused.
    let mut out = Vec::new();
    assert!(
        open(&Key::generate(), Cursor::new(&sealed))
            .unwrap()
            .read_to_end(&mut out)
            .is_err()
    );
    let cut = &sealed[..sealed.len() - 100];
    assert!(
        open(&key, Cursor::new(cut))
            .unwrap()
            .read_to_end(&mut out)
            .is_err()
    );
    let mut flipped = sealed.clone();
    flipped[40] ^= 1;
    assert!(
        open(&key, Cursor::new(&flipped))
            .unwrap()
            .read_to_end(&mut out)
            .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Any length, including exact multiples of the segment size.
    #[test]
    fn seal_open_round_trips(len in prop_oneof![0usize..200_000, Just(65_536usize), Just(131_072usize)], chunk in 1usize..70_000) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let key = Key::generate();
        let mut w = seal(&key, Vec::new()).unwrap();
        for c in data.chunks(chunk) {
            w.write_all(c).unwrap();
        }
        let sealed = w.finish().unwrap();
        let mut back = Vec::new();
        open(&key, Cursor::new(&sealed)).unwrap().read_to_end(&mut back).unwrap();
        prop_assert_eq!(back, data);
    }
}

#[test]
fn spool_files_are_sealed_and_removed_however_the_dataset_ends() {
    let dir = std::env::temp_dir().join(format!("lethe-spool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cols = vec!["name".to_owned()];
    let row = json!({"name": "张三的手机号"})
        .as_object()
        .cloned()
        .unwrap();
    // Half-way: the spool exists, holds no plaintext, and goes with the archive.
    {
        let mut a = Archive::new(Vec::new(), "exp-2", "t").spool_dir(&dir);
        a.begin_dataset("shop", "users", &cols).unwrap();
        for _ in 0..5000 {
            a.row(&row).unwrap();
        }
        let spools: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(spools.len(), 1);
        let bytes = std::fs::read(spools[0].as_ref().unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == "张三".as_bytes()));
        // A second dataset cannot start while one is open.
        assert!(a.begin_dataset("shop", "other", &cols).is_err());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // Completed: removed too, and JSON and CSV agree.
    let mut a = Archive::new(Vec::new(), "exp-3", "t").spool_dir(&dir);
    a.begin_dataset("shop", "users", &cols).unwrap();
    a.row(&row).unwrap();
    assert_eq!(a.end_dataset().unwrap(), 1);
    // The compressing thread copies the spool in and then removes it: gone
    // once the archive is finished.
    let (zip, m) = a.finish().unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(verify(Cursor::new(&zip)).unwrap(), m);
    assert!(a_row_without_dataset_is_refused());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_row_without_dataset_is_refused() -> bool {
    let mut a = Archive::new(Vec::new(), "exp-4", "t");
    a.row(&Map::new()).is_err() && a.end_dataset().is_err()
}

/// The CSV goes into the ZIP as it was deflated on its own thread (a raw
/// DEFLATE stream ended by the entry's own final block): an independent
/// reader (Python's zipfile, which checks every CRC and size) reads every
/// entry, including a CSV of many buffers and an empty dataset's.
#[test]
fn an_independent_zip_reader_reads_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Archive::new(Vec::new(), "exp-2", "2026-11-23T00:00:00Z").spool_dir(dir.path());
    let cols = vec!["id".to_owned(), "text".to_owned()];
    let big = (0..60_000).map(|i| {
        json!({"id": i, "text": format!("行 {i} {}", "x".repeat(i % 97))})
            .as_object()
            .cloned()
            .unwrap()
    });
    assert_eq!(a.dataset("shop", "orders", &cols, big).unwrap(), 60_000);
    assert_eq!(
        a.dataset("shop", "empty", &cols, std::iter::empty())
            .unwrap(),
        0
    );
    let (zip, manifest) = a.finish().unwrap();
    let path = dir.path().join("archive.zip");
    std::fs::write(&path, &zip).unwrap();
    let out = python_zipfile(
        &path,
        "json.dumps({n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist()})",
    );
    let sums: std::collections::BTreeMap<String, String> = serde_json::from_str(&out).unwrap();
    for f in &manifest.files {
        assert_eq!(sums.get(&f.path), Some(&f.sha256), "{}", f.path);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_compressor_stores_only_while_it_is_behind() {
    // Deflating: stays so below STORE_AT, stores from it on.
    assert!(!store_next(false, 0));
    assert!(!store_next(false, STORE_AT - 1));
    assert!(store_next(false, STORE_AT));
    // Storing: stays so until back to DEFLATE_AT (no flapping between).
    assert!(store_next(true, STORE_AT - 1));
    assert!(store_next(true, DEFLATE_AT + 1));
    assert!(!store_next(true, DEFLATE_AT));
}

/// Hex of random bytes: level 1 saves nothing on it.
fn random_hex(n: usize) -> Vec<u8> {
    let mut raw = vec![0u8; n / 2];
    rand::fill(&mut raw[..]);
    hex::encode(raw).into_bytes()
}

#[test]
fn deflating_that_does_not_pay_is_stopped_and_tried_again() {
    assert!(!poor(PROBE_MIN - 1, PROBE_MIN * 2), "too small to judge");
    assert!(poor(16_000 * 4, 15_000 * 4));
    assert!(!poor(16_000 * 4, 14_999 * 4));
    // Random hex, then JSON that compresses, then random hex again, with
    // the compressor never behind: the hex is stored after a probe, the
    // JSON is deflated, and the stream inflates back whole.
    let (hex1, json, hex2) = (
        random_hex(40 * CHUNK),
        text(120_000),
        random_hex(40 * CHUNK),
    );
    let mut d = Deflater::new();
    let mut out = Vec::new();
    let mut sizes = vec![];
    for part in [&hex1, &json, &hex2] {
        let before = out.len();
        for c in part.chunks(CHUNK) {
            d.feed(c, 0, &mut out).unwrap();
        }
        sizes.push(out.len() - before);
    }
    let (crc, bytes) = d.end(&mut out).unwrap();
    let all: Vec<u8> = [hex1.clone(), json.clone(), hex2.clone()].concat();
    assert_eq!((crc, bytes), (crc32fast::hash(&all), all.len() as u64));
    // Stored (plus block headers), not grown by a failed deflate.
    assert!(sizes[0] <= hex1.len() + hex1.len() / 100, "{sizes:?}");
    // The JSON after it was deflated: well under half its size.
    assert!(sizes[1] < json.len() / 2, "{sizes:?} of {}", json.len());
    assert!(sizes[2] <= hex2.len() + hex2.len() / 100, "{sizes:?}");
    out.extend_from_slice(&[0x03, 0x00]);
    let mut back = Vec::with_capacity(all.len() + 1);
    flate2::Decompress::new(false)
        .decompress_vec(&out, &mut back, flate2::FlushDecompress::Finish)
        .unwrap();
    assert_eq!(back, all);
}

fn text(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            format!("{{\"id\":{i},\"name\":\"张三 {}\"}},\n", i * 7919 % 10007).into_bytes()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever the backlog does, the stream switching between deflated and
    /// stored blocks inflates to exactly what was fed, with its CRC.
    #[test]
    fn a_stream_switching_between_deflate_and_store_inflates_back(
        behind in proptest::collection::vec(0usize..=QUEUE + 1, 1..40),
    ) {
        let data = text(20_000);
        let mut d = Deflater::new();
        let mut out = Vec::new();
        for (chunk, b) in data.chunks(CHUNK / 4).zip(behind.iter().cycle()) {
            d.feed(chunk, *b, &mut out).unwrap();
        }
        let (crc, bytes) = d.end(&mut out).unwrap();
        prop_assert_eq!(bytes, data.len() as u64);
        prop_assert_eq!(crc, crc32fast::hash(&data));
        // The entry's final block, as `zip` adds it: an empty fixed block.
        out.extend_from_slice(&[0x03, 0x00]);
        let mut back = Vec::with_capacity(data.len() + 1);
        let mut z = flate2::Decompress::new(false);
        z.decompress_vec(&out, &mut back, flate2::FlushDecompress::Finish).unwrap();
        prop_assert_eq!(back, data);
    }
}

/// The compressing thread far behind stores, caught up deflates; both in
/// one entry, read back by the zip crate and by Python's zipfile, which
/// check each entry's CRC and size.
#[test]
fn an_entry_both_stored_and_deflated_is_a_valid_zip_entry() {
    let data = text(40_000);
    let (tx, rx) = std::sync::mpsc::sync_channel::<ZipCmd>(QUEUE);
    let backlog = Backlog::default();
    let thread = std::thread::spawn({
        let backlog = backlog.clone();
        move || compress(Vec::new(), rx, &backlog)
    });
    tx.send(ZipCmd::Start("a.json".into())).unwrap();
    let half = data.len() / 2;
    // Far behind for the first half (each buffer taken still leaves a long
    // queue), caught up for the second.
    let far = 1_000_000;
    backlog.store(far, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for c in data[..half].chunks(CHUNK) {
        tx.send(ZipCmd::Data(c.to_vec())).unwrap();
        sent += 1;
    }
    tx.send(ZipCmd::Start("b.json".into())).unwrap();
    tx.send(ZipCmd::Data(b"{}".to_vec())).unwrap();
    tx.send(ZipCmd::Start("c.json".into())).unwrap();
    sent += 1;
    for c in data[..half].chunks(CHUNK) {
        tx.send(ZipCmd::Data(c.to_vec())).unwrap();
        sent += 1;
    }
    // Once the thread has taken all of those, it has caught up.
    while backlog.load(std::sync::atomic::Ordering::Relaxed) > far - sent {
        std::thread::yield_now();
    }
    backlog.store(0, std::sync::atomic::Ordering::Relaxed);
    for c in data[half..].chunks(CHUNK) {
        backlog_add(&backlog);
        tx.send(ZipCmd::Data(c.to_vec())).unwrap();
    }
    tx.send(ZipCmd::Finish).unwrap();
    let zip_bytes = thread.join().unwrap().unwrap();
    let mut z = zip::ZipArchive::new(Cursor::new(&zip_bytes)).unwrap();
    // a.json was stored whole; c.json's second half was deflated.
    let a = z.by_name("a.json").unwrap();
    let stored = a.compressed_size();
    assert!(stored >= a.size(), "a.json was stored");
    drop(a);
    let c = z.by_name("c.json").unwrap();
    assert!(
        c.compressed_size() < stored + (c.size() - stored) * 9 / 10,
        "c.json's second half was deflated"
    );
    drop(c);
    let mut read = |name: &str| {
        let mut v = Vec::new();
        z.by_name(name).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    assert_eq!(read("a.json"), data[..half]);
    assert_eq!(read("b.json"), b"{}");
    let mut c = data[..half].to_vec();
    c.extend_from_slice(&data[half..]);
    assert_eq!(read("c.json"), c);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.zip");
    std::fs::write(&path, &zip_bytes).unwrap();
    let out = python_zipfile(&path, "sum(len(z.read(n)) for n in z.namelist())");
    assert_eq!(out.trim(), (half + data.len() + 2).to_string());
}

/// Python's `zipfile` (an independent reader, which checks every entry's
/// CRC and size) opens the archive at `path`, tests it and prints `expr`
/// (the archive is `z`); what it printed.
fn python_zipfile(path: &std::path::Path, expr: &str) -> String {
    let script = format!(
        "import hashlib, json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint({expr})"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A database's row goes into the JSON file as the database wrote it (its
/// column order, a NUMERIC's digits) and into the CSV column by column;
/// text that is not one JSON object is refused, names the row and not its
/// content, and leaves nothing of it in either file.
#[test]
fn rows_as_json_text_go_in_as_written_and_bad_text_is_refused() {
    let cols: Vec<String> = ["id", "amount", "note", "tags", "gone", "quote"]
        .map(String::from)
        .to_vec();
    let mut a = Archive::new(Vec::new(), "exp-5", "t");
    a.begin_dataset("shop", "orders", &cols).unwrap();
    let first = r#"{"quote":"say \"hi\"\n","id":1,"amount":12345678901234567890.10,"note":"张三","tags":{"a": [1, 2]},"gone":null}"#;
    a.row_json(first).unwrap();
    for bad in [
        r#"["not", "an object"]"#,
        r#"{"id": 2, "note": "13800138000""#,
        "13800138000",
        "",
    ] {
        let e = a.row_json(bad).unwrap_err().to_string();
        assert!(e.contains("row 2 of shop/orders"), "{e}");
        assert!(
            !e.contains("13800138000") && !e.contains("object\"]"),
            "{e}"
        );
    }
    // Fields in another order, one missing: found by name.
    a.row_json(r#"{"amount":2,"id":3,"note":"李四"}"#).unwrap();
    assert_eq!(a.end_dataset().unwrap(), 2);
    let (zip, m) = a.finish().unwrap();
    assert_eq!(verify(Cursor::new(&zip)).unwrap(), m);
    let mut z = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    let mut json = String::new();
    z.by_name("shop/orders.json")
        .unwrap()
        .read_to_string(&mut json)
        .unwrap();
    assert_eq!(
        json,
        format!(
            "[\n{first},\n{}\n]\n",
            r#"{"amount":2,"id":3,"note":"李四"}"#
        )
    );
    let mut csv = String::new();
    z.by_name("shop/orders.csv")
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert_eq!(
        csv,
        "\u{feff}id,amount,note,tags,gone,quote\n\
         1,12345678901234567890.10,张三,\"{\"\"a\"\":[1,2]}\",,\"say \"\"hi\"\"\n\"\n\
         3,2,李四,,,\n"
    );
}
