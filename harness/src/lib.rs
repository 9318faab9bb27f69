//! The splitbrain controller: generators, the nemesis, the history recorder, the store, reports
//! and the command line. The `splitbrain` binary is a thin wrapper around [`cli::main`].

pub mod check;
pub mod cli;
pub mod cycle_graphs;
pub mod generator;
pub mod nemesis;
pub mod recorder;
pub mod report;
pub mod run;
pub mod store;
pub mod timeline;
