//! The store: `store/<test-name>/<YYYYMMDDTHHMMSS>/` per run, plus a `latest` link beside it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

/// Creates a fresh run directory for `test_name` under `store` and points `latest` at it.
pub fn create_run_dir(store: &Path, test_name: &str) -> anyhow::Result<PathBuf> {
    let test_dir = store.join(test_name);
    std::fs::create_dir_all(&test_dir)
        .with_context(|| format!("cannot create the store directory {}", test_dir.display()))?;
    let stamp = utc_timestamp(SystemTime::now());
    // Two runs in the same second get -1, -2, ... rather than sharing a directory.
    let mut name = stamp.clone();
    let mut n = 0;
    let run_dir = loop {
        let candidate = test_dir.join(&name);
        match std::fs::create_dir(&candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                n += 1;
                name = format!("{stamp}-{n}");
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", candidate.display()));
            }
        }
    };
    link_latest(&test_dir, &name)?;
    link_latest(store, &format!("{test_name}/{name}"))?;
    Ok(run_dir)
}

/// Removes a run directory that holds nothing worth keeping (a run refused before it
/// started), and points the `latest` links that named it at the newest run left (or removes
/// them). Best effort: a leftover empty directory is harmless.
pub fn discard_run_dir(store: &Path, test_name: &str, run_dir: &Path) {
    let _ = std::fs::remove_dir_all(run_dir);
    let test_dir = store.join(test_name);
    let newest_in = |dir: &Path| -> Option<String> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.as_bytes().first().is_some_and(u8::is_ascii_digit))
            .max()
    };
    let runs_left = newest_in(&test_dir);
    match &runs_left {
        Some(name) => {
            let _ = link_latest(&test_dir, name);
        }
        None => {
            let _ = std::fs::remove_file(test_dir.join("latest"));
            let _ = std::fs::remove_dir(&test_dir);
        }
    }
    // The store's `latest` named this run; the newest run of any test takes its place.
    let newest = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let test = e.file_name().to_string_lossy().into_owned();
            newest_in(&e.path()).map(|run| (run, test))
        })
        .max();
    match newest {
        Some((run, test)) => {
            let _ = link_latest(store, &format!("{test}/{run}"));
        }
        None => {
            let _ = std::fs::remove_file(store.join("latest"));
        }
    }
}

/// Replaces `dir/latest` with a relative symlink to `target`, atomically.
fn link_latest(dir: &Path, target: &str) -> anyhow::Result<()> {
    let tmp = dir.join(".latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create a link in {}", dir.display()))?;
    std::fs::rename(&tmp, dir.join("latest"))
        .with_context(|| format!("cannot update {}/latest", dir.display()))?;
    Ok(())
}

/// `YYYYMMDDTHHMMSS` in UTC.
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (the proleptic calendar arithmetic of
/// Howard Hinnant's `civil_from_days`, written out here from its published description).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101T000000");
        // 2000-02-29 12:34:56 UTC (a leap day) = 951827696.
        let leap = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc_timestamp(leap), "20000229T123456");
        // 2026-11-24 00:00:00 UTC = 1795478400.
        let day = UNIX_EPOCH + Duration::from_secs(1_795_478_400);
        assert_eq!(utc_timestamp(day), "20261124T000000");
    }

    #[test]
    fn a_discarded_run_goes_and_latest_falls_back_to_the_newest_left() {
        let store = tempfile::tempdir().unwrap();
        let s = store.path();
        for d in ["a/20260101T000000", "a/20260101T000005"] {
            std::fs::create_dir_all(s.join(d)).unwrap();
        }
        let b = create_run_dir(s, "b").unwrap();
        create_run_dir(s, "c")
            .map(|c| discard_run_dir(s, "c", &c))
            .unwrap();
        // c's discard left b as the newest run.
        assert_eq!(
            std::fs::canonicalize(s.join("latest")).unwrap(),
            std::fs::canonicalize(&b).unwrap()
        );
        assert!(!s.join("c").exists());
        discard_run_dir(s, "b", &b);
        assert!(!s.join("b").exists());
        assert_eq!(
            std::fs::canonicalize(s.join("latest")).unwrap(),
            std::fs::canonicalize(s.join("a/20260101T000005")).unwrap()
        );
        assert_eq!(
            std::fs::read_link(s.join("a/latest")).ok(),
            None,
            "a's own latest was never set and stays unset"
        );
    }

    #[test]
    fn run_dirs_are_distinct_and_latest_follows() {
        let store = tempfile::tempdir().unwrap();
        let a = create_run_dir(store.path(), "t").unwrap();
        let b = create_run_dir(store.path(), "t").unwrap();
        assert_ne!(a, b);
        let latest = std::fs::canonicalize(store.path().join("t/latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(&b).unwrap());
        let top = std::fs::canonicalize(store.path().join("latest")).unwrap();
        assert_eq!(top, latest);
    }
}
