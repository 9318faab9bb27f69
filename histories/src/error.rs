use std::fmt;

/// A history that could not be read: names the file, the line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    pub path: String,
    /// 1-based line number; 0 when the problem is not tied to a line (e.g. the file is missing).
    pub line: usize,
    pub message: String,
}

impl HistoryError {
    pub fn new(path: &str, line: usize, message: impl Into<String>) -> HistoryError {
        HistoryError {
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.path)?;
        } else {
            write!(f, "{}:{}: ", self.path, self.line)?;
        }
        // Messages quote names from the file (an `f` may be any string); a line break in one
        // would split what tools and people read as one error per line.
        for c in self.message.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for HistoryError {}
