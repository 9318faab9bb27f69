//! The native format: JSON Lines, one [`Op`] per line.
//!
//! ```text
//! {"index":0,"time":1200,"process":0,"type":"invoke","f":"cas","key":4,"value":[1,2]}
//! {"index":1,"time":1900,"process":"nemesis","type":"info","f":"kill","value":"n2"}
//! {"index":2,"time":5100,"process":0,"type":"fail","f":"cas","key":4,"value":[1,2],"node":"n1"}
//! ```
//!
//! The writer appends and flushes as operations happen and fsyncs at the end, so a controller
//! that dies loses at most the last line. The reader streams; a malformed line is an error that
//! names the file and line, except a final line with no newline, which is what a crash mid-write
//! leaves: it is skipped and reported in [`ReadOutcome::truncated_last_line`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::HistoryError;
use crate::history::History;
use crate::op::{Key, Op, Process, Value};

/// A history read from JSONL, and what had to be skipped to read it.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub history: History,
    /// The 1-based number of a last line that was cut short and skipped, if there was one.
    pub truncated_last_line: Option<usize>,
}

/// Streams the operations of a JSONL history. Each item is an op or an error naming the line.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    path: String,
    line_no: usize,
    buf: String,
    /// Set once a truncated last line has been seen and skipped.
    truncated_line: Option<usize>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, path: &str) -> Reader<R> {
        Reader {
            input,
            path: path.to_string(),
            line_no: 0,
            buf: String::new(),
            truncated_line: None,
        }
    }

    pub fn truncated_last_line(&self) -> Option<usize> {
        self.truncated_line
    }

    fn error(&self, message: impl Into<String>) -> HistoryError {
        HistoryError::new(&self.path, self.line_no, message)
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Op, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.line_no += 1;
                    return Some(Err(self.error("expected UTF-8 text")));
                }
                Err(e) => return Some(Err(self.error(format!("cannot read: {e}")))),
            }
            self.line_no += 1;
            let complete = self.buf.ends_with('\n');
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<Op>(text) {
                Ok(op) => return Some(Ok(op)),
                // A line without its newline is the last one, cut short by a crash mid-write.
                Err(_) if !complete => {
                    self.truncated_line = Some(self.line_no);
                    return None;
                }
                Err(e) => {
                    return Some(Err(self.error(format!(
                        "expected one operation as a JSON object ({})",
                        describe_json_error(&e)
                    ))));
                }
            }
        }
    }
}

fn describe_json_error(e: &serde_json::Error) -> String {
    // serde_json appends " at line 1 column N"; the column is useful, the line is ours.
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((what, pos)) => match pos.split_once(" column ") {
            Some((_, col)) => format!("{what}, at column {col}"),
            None => what.to_string(),
        },
        None => text,
    }
}

/// Reads a whole JSONL history from `input`, naming it `path` in errors.
pub fn read<R: Read>(input: R, path: &str) -> Result<ReadOutcome, HistoryError> {
    let mut reader = Reader::new(BufReader::with_capacity(1 << 16, input), path);
    let mut ops = Vec::new();
    // Line numbers are kept so that a well-formedness error can name the line of the op.
    let mut line_of = Vec::new();
    while let Some(op) = reader.next() {
        ops.push(op?);
        line_of.push(reader.line_no);
    }
    let truncated = reader.truncated_last_line();
    finish(ops, path, truncated, &line_of)
}

/// Reads a JSONL history file.
pub fn read_file(path: &Path) -> Result<ReadOutcome, HistoryError> {
    let name = path.display().to_string();
    let file = File::open(path)
        .map_err(|e| HistoryError::new(&name, 0, format!("cannot open the history: {e}")))?;
    read(file, &name)
}

