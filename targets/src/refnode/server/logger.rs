//! The node's log file: one timestamped line per event, appended and never buffered, so a
//! SIGKILLed node loses no line it wrote.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct Logger {
    node: String,
    file: Mutex<File>,
}

impl Logger {
    pub fn open(path: &Path, node: &str) -> io::Result<Logger> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Logger {
            node: node.to_string(),
            file: Mutex::new(file),
        })
    }

    /// Writes `<UTC time> <node> <message>`. A failed write is dropped: the log must never
    /// take the node down.
    pub fn log(&self, message: &str) {
        let line = format!(
            "{} {} {}\n",
            utc_timestamp(SystemTime::now()),
            self.node,
            message
        );
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Logs a recurring failure at most once per interval, counting what it held back, so a peer
/// that stays down for minutes costs a few lines rather than thousands.
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
    failing: bool,
}

impl RateLimited {
    pub fn new(interval: Duration) -> RateLimited {
        RateLimited {
            interval,
            last_logged: None,
            suppressed: 0,
            failing: false,
        }
    }

    pub fn failure(&mut self, logger: &Logger, message: &str) {
        self.failing = true;
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            logger.log(&format!(
                "{message} ({} similar failures not logged)",
                self.suppressed
            ));
        } else {
            logger.log(message);
        }
        self.last_logged = Some(now);
        self.suppressed = 0;
    }

    /// Logs `message` when the failures end (or on the first success).
    pub fn success(&mut self, logger: &Logger, message: &str) {
        if self.failing || self.last_logged.is_none() {
            if self.suppressed > 0 {
                logger.log(&format!(
                    "{message} (after {} more failures not logged)",
                    self.suppressed
                ));
            } else {
                logger.log(message);
            }
        }
        self.failing = false;
        self.suppressed = 0;
        self.last_logged = Some(Instant::now());
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by counting 400-year eras
/// (146 097 days each) from 0000-03-01, so that the leap day falls at the end of a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_735_689_599); // 2024-12-31 23:59:59
        assert_eq!(utc_timestamp(later), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn repeated_failures_are_logged_once_per_interval() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let logger = Logger::open(&path, "n1").unwrap();
        let mut limit = RateLimited::new(Duration::from_secs(60));
        for _ in 0..100 {
            limit.failure(&logger, "cannot connect");
        }
        limit.success(&logger, "connected");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("after 99 more failures"), "{text}");
    }
}
