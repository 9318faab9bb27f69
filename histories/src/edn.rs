//! Jepsen / Knossos / Elle histories in EDN.
//!
//! Two layouts are read, told apart by the first character that is not blank or a comment:
//!
//! - one operation map per line (Jepsen's `history.edn`, Knossos and Elle test files):
//!   `{:index 0, :time 12, :type :invoke, :process 0, :f :read, :value nil}`;
//! - one vector holding all the maps: `[{...} {...} ...]` (what [`write()`] produces).
//!
//! Maps may also be Jepsen 0.3 records, `#jepsen.history.Op{...}`; the tag is dropped.
//!
//! | key | required | becomes |
//! |---|---|---|
//! | `:type` | yes | `:invoke`, `:ok`, `:fail` or `:info` → [`OpType`] |
//! | `:f` | yes | keyword (or string) → [`F`] |
//! | `:process` | yes | non-negative integer → `Client(n)`; `:nemesis` → `Nemesis` |
//! | `:value` | no (nil) | nil, boolean, integer, string, keyword (→ string), vector, list or set (→ list), map (keys → strings); for `:f :txn` a vector of micro-ops `[:append k v]`, `[:r k v]`, `[:w k v]` → `Value::Txn` |
//! | `:index` | no | checked against the position; ops are always numbered by position |
//! | `:time` | no | nanoseconds; when absent, the op's position is used |
//! | `:key` | no | integer or string (keyword → string) |
//! | `:node` | no | string or keyword |
//! | `:error` | no | string or keyword as text; anything else as its EDN text |
//!
//! Any other key is ignored with a warning. Client values must be exact: a fraction in a
//! client op is an error, because checkers compare values. Nemesis values only describe the
//! fault, so anything that is not representable (fractions, instants, symbols) is kept as its
//! EDN text instead.
//!
//! Errors name the line where the offending map starts; for the vector layout the message
//! also gives the map's ordinal in the vector, since a whole vector may sit on one line.
//!
//! ```
//! use histories::{OpType, Process, Value};
//!
//! let edn = "{:type :invoke, :f :txn, :value [[:append 1 2] [:r 1 nil]], :process 0, :time 5}\n\
//!            {:type :ok, :f :txn, :value [[:append 1 2] [:r 1 [2]]], :process 0, :time 9}\n\
//!            {:type :info, :f :kill, :value \"n1\", :process :nemesis, :time 11}\n";
//! let loaded = histories::edn::read(edn.as_bytes(), "elle.edn").unwrap();
//! let ops = loaded.history.ops();
//! assert_eq!(ops.len(), 3);
//! assert_eq!(ops[1].kind, OpType::Ok);
//! assert_eq!(ops[1].txn().unwrap()[1].value, Value::List(vec![Value::Int(2)]));
//! assert_eq!(ops[2].process, Process::Nemesis);
//!
//! // The writer produces the vector layout, which reads back to the same operations.
//! let mut out = Vec::new();
//! histories::edn::write(&loaded.history, &mut out).unwrap();
//! let again = histories::edn::read(out.as_slice(), "again.edn").unwrap();
//! assert_eq!(again.history, loaded.history);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use edn_format::{ParserError, Value as Edn};

use crate::error::HistoryError;
use crate::formats::{Format, Loaded};
use crate::history::History;
use crate::op::{F, Key, MicroOp, Op, OpType, Process, Value, txn_from_value};

/// Reads an EDN history from `input`, naming it `path` in errors and warnings.
pub fn read<R: Read>(input: R, path: &str) -> Result<Loaded, HistoryError> {
    let read = read_ops(input, path)?;
    read.into_loaded(path, Format::Edn)
}

/// Writes `history` as one EDN vector with one operation map per line, which [`read`] turns
/// back into the same operations.
pub fn write(history: &History, out: impl Write) -> io::Result<()> {
    let mut out = BufWriter::new(out);
    out.write_all(b"[")?;
    for (pos, op) in history.ops().iter().enumerate() {
        if pos > 0 {
            // One map per line, so that line n of the file holds map n of the vector.
            out.write_all(b"\n ")?;
        }
        write!(out, "{}", EdnOp(op))?;
    }
    out.write_all(b"]\n")?;
    out.flush()
}

/// Nesting accepted inside one value, counting collections and tags. edn-format parses
/// recursively, so an unbounded depth would let a hostile file overflow the stack; real
/// histories nest fewer than ten levels deep.
const MAX_DEPTH: usize = 100;

/// Distinct unknown keys warned about before the reader stops mentioning new ones, so a file
/// full of odd keys cannot flood the warnings.
const MAX_KEY_WARNINGS: usize = 8;

/// Operations read from EDN maps, before the well-formedness check of [`History::from_ops`].
#[derive(Debug)]
pub(crate) struct EdnOps {
    pub ops: Vec<Op>,
    /// Where each op's map is.
    places: Vec<Place>,
    pub warnings: Vec<String>,
}