fn finish(
    ops: Vec<Op>,
    path: &str,
    truncated_last_line: Option<usize>,
    line_of: &[usize],
) -> Result<ReadOutcome, HistoryError> {
    let history = History::from_ops(ops).map_err(|bad| {
        let line = line_of.get(bad.position).copied().unwrap_or(0);
        HistoryError::new(path, line, bad.message)
    })?;
    Ok(ReadOutcome {
        history,
        truncated_last_line,
    })
}

/// Appends operations to a JSONL history.
///
/// `append` buffers; `flush` hands the buffered lines to the operating system (call it whenever
/// the recorder has caught up, so a crash of the controller loses at most the last line);
/// `finish` flushes and fsyncs.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: BufWriter<W>,
    line: Vec<u8>,
    written: u64,
}

impl Writer<File> {
    /// Creates (or truncates) a history file.
    pub fn create(path: &Path) -> io::Result<Writer<File>> {
        Ok(Writer::new(File::create(path)?))
    }

    /// Flushes and fsyncs the file.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(self.written)
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out: BufWriter::with_capacity(1 << 16, out),
            line: Vec::with_capacity(256),
            written: 0,
        }
    }

    /// Serializes one operation as one line. The line is written whole or not at all into the
    /// buffer, so a flush never splits an operation in the middle unless the OS does.
    pub fn append(&mut self, op: &Op) -> io::Result<()> {
        self.line.clear();
        write_line(op, &mut self.line);
        self.out.write_all(&self.line)?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Number of operations appended so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the inner writer (for in-memory histories).
    pub fn into_inner(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Appends `op` as one JSONL line, newline included: the bytes `serde_json` writes for it
/// (the tests hold the two equal), written directly. The recorder's writer thread turns every
/// operation of a run into a line, and serde's generic path took most of its time.
pub fn write_line(op: &Op, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"index\":");
    write_u64(op.index, out);
    out.extend_from_slice(b",\"time\":");
    write_u64(op.time_ns, out);
    out.extend_from_slice(b",\"process\":");
    match op.process {
        Process::Client(p) => write_u64(p, out),
        Process::Nemesis => out.extend_from_slice(b"\"nemesis\""),
    }
    out.extend_from_slice(b",\"type\":\"");
    out.extend_from_slice(op.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"f\":");
    write_str(op.f.as_str(), out);
    if let Some(key) = &op.key {
        out.extend_from_slice(b",\"key\":");
        write_key(key, out);
    }
    out.extend_from_slice(b",\"value\":");
    write_value(&op.value, out);
    if let Some(node) = &op.node {
        out.extend_from_slice(b",\"node\":");
        write_str(node, out);
    }
    if let Some(error) = &op.error {
        out.extend_from_slice(b",\"error\":");
        write_str(error, out);
    }
    out.extend_from_slice(b"}\n");
}

fn write_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_i64(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(n.unsigned_abs(), out);
}

fn write_key(key: &Key, out: &mut Vec<u8>) {
    match key {
        Key::Int(k) => write_i64(*k, out),
        Key::Str(k) => write_str(k, out),
    }
}

/// Values nest (lists, maps, transactions); the depth is what the system under test or the
/// nemesis built, a handful of levels, never history-sized.
fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(*i, out),
        Value::Str(v) => write_str(v, out),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
        Value::Txn(mops) => {
            out.push(b'[');
            for (i, m) in mops.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                write_str(m.f.as_str(), out);
                out.push(b',');
                write_key(&m.key, out);
                out.push(b',');
                write_value(&m.value, out);
                out.push(b']');
            }
            out.push(b']');
        }
    }
}

/// A JSON string, escaped as `serde_json` escapes it: quote, backslash and the control
/// characters below 0x20 (short forms where JSON has them, else `\u00XX`); the rest as is.
fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes a whole history as JSONL.
pub fn write<W: Write>(out: W, ops: &[Op]) -> io::Result<W> {
    let mut writer = Writer::new(out);
    for op in ops {
        writer.append(op)?;
    }
    writer.into_inner()
}
