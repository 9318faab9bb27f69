//! The data directory of one node:
//!
//! - `log.jsonl`: a header line `{"base_index":I,"base_epoch":E}` naming the snapshot the log
//!   continues, then one [`Entry`] per line. Appended with one fsync per batch; rewritten
//!   atomically when the base changes (compaction, snapshot installation).
//! - `snapshot.json`: the state after entry `index` (`{"index":..,"epoch":..,"map":[[k,v],..]}`).
//! - `meta.json`: the [`Meta`] (epoch, the epoch's leader, distrust mark).
//!
//! Files other than the log are only ever replaced atomically (write a temporary file, fsync
//! it, rename it over the old one, fsync the directory), so a crash leaves the old or the new
//! version, never a mix. The log's last line may be torn by a crash mid-append; recovery
//! discards it (it was never fsynced, so never acknowledged) and truncates the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::state::{Durable, Meta, Snapshot};
use crate::refnode::protocol::Entry;

pub const LOG_FILE: &str = "log.jsonl";
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const META_FILE: &str = "meta.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct LogHeader {
    base_index: u64,
    base_epoch: u64,
}

/// An open data directory.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    log: File,
}

/// What [`Storage::open`] found, and what it had to repair on the way (for the log file).
#[derive(Debug)]
pub struct Recovery {
    pub durable: Durable,
    pub notes: Vec<String>,
}

impl Storage {
    /// Opens (creating if needed) the data directory and recovers its contents. Fails with a
    /// message naming the file when the directory cannot be read or is inconsistent.
    pub fn open(dir: &Path) -> anyhow::Result<(Storage, Recovery)> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let snapshot: Snapshot = read_json(&dir.join(SNAPSHOT_FILE))?.unwrap_or_default();
        let meta: Option<Meta> = read_json(&dir.join(META_FILE))?;
        let log_path = dir.join(LOG_FILE);
        let mut notes = Vec::new();
        let base = LogHeader {
            base_index: snapshot.index,
            base_epoch: snapshot.epoch,
        };
        let bytes = match fs::read(&log_path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => bail!("cannot read {}: {e}", log_path.display()),
        };
        let (entries, rewrite) = match bytes {
            None => (Vec::new(), true),
            Some(bytes) => {
                let parsed = parse_log(&bytes, &log_path)?;
                if let Some(torn) = parsed.torn_bytes {
                    truncate(&log_path, parsed.valid_len)?;
                    notes.push(format!(
                        "discarded a torn last line of {torn} bytes in {LOG_FILE} (a crash during an append; it was never acknowledged)"
                    ));
                }
                reconcile(
                    parsed.header,
                    parsed.entries,
                    &snapshot,
                    &log_path,
                    &mut notes,
                )?
            }
        };
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            log: open_append(&log_path)?,
        };
        if rewrite {
            storage
                .rewrite_log(base, &entries)
                .with_context(|| format!("cannot write {}", log_path.display()))?;
        }
        Ok((
            storage,
            Recovery {
                durable: Durable {
                    snapshot,
                    entries,
                    meta,
                },
                notes,
            },
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `entries` and fsyncs once.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(entries.len() * 64);
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.log.write_all(&buf)?;
        self.log.sync_data()
    }

    pub fn write_meta(&mut self, meta: &Meta) -> io::Result<()> {
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        write_atomically(&self.dir, META_FILE, &bytes)
    }

    /// Makes `snapshot` the base and `keep` the whole log after it. The snapshot is written
    /// first: a crash between the two leaves a log whose header predates the snapshot, which
    /// recovery recognises (see [`reconcile`]).
    pub fn replace(&mut self, snapshot: &Snapshot, keep: &[Entry]) -> io::Result<()> {
        let bytes = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
        write_atomically(&self.dir, SNAPSHOT_FILE, &bytes)?;
        self.rewrite_log(
            LogHeader {
                base_index: snapshot.index,
                base_epoch: snapshot.epoch,
            },
            keep,
        )
    }

    /// Makes `entries` the whole log after the current snapshot (`base_index`, `base_epoch`):
    /// a follower dropping a conflicting suffix.
    pub fn truncate(
        &mut self,
        base_index: u64,
        base_epoch: u64,
        entries: &[Entry],
    ) -> io::Result<()> {
        self.rewrite_log(
            LogHeader {
                base_index,
                base_epoch,
            },
            entries,
        )
    }

    fn rewrite_log(&mut self, header: LogHeader, entries: &[Entry]) -> io::Result<()> {
        let mut buf = serde_json::to_vec(&header).map_err(io::Error::other)?;
        buf.push(b'\n');
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        write_atomically(&self.dir, LOG_FILE, &buf)?;
        // The old handle points at the replaced file.
        self.log = open_append(&self.dir.join(LOG_FILE))?;
        Ok(())
    }
}