impl EdnOps {
    /// An error about the op at `position`, naming its line (and ordinal, in a vector).
    pub fn error_at(&self, path: &str, position: usize, message: &str) -> HistoryError {
        match self.places.get(position) {
            Some(place) => place.error(path, message),
            None => HistoryError::new(path, 0, message),
        }
    }

    /// Pairs invocations with completions and wraps the result.
    pub fn into_loaded(self, path: &str, format: Format) -> Result<Loaded, HistoryError> {
        match History::from_ops(self.ops) {
            Ok(history) => Ok(Loaded {
                history,
                format,
                warnings: self.warnings,
            }),
            Err(bad) => Err(match self.places.get(bad.position) {
                Some(place) => place.error(path, &bad.message),
                None => HistoryError::new(path, 0, bad.message),
            }),
        }
    }
}

/// Where a map is: the line it starts on, and its 1-based ordinal in a top-level vector.
#[derive(Debug, Clone, Copy)]
struct Place {
    line: usize,
    ordinal: Option<usize>,
}

impl Place {
    fn error(self, path: &str, message: &str) -> HistoryError {
        match self.ordinal {
            // A whole vector may sit on one line, so the line alone may not single a map out.
            Some(n) => HistoryError::new(
                path,
                self.line,
                format!("map {n} of the top-level vector: {message}"),
            ),
            None => HistoryError::new(path, self.line, message),
        }
    }
}

/// Reads every operation map of an EDN history, in either layout.
pub(crate) fn read_ops<R: Read>(input: R, path: &str) -> Result<EdnOps, HistoryError> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut scanner = Scanner::new(Layout::History);
    let mut builder = OpsBuilder::new(path);
    let mut forms = Vec::new();
    let mut raw = Vec::new();
    let mut line_no = 0;
    let mut ended_with_newline = true;
    loop {
        raw.clear();
        let n = input
            .read_until(b'\n', &mut raw)
            .map_err(|e| HistoryError::new(path, line_no + 1, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        ended_with_newline = raw.ends_with(b"\n");
        let text = std::str::from_utf8(&raw)
            .map_err(|_| HistoryError::new(path, line_no, "expected UTF-8 text"))?;
        // Editors on Windows put a byte order mark before the first line.
        let text = if line_no == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        for c in text.chars() {
            scanner
                .push(c, line_no, &mut forms)
                .map_err(|e| e.into_history_error(path))?;
        }
        for form in forms.drain(..) {
            builder.add(&form)?;
        }
    }
    let end = scanner
        .finish(&mut forms)
        .map_err(|e| e.into_history_error(path))?;
    for form in forms.drain(..) {
        builder.add(&form)?;
    }
    if let End::Incomplete {
        start_line,
        message,
    } = end
    {
        // A writer that died mid-line leaves a last line without its newline; like the JSONL
        // reader, skip it and say so rather than refuse the whole file.
        if !scanner.in_vector() && !ended_with_newline && start_line == line_no {
            builder.warnings.push(format!(
                "{path}:{line_no}: skipped the last line, which is cut short ({message})"
            ));
        } else {
            return Err(HistoryError::new(path, start_line, message));
        }
    }
    Ok(builder.finish())
}

/// Parses text holding exactly one EDN value (a field of a log line, a detection probe).
pub(crate) fn parse_one(text: &str) -> Result<Edn, String> {
    let mut scanner = Scanner::new(Layout::Single);
    let mut forms = Vec::new();
    for c in text.chars() {
        scanner.push(c, 1, &mut forms).map_err(|e| e.message)?;
    }
    if let End::Incomplete { message, .. } = scanner.finish(&mut forms).map_err(|e| e.message)? {
        return Err(message);
    }
    let Some(form) = forms.pop() else {
        return Err("expected an EDN value, found nothing".to_string());
    };
    match parse_form(&form) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err("expected an EDN value, found only a discarded #_ form".to_string()),
        Err(e) => Err(e.message),
    }
}

/// How far to go in turning EDN that has no exact counterpart in [`Value`] into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exactness {
    /// Client values: refuse what cannot be represented, since checkers compare values.
    Exact,
    /// Nemesis values: keep what cannot be represented as its EDN text.
    Descriptive,
}

