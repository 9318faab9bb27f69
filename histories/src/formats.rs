//! The on-disk formats a history can be read from, and reading a file in any of them.
//!
//! [`read_any`] detects the format from the file's content when it is not given. The rules,
//! applied by [`Format::detect`] to the first [`DETECT_BYTES`] bytes, look at the first line
//! that is neither blank nor an EDN `;` comment:
//!
//! 1. it starts with `{` and the next non-blank character is `"`: [`Format::Jsonl`];
//! 2. it starts with `{`, `#` (a tagged record) or `[` followed by `{`, `#`, `]` or the end of
//!    the line (a vector of maps):
//!    [`Format::PorcupineKv`] when it is a map with exactly Porcupine's kv keys (`:process`,
//!    `:type`, `:f` one of `:get`/`:put`/`:append`, `:key` a string, optionally `:value`, and
//!    no `:index` or `:time`), otherwise [`Format::Edn`];
//! 3. otherwise, when any line holds `jepsen.util - ` (a Jepsen log, whose operation lines may
//!    follow other log lines): [`Format::PorcupineEtcd`];
//! 4. otherwise the format is unknown and must be named.
//!
//! A file that is empty or blank has no content to go by: [`read_any`] reads it as an empty
//! history, in the format its extension suggests (`.edn`, `.log` for etcd logs, else JSONL),
//! with a warning.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;

use crate::edn;
use crate::error::HistoryError;
use crate::history::History;
use crate::jsonl;
use crate::porcupine;

/// A history file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// splitbrain's native JSON Lines (see the crate README).
    Jsonl,
    /// Jepsen / Knossos / Elle EDN: one op map per line, or one vector of maps.
    Edn,
    /// Porcupine's `jepsen/etcd_NNN.log`: Jepsen log lines of a compare-and-set register.
    PorcupineEtcd,
    /// Porcupine's `kv/cNN-*.txt`: one EDN map per line on a string key-value store.
    PorcupineKv,
}

impl Format {
    /// Every format, in the order their names are listed to users.
    pub const ALL: [Format; 4] = [
        Format::Jsonl,
        Format::Edn,
        Format::PorcupineEtcd,
        Format::PorcupineKv,
    ];

    /// The name accepted by [`FromStr`] and printed by [`Display`](fmt::Display).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Edn => "edn",
            Format::PorcupineEtcd => "porcupine-etcd",
            Format::PorcupineKv => "porcupine-kv",
        }
    }

    /// Tells the format from the first bytes of a file (see the module docs for the rules).
    /// `None` when the bytes are blank or match no rule.
    pub fn detect(first_bytes: &[u8]) -> Option<Format> {
        // The prefix may end inside a character; a replacement character there is harmless.
        let text = String::from_utf8_lossy(first_bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let first = text
            .lines()
            .map(str::trim_start)
            .find(|line| !line.is_empty() && !line.starts_with(';'))?;
        if let Some(rest) = first.strip_prefix('{') {
            let next = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if next.starts_with('"') {
                return Some(Format::Jsonl);
            }
            return Some(if is_porcupine_kv_line(first) {
                Format::PorcupineKv
            } else {
                Format::Edn
            });
        }
        if let Some(rest) = first.strip_prefix('[') {
            // `[{...`, `[#jepsen.history.Op{...`, `[]`, or `[` alone on its line; a line like
            // `[package]` is some other file.
            let next = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if next.is_empty() || next.starts_with(['{', '#', ']', ';']) {
                return Some(Format::Edn);
            }
        } else if first.starts_with('#') {
            return Some(Format::Edn);
        }
        if text
            .lines()
            .any(|line| line.contains(porcupine::LOG_MARKER))
        {
            return Some(Format::PorcupineEtcd);
        }
        None
    }

    /// The format a file name suggests; only used for files with no content to detect from.
    fn from_extension(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "jsonl" => Some(Format::Jsonl),
            "edn" => Some(Format::Edn),
            "log" => Some(Format::PorcupineEtcd),
            _ => None,
        }
    }
}

