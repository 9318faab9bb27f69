use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Three-valued validity: `unknown` means the checker could not decide (out of budget, or the
/// history breaks an assumption it needs), never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validity {
    True,
    False,
    Unknown,
}

impl Validity {
    /// Merges verdicts of parts: false over unknown over true.
    pub fn merge(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::True,
        }
    }

    /// The process exit code conventions: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::True => 0,
            Validity::False => 1,
            Validity::Unknown => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Validity::True => "true",
            Validity::False => "false",
            Validity::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Validity::True => "valid",
            Validity::False => "INVALID",
            Validity::Unknown => "unknown",
        })
    }
}

/// Serialized as JSON `true`, `false` or `"unknown"`, as Jepsen's results do.
impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::True => s.serialize_bool(true),
            Validity::False => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Ok(Validity::True),
            serde_json::Value::Bool(false) => Ok(Validity::False),
            serde_json::Value::String(s) if s == "unknown" => Ok(Validity::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "expected true, false or \"unknown\", found {other}"
            ))),
        }
    }
}

/// What a checker concluded about a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The checker's name, e.g. `linearizable`.
    pub checker: String,
    pub valid: Validity,
    /// One line a person reads first: what was found, or why the answer is unknown.
    pub summary: String,
    /// The explanation, line by line: counterexamples in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
    /// Machine-readable details specific to the checker.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}
