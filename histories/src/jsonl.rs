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
use crate::op::Op;

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
        serde_json::to_writer(&mut self.line, op).map_err(io::Error::other)?;
        self.line.push(b'\n');
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

/// Writes a whole history as JSONL.
pub fn write<W: Write>(out: W, ops: &[Op]) -> io::Result<W> {
    let mut writer = Writer::new(out);
    for op in ops {
        writer.append(op)?;
    }
    writer.into_inner()
}
