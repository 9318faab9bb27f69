//! The live progress line of a run: elapsed time and op counts, redrawn in place on stderr a
//! few times a second. Only on a terminal, and not with `--quiet`: logs and CI output stay
//! free of carriage returns.

use std::io::Write as _;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::recorder::{Counts, Recorder};

const REDRAW: Duration = Duration::from_millis(250);

/// Draws the line until dropped; dropping clears it.
#[derive(Debug)]
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing when `enabled`; otherwise does nothing.
    pub fn start(
        enabled: bool,
        recorder: Recorder,
        start: Instant,
        time_limit: Duration,
    ) -> Progress {
        if !enabled {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REDRAW);
            loop {
                tick.tick().await;
                let line = line(start.elapsed(), time_limit, recorder.counts());
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{line}");
                let _ = err.flush();
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

/// `[ 5.2/20 s] 1234 invoked · 1100 ok · 100 fail · 34 info · 4 nemesis`
pub fn line(elapsed: Duration, time_limit: Duration, c: Counts) -> String {
    format!(
        "[{:>5.1}/{} s] {} invoked · {} ok · {} fail · {} info · {} nemesis",
        elapsed.as_secs_f64().min(time_limit.as_secs_f64()),
        time_limit.as_secs_f64(),
        c.invoke,
        c.ok,
        c.fail,
        c.info,
        c.nemesis
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_time_and_every_count() {
        let c = Counts {
            invoke: 12,
            ok: 9,
            fail: 2,
            info: 1,
            nemesis: 4,
        };
        assert_eq!(
            line(Duration::from_millis(5250), Duration::from_secs(20), c),
            "[  5.2/20 s] 12 invoked · 9 ok · 2 fail · 1 info · 4 nemesis"
        );
    }
}