/// Whether one line is a map with exactly the keys of Porcupine's kv format.
fn is_porcupine_kv_line(line: &str) -> bool {
    use edn_format::Value as Edn;
    let Ok(Edn::Map(entries)) = edn::parse_one(line) else {
        return false;
    };
    let mut has = (false, false, false, false);
    for (k, v) in &entries {
        let Edn::Keyword(k) = k else { return false };
        if k.namespace().is_some() {
            return false;
        }
        match (k.name(), v) {
            ("process", _) => has.0 = true,
            ("type", _) => has.1 = true,
            ("f", Edn::Keyword(f)) if matches!(f.name(), "get" | "put" | "append") => has.2 = true,
            ("key", Edn::String(_)) => has.3 = true,
            ("value", _) => {}
            _ => return false,
        }
    }
    has == (true, true, true, true)
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|format| format.name() == s)
            .ok_or_else(|| UnknownFormat {
                name: s.to_string(),
            })
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat {
    pub name: String,
}

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown history format {:?}; expected one of ",
            self.name
        )?;
        for (i, format) in Format::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(format.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownFormat {}

/// A history read from a file, the format it was read as, and what the reader had to skip or
/// guess, each warning as one `path:line: message` line.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub history: History,
    pub format: Format,
    pub warnings: Vec<String>,
}

/// How much of a file [`Format::detect`] is shown by [`read_any`].
pub const DETECT_BYTES: usize = 64 * 1024;

/// Reads a history file in `format`, or in the format detected from its content when `None`.
///
/// Every error names the file and, when it is about the content, the line.
pub fn read_any(path: &Path, format: Option<Format>) -> Result<Loaded, HistoryError> {
    let name = path.display().to_string();
    let mut file = File::open(path)
        .map_err(|e| HistoryError::new(&name, 0, format!("cannot open the history: {e}")))?;
    let mut prefix = Vec::with_capacity(DETECT_BYTES);
    (&mut file)
        .take(DETECT_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| HistoryError::new(&name, 0, format!("cannot read the history: {e}")))?;
    let mut warnings = Vec::new();
    let format = match format {
        Some(format) => format,
        None => match Format::detect(&prefix) {
            Some(format) => format,
            None if prefix.len() < DETECT_BYTES && is_blank(&prefix) => {
                warnings.push(format!(
                    "{name}: the file is empty; read as an empty history"
                ));
                Format::from_extension(path).unwrap_or(Format::Jsonl)
            }
            None => return Err(undetectable(&name, &prefix)),
        },
    };
    // The bytes already taken for detection go first, then the rest of the file.
    let input = io::Cursor::new(prefix).chain(file);
    let mut loaded = read_as(input, &name, format)?;
    warnings.append(&mut loaded.warnings);
    loaded.warnings = warnings;
    Ok(loaded)
}

/// Reads a history in a known format from any reader, naming it `path` in messages.
fn read_as(input: impl Read, path: &str, format: Format) -> Result<Loaded, HistoryError> {
    match format {
        Format::Jsonl => {
            let read = jsonl::read(input, path)?;
            let warnings = read
                .truncated_last_line
                .map(|line| {
                    format!(
                        "{path}:{line}: skipped the last line, which is cut short (a writer that stopped mid-line leaves one)"
                    )
                })
                .into_iter()
                .collect();
            Ok(Loaded {
                history: read.history,
                format,
                warnings,
            })
        }
        Format::Edn => edn::read(input, path),
        Format::PorcupineEtcd => porcupine::read_etcd(input, path),
        Format::PorcupineKv => porcupine::read_kv(input, path),
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix('\u{feff}')
        .unwrap_or(&text)
        .trim()
        .is_empty()
}

fn undetectable(name: &str, prefix: &[u8]) -> HistoryError {
    let text = String::from_utf8_lossy(prefix);
    let (line, first) = text
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim()))
        .unwrap_or((0, ""));
    let shown: String = first.chars().take(40).collect();
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    HistoryError::new(
        name,
        line,
        format!(
            "cannot tell the history format: expected a JSON object per line, EDN operation maps or Jepsen log lines (`INFO  jepsen.util - ...`), found `{shown}`; name the format ({})",
            names.join(", ")
        ),
    )
}
