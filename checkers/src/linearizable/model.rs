//! The sequential specification a history is checked against.

use std::fmt;
use std::hash::Hash;

use histories::{Key, Op};

/// A sequential object: its initial state and what each call may do to it.
///
/// The search interns states and remembers transitions, so `step` runs about once per distinct
/// (state, call) pair; states still should be small, because each distinct one is kept.
pub trait Model: Sync {
    type State: Clone + Eq + Hash + Send + fmt::Debug;
    /// What the caller asked for, from the invocation. Calls with equal inputs and outputs
    /// are interchangeable.
    type Input: Eq + Hash + Send + Sync + fmt::Debug;
    /// What the caller observed, from the completion; models encode "not observed" (a call
    /// still pending) in it too.
    type Output: Eq + Hash + Send + Sync + fmt::Debug;

    /// The state of every partition before any call.
    fn init(&self) -> Self::State;

    /// Reads one client call: its invocation and, when it completed, the completion line.
    /// Says what this model expected when the call does not fit it.
    fn call(
        &self,
        invoke: &Op,
        completion: Option<&Op>,
    ) -> Result<Call<Self::Input, Self::Output>, String>;

    /// The state after the call, or `None` when the call cannot take effect in `state` with the
    /// output it reported.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Whether the call can never change the state: a read, an observation. Such a call is
    /// linearized as soon as it is possible, without trying other orders first (any
    /// linearization can be reordered to put it there), which prunes the search a lot. Saying
    /// `false` is always safe; saying `true` for a call that can change the state is wrong.
    fn read_only(&self, _input: &Self::Input, _output: &Self::Output) -> bool {
        false
    }

    /// Whether the call only moves the state forward in some order of progress the model
    /// keeps (appending to a string, adding to a set), so that a state it leaves behind cannot
    /// come back. With [`Model::may_reach`] it lets the search drop a branch as soon as a read
    /// that must still come can no longer be satisfied. `false` is always safe.
    fn monotone(&self, _input: &Self::Input, _output: &Self::Output) -> bool {
        false
    }

    /// Whether, from `state`, some sequence of monotone calls could lead to a state in which
    /// this read-only call is legal. `true` is always safe.
    fn may_reach(
        &self,
        _state: &Self::State,
        _input: &Self::Input,
        _output: &Self::Output,
    ) -> bool {
        true
    }

    /// The state after this call whatever the state before (a blind write, a put), if it is
    /// such a call. Lets the dead-end lookahead see past it. `None` is always safe.
    fn reset(&self, _input: &Self::Input, _output: &Self::Output) -> Option<Self::State> {
        None
    }

    /// The keys a call touches. Calls that share a key (transitively) form one partition and are
    /// searched together; partitions are independent objects and are checked separately (by
    /// the locality of linearizability). Calls with no key form one partition of their own.
    fn keys(&self, invoke: &Op, _input: &Self::Input) -> Vec<Key> {
        invoke.key.iter().cloned().collect()
    }

    /// The call in words, without the process: `write 4`, `read -> 3`.
    fn describe(&self, input: &Self::Input, output: &Self::Output) -> String;

    /// A state in words: `3`, `nil`, `"x 1 y"`.
    fn describe_state(&self, state: &Self::State) -> String;
}

/// How one client call takes part in the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<I, O> {
    /// The call constrains nothing (it failed, or it is a read nobody saw): left out.
    Skip,
    /// The call took effect between its invocation and its completion, with this output.
    Required { input: I, output: O },
    /// The call may have taken effect at any point after its invocation, or never (`info`,
    /// or an invocation that never completed).
    Optional { input: I, output: O },
}