/// Converts an EDN value. Keywords become strings without the colon, sets become lists (in
/// EDN order), map keys become strings.
pub(crate) fn to_value(v: &Edn, exactness: Exactness) -> Result<Value, String> {
    let as_text = |v: &Edn, what: &str| match exactness {
        Exactness::Descriptive => Ok(Value::Str(edn_format::emit_str(v))),
        Exactness::Exact => Err(format!(
            "expected nil, a boolean, an integer, a string, a keyword or a collection, found {what} {}",
            short(v)
        )),
    };
    Ok(match v {
        Edn::Nil => Value::Nil,
        Edn::Boolean(b) => Value::Bool(*b),
        Edn::Integer(i) => Value::Int(*i),
        Edn::BigInt(b) => match b.to_string().parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => return as_text(v, "the integer outside 64 signed bits"),
        },
        Edn::String(s) => Value::Str(s.clone()),
        Edn::Character(c) => Value::Str(c.to_string()),
        Edn::Keyword(k) => Value::Str(keyword_text(k)),
        Edn::Vector(items) | Edn::List(items) => Value::List(
            items
                .iter()
                .map(|item| to_value(item, exactness))
                .collect::<Result<_, _>>()?,
        ),
        Edn::Set(items) => Value::List(
            items
                .iter()
                .map(|item| to_value(item, exactness))
                .collect::<Result<_, _>>()?,
        ),
        Edn::Map(entries) => {
            let mut map = BTreeMap::new();
            for (k, item) in entries {
                let key = match k {
                    Edn::String(s) => s.clone(),
                    Edn::Keyword(kw) => keyword_text(kw),
                    Edn::Integer(i) => i.to_string(),
                    other => match exactness {
                        Exactness::Descriptive => edn_format::emit_str(other),
                        Exactness::Exact => {
                            return Err(format!(
                                "expected map keys to be strings, keywords or integers, found {}",
                                short(other)
                            ));
                        }
                    },
                };
                let value = to_value(item, exactness)?;
                if map.insert(key.clone(), value).is_some() {
                    // Value::Map keys are strings, so :a and "a" would silently merge.
                    return Err(format!(
                        "expected distinct map keys, found two that both read as {key:?}"
                    ));
                }
            }
            Value::Map(map)
        }
        Edn::Float(_) | Edn::BigDec(_) => return as_text(v, "the fraction"),
        Edn::Symbol(_) => return as_text(v, "the symbol (a keyword needs a leading colon)"),
        Edn::Inst(_) | Edn::Uuid(_) | Edn::TaggedElement(..) => {
            return as_text(v, "the tagged value");
        }
    })
}

/// A keyword as text: `:read` → `read`, `:jepsen/kill` → `jepsen/kill`.
pub(crate) fn keyword_text(k: &edn_format::Keyword) -> String {
    match k.namespace() {
        Some(ns) => format!("{ns}/{}", k.name()),
        None => k.name().to_string(),
    }
}

/// An EDN value for an error message, cut short so the message stays on one readable line.
pub(crate) fn short(v: &Edn) -> String {
    const MAX_CHARS: usize = 60;
    let text = edn_format::emit_str(v);
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    }
}

/// Collects ops from parsed maps, numbering them and remembering what to warn about.
struct OpsBuilder<'p> {
    path: &'p str,
    ops: Vec<Op>,
    places: Vec<Place>,
    warnings: Vec<String>,
    warned_keys: BTreeSet<String>,
    warned_index: bool,
    /// Whether the first op had a `:time`; a later op that differs gets one warning.
    timed: Option<bool>,
    warned_time: bool,
}

