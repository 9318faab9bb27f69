//! The operation and history model of splitbrain, and its on-disk formats.
//!
//! A history is the list of everything that happened during a test, in the order it happened:
//! each client call appears as an `invoke` line and, later, one completion line (`ok`, `fail` or
//! `info`) from the same process; nemesis faults appear in the same list under the process
//! `nemesis`. Only this crate knows how histories are stored; everything else sees [`Op`]s.
//!
//! ```
//! use histories::{History, Op, OpType, Process, F, Value, Key};
//!
//! let jsonl = r#"{"index":0,"time":10,"process":0,"type":"invoke","f":"write","key":1,"value":3}
//! {"index":1,"time":25,"process":0,"type":"ok","f":"write","key":1,"value":3}
//! "#;
//! let read = histories::jsonl::read(jsonl.as_bytes(), "example.jsonl").unwrap();
//! let history: History = read.history;
//! assert_eq!(history.ops().len(), 2);
//! assert_eq!(history.ops()[1].kind, OpType::Ok);
//! assert_eq!(history.ops()[1].key, Some(Key::Int(1)));
//! assert_eq!(history.completion_of(0), Some(1));
//! ```
//!
//! Files in any supported format (native JSONL, Jepsen/Elle EDN, Porcupine's etcd logs and kv
//! lines) are read with [`read_any`], which detects the format when it is not given:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("histories-doctest-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("history.edn");
//! std::fs::write(&path, "{:type :invoke, :f :write, :value 3, :process 0, :time 1}\n")?;
//!
//! let loaded = histories::read_any(&path, None)?;
//! assert_eq!(loaded.format, histories::Format::Edn);
//! assert_eq!(loaded.history.ops()[0].value, histories::Value::Int(3));
//! // A call still open at the end is allowed: nobody saw its outcome.
//! assert_eq!(loaded.history.completion_of(0), None);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub mod edn;
mod error;
mod formats;
mod history;
pub mod jsonl;
mod op;
pub mod porcupine;

pub use error::HistoryError;
pub use formats::{DETECT_BYTES, Format, Loaded, UnknownFormat, read_any};
pub use history::History;
pub use op::{F, Key, MicroF, MicroOp, Op, OpType, Process, Value, txn_from_value};