struct ParsedLog {
    header: LogHeader,
    entries: Vec<Entry>,
    /// Length of the intact prefix.
    valid_len: u64,
    torn_bytes: Option<usize>,
}

fn parse_log(bytes: &[u8], path: &Path) -> anyhow::Result<ParsedLog> {
    let mut header = None;
    let mut entries: Vec<Entry> = Vec::new();
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
        let parsed = if header.is_none() {
            serde_json::from_slice::<LogHeader>(line).map(|h| header = Some(h))
        } else {
            serde_json::from_slice::<Entry>(line).map(|e| entries.push(e))
        };
        if let Err(e) = parsed {
            if is_last && header.is_some() {
                // A complete but garbled last line: the tail of a torn append.
                break;
            }
            bail!("{} is corrupt at line {line_no}: {e}", path.display());
        }
        pos += nl + 1;
    }
    let Some(header) = header else {
        bail!("{} has no header line", path.display());
    };
    let mut epoch = header.base_epoch;
    for (expected, e) in (header.base_index + 1..).zip(entries.iter()) {
        if e.index != expected || e.epoch < epoch {
            bail!(
                "{} is corrupt: entry {} (epoch {}) where index {expected} (epoch >= {epoch}) belongs",
                path.display(),
                e.index,
                e.epoch
            );
        }
        epoch = e.epoch;
    }
    Ok(ParsedLog {
        header,
        entries,
        valid_len: pos as u64,
        torn_bytes: (pos < bytes.len()).then(|| bytes.len() - pos),
    })
}

