//! Consistency checkers: pure functions from a [`histories::History`] to a [`Verdict`].
//!
//! Checkers do no I/O, spawn nothing and read no clock; a caller that wants a time budget
//! passes a cancellation flag that it sets from outside.

pub mod linearizable;
pub mod maelstrom;
pub mod replication;
pub mod session;
pub mod stats;
pub mod txn;
mod verdict;

pub use verdict::{Validity, Verdict};
