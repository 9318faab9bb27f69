//! The data directory of a multi-leader or leaderless node: one file, `replica.jsonl`, of
//! [`Record`]s, appended with one fsync per batch and rewritten atomically (temporary file,
//! fsync, rename, fsync of the directory) when the node compacts it. A crash mid-append can
//! tear only the last line, which was never fsynced and so never acknowledged; recovery drops
//! it and truncates the file. Any other unreadable line is corruption, reported with its line
//! number.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::replica::Record;

pub const REPLICA_FILE: &str = "replica.jsonl";

#[derive(Debug)]
pub struct ReplicaStorage {
    dir: PathBuf,
    file: File,
}

/// What [`ReplicaStorage::open`] found.
#[derive(Debug)]
pub struct ReplicaRecovery {
    pub records: Vec<Record>,
    pub notes: Vec<String>,
}

impl ReplicaStorage {
    pub fn open(dir: &Path) -> anyhow::Result<(ReplicaStorage, ReplicaRecovery)> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join(REPLICA_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => bail!("cannot read {}: {e}", path.display()),
        };
        let mut notes = Vec::new();
        let (records, valid_len) = parse(&bytes, &path)?;
        if valid_len < bytes.len() {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(valid_len as u64).and_then(|()| f.sync_all()))
                .with_context(|| format!("cannot truncate the torn end of {}", path.display()))?;
            notes.push(format!(
                "discarded a torn last line of {} bytes in {REPLICA_FILE} (a crash during an append; it was never acknowledged)",
                bytes.len() - valid_len
            ));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok((
            ReplicaStorage {
                dir: dir.to_path_buf(),
                file,
            },
            ReplicaRecovery { records, notes },
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `records` and fsyncs once.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let buf = encode(records)?;
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Makes `records` the whole file.
    pub fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let buf = encode(records)?;
        let tmp = self.dir.join(format!("{REPLICA_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(REPLICA_FILE))?;
        // The rename is only durable once the directory itself is.
        File::open(&self.dir)?.sync_all()?;
        // The old handle points at the replaced file.
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(REPLICA_FILE))?;
        Ok(())
    }
}

fn encode(records: &[Record]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(records.len() * 128);
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(io::Error::other)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// The records and the length of the intact prefix.
fn parse(bytes: &[u8], path: &Path) -> anyhow::Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    while pos < bytes.len() {
        line_no += 1;
        let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') else {
            // No newline: the append that wrote this was cut short.
            break;
        };
        let line = &bytes[pos..pos + nl];
        let is_last = pos + nl + 1 == bytes.len();
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => records.push(r),
            // A complete but garbled last line: the tail of a torn append.
            Err(_) if is_last => break,
            Err(e) => bail!("{} is corrupt at line {line_no}: {e}", path.display()),
        }
        pos += nl + 1;
    }
    Ok((records, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(key: i64, counter: u64) -> Record {
        Record::Counter { key, counter }
    }

    #[test]
    fn appends_and_rewrites_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, r) = ReplicaStorage::open(tmp.path()).unwrap();
        assert!(r.records.is_empty());
        s.append(&[
            Record::Actor {
                actor: "n1.1".into(),
            },
            counter(1, 1),
        ])
        .unwrap();
        s.append(&[counter(1, 2)]).unwrap();
        drop(s);
        let (mut s, r) = ReplicaStorage::open(tmp.path()).unwrap();
        assert_eq!(r.records.len(), 3);
        s.rewrite(&[counter(1, 2)]).unwrap();
        s.append(&[counter(2, 1)]).unwrap();
        drop(s);
        let (_, r) = ReplicaStorage::open(tmp.path()).unwrap();
        assert_eq!(r.records, vec![counter(1, 2), counter(2, 1)]);
        assert!(r.notes.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_middle_line_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = ReplicaStorage::open(tmp.path()).unwrap();
        s.append(&[counter(1, 1)]).unwrap();
        drop(s);
        let path = tmp.path().join(REPLICA_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"record\":\"coun").unwrap();
        drop(f);
        let (mut s, r) = ReplicaStorage::open(tmp.path()).unwrap();
        assert_eq!(r.records, vec![counter(1, 1)]);
        assert!(r.notes[0].contains("torn"), "{:?}", r.notes);
        s.append(&[counter(1, 2)]).unwrap();
        drop(s);
        let (_, r) = ReplicaStorage::open(tmp.path()).unwrap();
        assert_eq!(r.records.len(), 2);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("garbage\n{text}")).unwrap();
        let err = ReplicaStorage::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("replica.jsonl is corrupt at line 1"), "{err}");
    }
}
