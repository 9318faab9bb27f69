//! refnode: the reference replicated key-value node that splitbrain ships.

pub mod client;
pub mod cluster;
pub mod protocol;
pub mod server;
