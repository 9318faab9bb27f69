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