impl<'p> OpsBuilder<'p> {
    fn new(path: &'p str) -> OpsBuilder<'p> {
        OpsBuilder {
            path,
            ops: Vec::new(),
            places: Vec::new(),
            warnings: Vec::new(),
            warned_keys: BTreeSet::new(),
            warned_index: false,
            timed: None,
            warned_time: false,
        }
    }

    fn add(&mut self, form: &Form) -> Result<(), HistoryError> {
        let place = Place {
            line: form.line,
            ordinal: form.ordinal,
        };
        let value = match parse_form(form) {
            Ok(Some(value)) => value,
            // `#_ {...}`: a map the author commented out.
            Ok(None) => return Ok(()),
            // A syntax error is named at its own line, which may be past the map's first.
            Err(e) => {
                return Err(Place {
                    line: e.line,
                    ..place
                }
                .error(self.path, &e.message));
            }
        };
        let position = self.ops.len();
        let parsed = op_from_edn(value, position).map_err(|m| place.error(self.path, &m))?;
        let path = self.path;
        let line = form.line;
        for key in parsed.ignored_keys {
            if self.warned_keys.len() < MAX_KEY_WARNINGS && self.warned_keys.insert(key.clone()) {
                let more = if self.warned_keys.len() == MAX_KEY_WARNINGS {
                    "; further unknown keys are ignored without warning"
                } else {
                    ""
                };
                self.warnings.push(format!(
                    "{path}:{line}: ignored the key {key}, which splitbrain does not read{more}"
                ));
            }
        }
        if let Some(given) = parsed.given_index {
            if given != position as u64 && !self.warned_index {
                self.warned_index = true;
                self.warnings.push(format!(
                    "{path}:{line}: :index {given} where {position} was expected; ops are numbered by their position in the file"
                ));
            }
        }
        match self.timed {
            None => self.timed = Some(parsed.has_time),
            Some(timed) if timed != parsed.has_time && !self.warned_time => {
                self.warned_time = true;
                self.warnings.push(format!(
                    "{path}:{line}: some ops have a :time and some do not; those without are timed by their position, which is not comparable"
                ));
            }
            Some(_) => {}
        }
        self.ops.push(parsed.op);
        self.places.push(place);
        Ok(())
    }

    fn finish(self) -> EdnOps {
        EdnOps {
            ops: self.ops,
            places: self.places,
            warnings: self.warnings,
        }
    }
}

/// An op read from one map, with what the map said that the op itself does not keep.
struct ParsedOp {
    op: Op,
    given_index: Option<u64>,
    has_time: bool,
    ignored_keys: Vec<String>,
}

fn op_from_edn(value: Edn, position: usize) -> Result<ParsedOp, String> {
    let entries = match value {
        Edn::Map(entries) => entries,
        // Jepsen 0.3 writes ops as records: #jepsen.history.Op{...}.
        Edn::TaggedElement(tag, inner) => match *inner {
            Edn::Map(entries) => entries,
            other => {
                return Err(format!(
                    "expected an operation map after the tag #{tag}, found {} {}",
                    kind_of(&other),
                    short(&other)
                ));
            }
        },
        other => {
            return Err(format!(
                "expected an operation map {{:type ..., :f ..., :process ...}}, found {} {}",
                kind_of(&other),
                short(&other)
            ));
        }
    };
    let mut fields = Fields::default();
    let mut ignored_keys = Vec::new();
    for (k, v) in entries {
        let name = match &k {
            Edn::Keyword(kw) if kw.namespace().is_none() => kw.name(),
            _ => "",
        };
        let slot = match name {
            "index" => &mut fields.index,
            "time" => &mut fields.time,
            "process" => &mut fields.process,
            "type" => &mut fields.kind,
            "f" => &mut fields.f,
            "value" => &mut fields.value,
            "key" => &mut fields.key,
            "node" => &mut fields.node,
            "error" => &mut fields.error,
            _ => {
                ignored_keys.push(edn_format::emit_str(&k));
                continue;
            }
        };
        *slot = Some(v);
    }

    let kind = match fields.kind.as_ref() {
        Some(v) => name_of(v).and_then(|s| OpType::parse(&s)).ok_or_else(|| {
            format!(
                "expected :type to be :invoke, :ok, :fail or :info, found {}",
                short(v)
            )
        })?,
        None => {
            return Err("expected a :type (:invoke, :ok, :fail or :info); the map has none".into());
        }
    };
    let f = match fields.f.as_ref() {
        Some(v) => name_of(v).map(|s| F::parse(&s)).ok_or_else(|| {
            format!(
                "expected :f to be a keyword such as :read, found {}",
                short(v)
            )
        })?,
        None => return Err("expected an :f (the function, e.g. :read); the map has none".into()),
    };
    let process = match fields.process.as_ref() {
        Some(v) => process_of(v).ok_or_else(|| {
            format!(
                "expected :process to be a non-negative integer or :nemesis, found {}",
                short(v)
            )
        })?,
        None => {
            return Err("expected a :process (an integer or :nemesis); the map has none".into());
        }
    };
    let given_index = match fields.index.as_ref() {
        None | Some(Edn::Nil) => None,
        Some(v) => Some(non_negative(v).ok_or_else(|| {
            format!(
                "expected :index to be a non-negative integer, found {}",
                short(v)
            )
        })?),
    };
    let time = match fields.time.as_ref() {
        None | Some(Edn::Nil) => None,
        Some(v) => Some(non_negative(v).ok_or_else(|| {
            format!(
                "expected :time to be non-negative integer nanoseconds, found {}",
                short(v)
            )
        })?),
    };
    let exactness = match process {
        Process::Client(_) => Exactness::Exact,
        Process::Nemesis => Exactness::Descriptive,
    };
    let value = match fields.value.as_ref() {
        None => Value::Nil,
        Some(v) => to_value(v, exactness).map_err(|m| format!(":value: {m}"))?,
    };
    let value = if f == F::Txn {
        txn_from_value(value).map_err(|m| format!(":value: {m}"))?
    } else {
        value
    };
    let key = match fields.key.as_ref() {
        None | Some(Edn::Nil) => None,
        Some(Edn::Integer(k)) => Some(Key::Int(*k)),
        Some(Edn::String(k)) => Some(Key::Str(k.clone())),
        Some(Edn::Keyword(k)) => Some(Key::Str(keyword_text(k))),
        Some(other) => {
            return Err(format!(
                "expected :key to be an integer or a string, found {}",
                short(other)
            ));
        }
    };
    let node = match fields.node.as_ref() {
        None | Some(Edn::Nil) => None,
        Some(v) => Some(name_of(v).ok_or_else(|| {
            format!(
                "expected :node to be a string such as \"n1\", found {}",
                short(v)
            )
        })?),
    };
    // Jepsen clients put anything in :error ([:timeout], {:cause ...}); it is only shown to
    // people, so keep its text rather than refuse the file.
    let error = match fields.error.as_ref() {
        None | Some(Edn::Nil) => None,
        Some(v) => Some(name_of(v).unwrap_or_else(|| edn_format::emit_str(v))),
    };
    Ok(ParsedOp {
        op: Op {
            index: position as u64,
            time_ns: time.unwrap_or(position as u64),
            process,
            kind,
            f,
            key,
            value,
            node,
            error,
        },
        given_index,
        has_time: time.is_some(),
        ignored_keys,
    })
}

/// The keys of an op map that the reader uses.
#[derive(Default)]
struct Fields {
    index: Option<Edn>,
    time: Option<Edn>,
    process: Option<Edn>,
    kind: Option<Edn>,
    f: Option<Edn>,
    value: Option<Edn>,
    key: Option<Edn>,
    node: Option<Edn>,
    error: Option<Edn>,
}

/// A keyword's or a string's text.
fn name_of(v: &Edn) -> Option<String> {
    match v {
        Edn::Keyword(k) => Some(keyword_text(k)),
        Edn::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn process_of(v: &Edn) -> Option<Process> {
    match v {
        Edn::Keyword(k) if k.namespace().is_none() && k.name() == "nemesis" => {
            Some(Process::Nemesis)
        }
        Edn::String(s) if s == "nemesis" => Some(Process::Nemesis),
        other => non_negative(other).map(Process::Client),
    }
}

/// A non-negative integer; [`write()`] emits those above `i64::MAX` as EDN big integers.
fn non_negative(v: &Edn) -> Option<u64> {
    match v {
        Edn::Integer(i) => u64::try_from(*i).ok(),
        Edn::BigInt(b) => b.to_string().parse().ok(),
        _ => None,
    }
}

fn kind_of(v: &Edn) -> &'static str {
    match v {
        Edn::Nil => "nil",
        Edn::Boolean(_) => "the boolean",
        Edn::Character(_) => "the character",
        Edn::String(_) => "the string",
        Edn::Symbol(_) => "the symbol",
        Edn::Keyword(_) => "the keyword",
        Edn::Integer(_) | Edn::BigInt(_) => "the integer",
        Edn::Float(_) | Edn::BigDec(_) => "the fraction",
        Edn::List(_) => "the list",
        Edn::Vector(_) => "the vector",
        Edn::Map(_) => "the map",
        Edn::Set(_) => "the set",
        Edn::Inst(_) | Edn::Uuid(_) | Edn::TaggedElement(..) => "the tagged value",
    }
}

/// One complete top-level EDN value, cut out of the input by the [`Scanner`].
#[derive(Debug)]
struct Form {
    text: String,
    /// The line of its first character.
    line: usize,
    /// 1-based position inside the top-level vector, for the vector layout.
    ordinal: Option<usize>,
}

/// A problem found while scanning or parsing, at a line.
#[derive(Debug)]
struct ScanError {
    line: usize,
    message: String,
}

impl ScanError {
    fn into_history_error(self, path: &str) -> HistoryError {
        HistoryError::new(path, self.line, self.message)
    }
}

fn parse_form(form: &Form) -> Result<Option<Edn>, ScanError> {
    match edn_format::parse_str(&form.text) {
        Ok(v) => Ok(Some(v)),
        // Only a discarded form (`#_ x`) leaves nothing once parsed.
        Err(e) if e.error == ParserError::EmptyInput => Ok(None),
        Err(e) => Err(ScanError {
            // edn-format's `col` counts lines from 1 within the text it was given.
            line: form.line + e.col.saturating_sub(1),
            message: format!("expected an EDN value ({})", describe_parse_error(&e.error)),
        }),
    }
}

fn describe_parse_error(e: &ParserError) -> String {
    match e {
        ParserError::BadInt { parsing, .. } => {
            format!("the integer {parsing} does not fit in 64 signed bits")
        }
        ParserError::DuplicateKeyInMap { value } => {
            format!("the key {} appears twice in one map", short(value))
        }
        ParserError::UnexpectedCharacter(c) => format!("unexpected character {c:?}"),
        ParserError::OddNumberOfMapElements => {
            "a map needs a value for every key; this one has an odd number of elements".into()
        }
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// What a [`Scanner`] is cutting up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A history file: top-level maps, or one top-level vector whose elements are the forms.
    History,
    /// Exactly one value.
    Single,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VectorState {
    /// Nothing significant seen yet.
    Undecided,
    /// The file does not start with `[`: every top-level value is a form.
    None,
    /// Inside the top-level vector opened at this line: its elements are the forms.
    Open(usize),
    /// The top-level vector closed at this line; nothing may follow.
    Closed(usize),
}

#[derive(Debug)]
enum End {
    Clean,
    /// The input ended inside a form that started at `start_line`.
    Incomplete {
        start_line: usize,
        message: String,
    },
}

/// Cuts EDN text into top-level values without parsing them, tracking strings, comments,
/// character literals and bracket depth.
///
/// Cutting first lets the reader stream a history a line at a time, name the line where each
/// map starts, and refuse nesting deeper than [`MAX_DEPTH`] before the recursive parser sees
/// it. Tokens follow edn-format's: an atom ends at any character that cannot be in one.
#[derive(Debug)]
struct Scanner {
    layout: Layout,
    vector: VectorState,
    /// Open collections of the current form: the closing character and the opening line.
    open: Vec<(char, usize)>,
    text: String,
    form_active: bool,
    start_line: usize,
    /// Inside a string begun at this line.
    string_start: Option<usize>,
    escape: bool,
    comment: bool,
    /// Inside an atom; `true` when it began with `#` (a tag or `#_`) and so applies to the
    /// value that follows it.
    atom: Option<bool>,
    /// Just read the `\` of a character literal: the next character is taken as is.
    char_literal: bool,
    /// The top-level form so far ends in a tag still waiting for its value.
    awaiting_tagged: bool,
    /// Tags in a row (`#a #b #c x`): each is one more level of recursion in the parser.
    tag_run: usize,
    forms: usize,
}

impl Scanner {
    fn new(layout: Layout) -> Scanner {
        Scanner {
            layout,
            vector: match layout {
                Layout::History => VectorState::Undecided,
                Layout::Single => VectorState::None,
            },
            open: Vec::new(),
            text: String::new(),
            form_active: false,
            start_line: 0,
            string_start: None,
            escape: false,
            comment: false,
            atom: None,
            char_literal: false,
            awaiting_tagged: false,
            tag_run: 0,
            forms: 0,
        }
    }

    fn in_vector(&self) -> bool {
        matches!(self.vector, VectorState::Open(_) | VectorState::Closed(_))
    }

    fn push(&mut self, c: char, line: usize, out: &mut Vec<Form>) -> Result<(), ScanError> {
        if self.comment {
            if c == '\n' {
                self.comment = false;
                // Keep the newline so edn-format's line count inside the form stays right.
                self.keep(c);
            }
            return Ok(());
        }
        if self.string_start.is_some() {
            self.text.push(c);
            if self.escape {
                self.escape = false;
            } else if c == '\\' {
                self.escape = true;
            } else if c == '"' {
                self.string_start = None;
                if self.open.is_empty() {
                    self.value_ended(out);
                }
            }
            return Ok(());
        }
        if self.char_literal {
            self.char_literal = false;
            self.text.push(c);
            return Ok(());
        }
        match c {
            c if c.is_whitespace() || c == ',' => {
                self.end_atom(out);
                self.keep(c);
            }
            ';' => {
                self.end_atom(out);
                self.comment = true;
            }
            '"' => {
                self.end_atom(out);
                self.begin_token(line, false)?;
                self.text.push(c);
                self.string_start = Some(line);
            }
            '(' | '[' | '{' => {
                self.end_atom(out);
                if c == '[' && self.vector == VectorState::Undecided && !self.form_active {
                    self.vector = VectorState::Open(line);
                    return Ok(());
                }
                self.begin_token(line, false)?;
                self.open.push((closer_of(c), line));
                if self.open.len() + self.tag_run > MAX_DEPTH {
                    return Err(ScanError {
                        line,
                        message: format!(
                            "expected values nested at most {MAX_DEPTH} deep, found deeper nesting"
                        ),
                    });
                }
                self.text.push(c);
            }
            ')' | ']' | '}' => {
                self.end_atom(out);
                match self.open.pop() {
                    Some((want, _)) if want == c => {
                        self.text.push(c);
                        if self.open.is_empty() {
                            self.value_ended(out);
                        }
                    }
                    Some((want, opened)) => {
                        return Err(ScanError {
                            line,
                            message: format!(
                                "expected `{want}` to close the `{}` opened at line {opened}, found `{c}`",
                                opener_of(want)
                            ),
                        });
                    }
                    None => match self.vector {
                        VectorState::Open(_) if c == ']' && !self.form_active => {
                            self.vector = VectorState::Closed(line);
                        }
                        _ if self.form_active => {
                            return Err(ScanError {
                                line,
                                message: format!("expected a value after the tag, found `{c}`"),
                            });
                        }
                        _ => {
                            return Err(ScanError {
                                line,
                                message: format!("found `{c}` with nothing open for it to close"),
                            });
                        }
                    },
                }
            }
            '\\' => {
                self.end_atom(out);
                self.begin_token(line, false)?;
                self.text.push(c);
                self.char_literal = true;
                self.atom = Some(false);
            }
            '#' => {
                self.end_atom(out);
                self.begin_token(line, true)?;
                self.text.push(c);
                self.atom = Some(true);
            }
            _ => {
                if self.atom.is_none() {
                    self.begin_token(line, false)?;
                    self.atom = Some(false);
                }
                self.text.push(c);
            }
        }
        Ok(())
    }

    /// Ends the input; forms completed by the end (a bare atom) are pushed to `out`.
    fn finish(&mut self, out: &mut Vec<Form>) -> Result<End, ScanError> {
        self.end_atom(out);
        if self.form_active {
            let message = if let Some(line) = self.string_start {
                format!(
                    "expected `\"` to end the string begun at line {line}, found the end of the file"
                )
            } else if let Some((want, line)) = self.open.last() {
                format!(
                    "expected `{want}` to close the `{}` opened at line {line}, found the end of the file",
                    opener_of(*want)
                )
            } else {
                "expected a value after the tag, found the end of the file".to_string()
            };
            return Ok(End::Incomplete {
                start_line: self.start_line,
                message,
            });
        }
        if let VectorState::Open(line) = self.vector {
            return Err(ScanError {
                line,
                message: format!(
                    "expected `]` to close the history vector opened at line {line}, found the end of the file"
                ),
            });
        }
        Ok(End::Clean)
    }

    fn keep(&mut self, c: char) {
        if self.form_active {
            self.text.push(c);
        }
    }

    fn begin_token(&mut self, line: usize, is_tag: bool) -> Result<(), ScanError> {
        if !self.form_active {
            if let VectorState::Closed(closed) = self.vector {
                return Err(ScanError {
                    line,
                    message: format!(
                        "expected nothing after the `]` that closes the history vector at line {closed}"
                    ),
                });
            }
            if self.vector == VectorState::Undecided {
                self.vector = VectorState::None;
            }
            if self.layout == Layout::Single && self.forms > 0 {
                return Err(ScanError {
                    line,
                    message: "expected one EDN value, found more after it".to_string(),
                });
            }
            self.form_active = true;
            self.text.clear();
            self.start_line = line;
        }
        if self.open.is_empty() {
            self.awaiting_tagged = false;
        }
        self.tag_run = if is_tag { self.tag_run + 1 } else { 0 };
        if self.tag_run + self.open.len() > MAX_DEPTH {
            return Err(ScanError {
                line,
                message: format!("expected at most {MAX_DEPTH} tags in a row, found more"),
            });
        }
        Ok(())
    }

    fn end_atom(&mut self, out: &mut Vec<Form>) {
        match self.atom.take() {
            Some(true) if self.open.is_empty() => self.awaiting_tagged = true,
            Some(false) if self.open.is_empty() => self.value_ended(out),
            _ => {}
        }
    }

    /// A value at the top level just ended: unless a tag still waits for it, the form is done.
    fn value_ended(&mut self, out: &mut Vec<Form>) {
        if self.awaiting_tagged {
            return;
        }
        self.forms += 1;
        out.push(Form {
            text: std::mem::take(&mut self.text),
            line: self.start_line,
            ordinal: self.in_vector().then_some(self.forms),
        });
        self.form_active = false;
    }
}

fn closer_of(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

fn opener_of(close: char) -> char {
    match close {
        ')' => '(',
        ']' => '[',
        _ => '{',
    }
}

/// Formats one op as an EDN map, in the key order Jepsen prints.
struct EdnOp<'a>(&'a Op);

impl fmt::Display for EdnOp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        f.write_str("{:index ")?;
        write_u64(f, op.index)?;
        f.write_str(", :time ")?;
        write_u64(f, op.time_ns)?;
        write!(f, ", :type :{}, :process ", op.kind.as_str())?;
        match op.process {
            Process::Client(p) => write_u64(f, p)?,
            Process::Nemesis => f.write_str(":nemesis")?,
        }
        f.write_str(", :f ")?;
        write_name(f, op.f.as_str())?;
        if let Some(key) = &op.key {
            f.write_str(", :key ")?;
            write_key(f, key)?;
        }
        f.write_str(", :value ")?;
        write_value(f, &op.value)?;
        if let Some(node) = &op.node {
            f.write_str(", :node ")?;
            write_string(f, node)?;
        }
        if let Some(error) = &op.error {
            f.write_str(", :error ")?;
            write_string(f, error)?;
        }
        f.write_str("}")
    }
}

/// EDN integers are 64-bit signed; larger counts are written as big integers (`N`), which
/// the reader accepts wherever it wants a non-negative integer.
fn write_u64(f: &mut fmt::Formatter<'_>, n: u64) -> fmt::Result {
    if i64::try_from(n).is_ok() {
        write!(f, "{n}")
    } else {
        write!(f, "{n}N")
    }
}

/// Writes a function name as a keyword when it reads back as the same keyword, else as a
/// string (which the reader also accepts for `:f`).
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if is_plain_keyword(name) {
        write!(f, ":{name}")
    } else {
        write_string(f, name)
    }
}

/// Whether `:name` is a keyword without namespace that edn-format reads back as `name`.
fn is_plain_keyword(name: &str) -> bool {
    let symbolic = |c: char| "*+!-_?<>=.".contains(c);
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    // `:-1` or `:+2` would not be keywords with that name: the parser sees a number.
    let looks_numeric =
        matches!(first, '+' | '-') && chars.next().is_some_and(|c| c.is_ascii_digit());
    (first.is_ascii_alphabetic() || symbolic(first))
        && !looks_numeric
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || symbolic(c))
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &Key) -> fmt::Result {
    match key {
        Key::Int(k) => write!(f, "{k}"),
        Key::Str(k) => write_string(f, k),
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, value: &Value) -> fmt::Result {
    match value {
        Value::Nil => f.write_str("nil"),
        Value::Bool(b) => write!(f, "{b}"),
        Value::Int(i) => write!(f, "{i}"),
        Value::Str(s) => write_string(f, s),
        Value::List(items) => {
            f.write_str("[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write_value(f, item)?;
            }
            f.write_str("]")
        }
        Value::Map(map) => {
            f.write_str("{")?;
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_string(f, k)?;
                f.write_str(" ")?;
                write_value(f, v)?;
            }
            f.write_str("}")
        }
        Value::Txn(mops) => {
            f.write_str("[")?;
            for (i, mop) in mops.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                write_micro_op(f, mop)?;
            }
            f.write_str("]")
        }
    }
}

