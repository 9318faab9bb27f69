//! The `refnode` server: flags ([`config`]), the replication protocol as effect-free handlers
//! ([`node`]), the statement language of `exec` ([`statement`]), its durable state ([`state`],
//! [`storage`]), the node's log file ([`logger`]) and
//! the tokio driver that connects them to sockets, disk and time ([`driver`]).
//!
//! The designs without a single leader have their own handlers ([`multi_leader`],
//! [`leaderless`]), built on version vectors ([`version_vector`]), versions and conflict rules
//! ([`versions`]), consistent hashing ([`ring`]) and Merkle trees ([`merkle`]); they share
//! [`replica`] and run under [`replica_driver`] with [`replica_storage`].

pub mod config;
pub mod driver;
pub mod leaderless;
mod link;
pub mod logger;
pub mod merkle;
pub mod multi_leader;
pub mod node;
pub mod replica;
pub mod replica_driver;
#[cfg(test)]
mod replica_sim;
pub mod replica_storage;
pub mod ring;
pub mod state;
pub mod statement;
pub mod storage;
pub mod version_vector;
pub mod versions;

/// Exit code for a user mistake (bad flags, unusable data directory), as everywhere in
/// splitbrain.
pub const EXIT_USAGE: i32 = 254;

/// The whole `refnode` program; returns the process exit code.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cfg = match config::parse_args(args) {
        Ok(cfg) => cfg,
        Err(config::ArgsError::Info(text)) => {
            print!("{text}");
            return 0;
        }
        Err(config::ArgsError::Bad(line)) => {
            eprintln!("refnode: {line}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("refnode: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(driver::serve(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            // One line: the harness shows it to the user next to the node's log.
            eprintln!("refnode: {e:#}");
            EXIT_USAGE
        }
    }
}
