//! The splitbrain controller: generators, the nemesis, the history recorder, the store, reports
//! and the command line. The `splitbrain` binary is a thin wrapper around [`cli::main`].

pub mod campaign;
pub mod check;
pub mod clean;
pub mod cli;
pub mod cycle_graphs;
pub mod fabric;
pub mod generator;
pub mod hermitage;
pub mod junit;
pub mod ledger;
pub mod matrix;
pub mod nemesis;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod report_html;
pub mod run;
pub mod serve;
pub mod store;
pub mod target;
pub mod timeline;