fn write_micro_op(f: &mut fmt::Formatter<'_>, mop: &MicroOp) -> fmt::Result {
    write!(f, "[:{} ", mop.f.as_str())?;
    write_key(f, &mop.key)?;
    f.write_str(" ")?;
    write_value(f, &mop.value)?;
    f.write_str("]")
}

/// An EDN string literal. Only the escapes edn-format reads are used; every other character,
/// control characters included, is written as is, which it reads back unchanged.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form as (text, line, ordinal).
    type Cut = (String, usize, Option<usize>);

    fn scan(text: &str) -> (Vec<Cut>, Result<End, ScanError>) {
        let mut scanner = Scanner::new(Layout::History);
        let mut forms = Vec::new();
        for (i, line) in text.split_inclusive('\n').enumerate() {
            for c in line.chars() {
                if let Err(e) = scanner.push(c, i + 1, &mut forms) {
                    return (Vec::new(), Err(e));
                }
            }
        }
        let end = scanner.finish(&mut forms);
        (
            forms
                .into_iter()
                .map(|f| (f.text, f.line, f.ordinal))
                .collect(),
            end,
        )
    }

    #[test]
    fn scanner_cuts_one_map_per_line() {
        let (forms, end) = scan("{:a 1}\n; a comment\n{:b \"}\"}\n");
        assert!(matches!(end, Ok(End::Clean)));
        assert_eq!(
            forms,
            vec![
                ("{:a 1}".to_string(), 1, None),
                ("{:b \"}\"}".to_string(), 3, None)
            ]
        );
    }

    #[test]
    fn scanner_descends_into_the_top_level_vector() {
        let (forms, end) = scan("[{:a 1} {:b [2]}\n {:c \\]}]\n");
        assert!(matches!(end, Ok(End::Clean)));
        assert_eq!(
            forms,
            vec![
                ("{:a 1}".to_string(), 1, Some(1)),
                ("{:b [2]}".to_string(), 1, Some(2)),
                ("{:c \\]}".to_string(), 2, Some(3)),
            ]
        );
    }

    #[test]
    fn scanner_keeps_tags_with_their_value() {
        let (forms, _) = scan("#jepsen.history.Op{:a 1}\n#_ {:b 2} #{1}\n");
        let texts: Vec<_> = forms.into_iter().map(|f| f.0).collect();
        assert_eq!(texts, vec!["#jepsen.history.Op{:a 1}", "#_ {:b 2}", "#{1}"]);
    }

    #[test]
    fn scanner_refuses_deep_nesting_before_the_parser_sees_it() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        let (_, end) = scan(&format!("{{:a {deep}}}"));
        let err = end.expect_err("nesting beyond the bound must be refused");
        assert!(err.message.contains("nested at most"), "{}", err.message);

        let tags = "#a ".repeat(MAX_DEPTH + 1);
        let (_, end) = scan(&format!("{tags}1"));
        assert!(end.is_err(), "a long run of tags must be refused");
    }

    #[test]
    fn scanner_accepts_nesting_at_the_bound_and_the_parser_copes() {
        let depth = MAX_DEPTH - 1;
        let value = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let parsed = parse_one(&format!("{{:a {value}}}")).expect("within the bound");
        assert!(matches!(parsed, Edn::Map(_)));
    }

    #[test]
    fn parse_one_refuses_trailing_values() {
        assert_eq!(
            parse_one("[3 0]").ok(),
            Some(Edn::Vector(vec![Edn::Integer(3), Edn::Integer(0)]))
        );
        let err = parse_one("1 2").expect_err("two values");
        assert!(err.contains("found more"), "{err}");
        let err = parse_one("[1 2").expect_err("unterminated");
        assert!(err.contains("expected `]`"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_line_inside_a_multi_line_map() {
        let form = Form {
            text: "{:a 1\n :b}".to_string(),
            line: 7,
            ordinal: None,
        };
        let err = parse_form(&form).expect_err("odd map");
        assert_eq!(err.line, 8);
    }

    #[test]
    fn plain_keywords_are_the_ones_that_read_back() {
        for name in ["read", "start-partition", "cas!", "nil", "a.b", "-x"] {
            assert!(is_plain_keyword(name), "{name}");
            let parsed = parse_one(&format!(":{name}")).expect("keyword");
            assert_eq!(name_of(&parsed).as_deref(), Some(name));
        }
        for name in ["", "a b", "a/b", "-1", "+2x", "é", "a:b", "1a\""] {
            assert!(!is_plain_keyword(name), "{name}");
        }
    }
}
