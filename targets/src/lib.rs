//! The systems splitbrain tests: the [`Db`] / [`Client`] protocols with their optional
//! capabilities, the `refnode` reference node, and its cluster driver.

pub mod adapters;
pub mod db;
pub mod ports;
pub mod process;
pub mod refnode;

pub use db::{
    Client, Clock, Completion, Db, Invocation, Kill, Member, NodeId, Pause, Primary, ReadRouting,
};
