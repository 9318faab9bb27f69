//! The statement language of the `exec` request: just enough to show why a statement-based
//! replication log is fragile (DDIA ch. 5): `now()` and `rand()` give a different result on
//! every replica that evaluates them, while `add N` and `set N` are deterministic.
//!
//! ```text
//! stmt := "set" value | "add" INT
//! value := INT | "now()" | "rand()"
//! ```

use std::fmt;

/// A parsed statement on one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stmt {
    /// `set N`
    Set(i64),
    /// `set now()`: the evaluating node's wall clock, in ms since the Unix epoch.
    SetNow,
    /// `set rand()`: a random number from the evaluating node's generator.
    SetRand,
    /// `add N`: the register's value plus N (an empty register counts as 0), saturating.
    Add(i64),
}

/// Longest statement text accepted; statements are short by construction.
pub const MAX_STMT_BYTES: usize = 64;

/// `rand()` draws from `0..RAND_RANGE`.
pub const RAND_RANGE: u64 = 1_000_000_000;

impl Stmt {
    pub fn parse(text: &str) -> Result<Stmt, String> {
        if text.len() > MAX_STMT_BYTES {
            return Err(format!("statement longer than {MAX_STMT_BYTES} bytes"));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let int = |w: &str| {
            w.parse::<i64>()
                .map_err(|_| format!("{w:?} is not an integer in statement {text:?}"))
        };
        match words.as_slice() {
            ["set", "now()"] => Ok(Stmt::SetNow),
            ["set", "rand()"] => Ok(Stmt::SetRand),
            ["set", n] => int(n).map(Stmt::Set),
            ["add", n] => int(n).map(Stmt::Add),
            _ => Err(format!(
                "cannot parse statement {text:?}; expected `set N`, `set now()`, `set rand()` or `add N`"
            )),
        }
    }

    /// The register's value after the statement, given its value before, this node's wall
    /// clock and a random draw (only `SetRand` uses it).
    pub fn eval(self, before: Option<i64>, wall_clock_ms: i64, random: u64) -> i64 {
        match self {
            Stmt::Set(n) => n,
            Stmt::SetNow => wall_clock_ms,
            Stmt::SetRand => i64::try_from(random % RAND_RANGE).unwrap_or(0),
            Stmt::Add(n) => before.unwrap_or(0).saturating_add(n),
        }
    }

    /// Whether evaluating it twice can give two results.
    pub fn is_deterministic(self) -> bool {
        matches!(self, Stmt::Set(_) | Stmt::Add(_))
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Set(n) => write!(f, "set {n}"),
            Stmt::SetNow => f.write_str("set now()"),
            Stmt::SetRand => f.write_str("set rand()"),
            Stmt::Add(n) => write!(f, "add {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse_and_print_back() {
        for text in [
            "set 7",
            "set -3",
            "set now()",
            "set rand()",
            "add 5",
            "add -1",
        ] {
            let stmt = Stmt::parse(text).unwrap();
            assert_eq!(stmt.to_string(), text);
            assert_eq!(Stmt::parse(&stmt.to_string()), Ok(stmt));
        }
        assert_eq!(Stmt::parse("  add   2 "), Ok(Stmt::Add(2)));
    }

    #[test]
    fn bad_statements_say_why() {
        for (text, needle) in [
            ("", "cannot parse"),
            ("drop table", "cannot parse"),
            ("set now", "not an integer"),
            ("add 99999999999999999999", "not an integer"),
            ("set 1 2", "cannot parse"),
        ] {
            let e = Stmt::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(
            Stmt::parse(&"add 1 ".repeat(20))
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn evaluation_uses_the_nodes_clock_and_randomness_only_where_asked() {
        assert_eq!(Stmt::Add(5).eval(None, 0, 0), 5);
        assert_eq!(Stmt::Add(5).eval(Some(i64::MAX), 0, 0), i64::MAX);
        assert_eq!(Stmt::SetNow.eval(Some(1), 1234, 0), 1234);
        assert_eq!(Stmt::SetRand.eval(None, 0, RAND_RANGE + 7), 7);
        assert!(!Stmt::SetNow.is_deterministic() && Stmt::Add(1).is_deterministic());
    }
}