/// Fits the log to the snapshot; returns the entries after the snapshot and whether the log
/// file must be rewritten. The snapshot is always written before the log is rewritten, so
/// a log whose base is older than the snapshot means a crash in between:
/// - during compaction the log still contains the snapshot's entry (same index and epoch):
///   its entries after the snapshot remain valid;
/// - during a snapshot installation the log is the node's old, replaced one: none of it
///   continues the snapshot.
fn reconcile(
    header: LogHeader,
    mut entries: Vec<Entry>,
    snapshot: &Snapshot,
    path: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<(Vec<Entry>, bool)> {
    if header.base_index == snapshot.index && header.base_epoch == snapshot.epoch {
        return Ok((entries, false));
    }
    if header.base_index > snapshot.index {
        bail!(
            "{} continues index {} but {SNAPSHOT_FILE} ends at index {}: the data directory is inconsistent",
            path.display(),
            header.base_index,
            snapshot.index
        );
    }
    let continues = entries
        .iter()
        .any(|e| e.index == snapshot.index && e.epoch == snapshot.epoch);
    if continues {
        let before = entries.len();
        entries.retain(|e| e.index > snapshot.index);
        notes.push(format!(
            "{LOG_FILE} still held {} entries covered by the snapshot (a crash during compaction); dropped them",
            before - entries.len()
        ));
    } else {
        notes.push(format!(
            "discarded {} entries of {LOG_FILE} that do not continue the snapshot at index {} (a crash while installing it)",
            entries.len(),
            snapshot.index
        ));
        entries.clear();
    }
    Ok((entries, true))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is corrupt", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

fn truncate(path: &Path, len: u64) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot truncate the torn end of {}", path.display()))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old or the new file.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    // The rename is only durable once the directory itself is.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, epoch: u64, key: i64, value: i64) -> Entry {
        Entry::write(index, epoch, key, value)
    }

    fn reopen(dir: &Path) -> (Storage, Recovery) {
        Storage::open(dir).unwrap()
    }

    #[test]
    fn a_fresh_directory_is_fresh_and_appends_survive_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, r) = reopen(tmp.path());
        assert!(r.durable.is_fresh());
        s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20)]).unwrap();
        s.append(&[e(3, 2, 1, 11)]).unwrap();
        let meta = Meta {
            epoch: 2,
            epoch_leader: Some("n2".into()),
            suspect_from: None,
            voted_for: Some("n3".into()),
        };
        s.write_meta(&meta).unwrap();
        drop(s);
        let (_, r) = reopen(tmp.path());
        assert_eq!(r.durable.entries.len(), 3);
        assert_eq!(r.durable.meta, Some(meta));
        assert!(r.notes.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_discarded_and_later_appends_stay_readable() {
        for torn in [
            &b"{\"index\":3,\"ep"[..],
            b"{\"index\":3,\"epoch\"\n",
            b"\0\0\0",
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let (mut s, _) = reopen(tmp.path());
            s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20)]).unwrap();
            drop(s);
            let path = tmp.path().join(LOG_FILE);
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(torn)
                .unwrap();
            let (mut s, r) = reopen(tmp.path());
            assert_eq!(r.durable.entries.len(), 2);
            assert!(r.notes[0].contains("torn"), "{:?}", r.notes);
            s.append(&[e(3, 1, 3, 30)]).unwrap();
            drop(s);
            let (_, r) = reopen(tmp.path());
            assert_eq!(r.durable.entries.len(), 3);
            assert!(r.notes.is_empty());
        }
    }

    #[test]
    fn a_corrupt_line_before_the_end_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = reopen(tmp.path());
        s.append(&[e(1, 1, 1, 10)]).unwrap();
        drop(s);
        let path = tmp.path().join(LOG_FILE);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n{\"index\":2,\"epoch\":1,\"key\":1,\"value\":1}\n");
        fs::write(&path, text).unwrap();
        let err = Storage::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("log.jsonl is corrupt at line 3"), "{err}");
    }

    #[test]
    fn replace_installs_a_snapshot_and_recovery_resumes_after_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = reopen(tmp.path());
        s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20)]).unwrap();
        let snap = Snapshot {
            index: 5,
            epoch: 2,
            map: vec![(1, 1), (2, 2)],
        };
        s.replace(&snap, &[e(6, 2, 1, 3)]).unwrap();
        s.append(&[e(7, 3, 1, 4)]).unwrap();
        drop(s);
        let (_, r) = reopen(tmp.path());
        assert_eq!(r.durable.snapshot, snap);
        assert_eq!(
            r.durable
                .entries
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>(),
            vec![6, 7]
        );
    }

    #[test]
    fn truncation_survives_reopening_and_old_entries_still_load() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = reopen(tmp.path());
        s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20), e(3, 1, 3, 30)])
            .unwrap();
        s.truncate(0, 0, &[e(1, 1, 1, 10)]).unwrap();
        let noop = Entry {
            noop: true,
            ..e(2, 2, 0, 0)
        };
        s.append(std::slice::from_ref(&noop)).unwrap();
        drop(s);
        let (_, r) = reopen(tmp.path());
        assert_eq!(r.durable.entries, vec![e(1, 1, 1, 10), noop]);
        // A line written before entries had statements or no-ops.
        let old = br#"{"index":3,"epoch":2,"key":5,"value":6}"#;
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(LOG_FILE))
            .unwrap();
        f.write_all(old).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let (_, r) = reopen(tmp.path());
        assert_eq!(r.durable.entries[2], e(3, 2, 5, 6));
    }

    #[test]
    fn a_crash_between_snapshot_and_log_rewrite_is_repaired() {
        // Compaction: the old log contains the snapshot's entry, so what follows it is kept.
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = reopen(tmp.path());
        s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20), e(3, 1, 3, 30)])
            .unwrap();
        drop(s);
        let snap = Snapshot {
            index: 2,
            epoch: 1,
            map: vec![(1, 10), (2, 20)],
        };
        write_atomically(
            tmp.path(),
            SNAPSHOT_FILE,
            &serde_json::to_vec(&snap).unwrap(),
        )
        .unwrap();
        let (_, r) = reopen(tmp.path());
        assert_eq!(r.durable.entries, vec![e(3, 1, 3, 30)]);
        assert!(r.notes[0].contains("compaction"));

        // Installation: the old log diverges from the snapshot, so none of it is kept.
        let tmp = tempfile::tempdir().unwrap();
        let (mut s, _) = reopen(tmp.path());
        s.append(&[e(1, 1, 1, 10), e(2, 1, 2, 20)]).unwrap();
        drop(s);
        let snap = Snapshot {
            index: 2,
            epoch: 2,
            map: vec![(1, 99)],
        };
        write_atomically(
            tmp.path(),
            SNAPSHOT_FILE,
            &serde_json::to_vec(&snap).unwrap(),
        )
        .unwrap();
        let (_, r) = reopen(tmp.path());
        assert!(r.durable.entries.is_empty());
        assert!(r.notes[0].contains("discarded 2 entries"));
        let (_, r) = reopen(tmp.path());
        assert!(r.notes.is_empty(), "the repair was persisted");
    }

    #[test]
    fn a_corrupt_snapshot_or_meta_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(META_FILE), b"{nope").unwrap();
        let err = format!("{:#}", Storage::open(tmp.path()).unwrap_err());
        assert!(err.contains("meta.json is corrupt"), "{err}");
    }
}
