use std::collections::HashMap;

use crate::op::{Op, OpType, Process};

/// A well-formed history: every completion follows an invocation by the same client process,
/// and no client process invokes while its previous call is still open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
    /// For each position: the position of the other half of the call (invoke <-> completion).
    partner: Vec<Option<usize>>,
}

/// Why a list of operations is not a well-formed history, and at which position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAt {
    pub position: usize,
    pub message: String,
}

impl History {
    /// Checks well-formedness and pairs invocations with completions. Client invocations left
    /// open at the end are allowed: they are calls whose outcome nobody saw (like `info`).
    pub fn from_ops(ops: Vec<Op>) -> Result<History, MalformedAt> {
        let mut partner = vec![None; ops.len()];
        let mut open: HashMap<Process, usize> = HashMap::new();
        for (pos, op) in ops.iter().enumerate() {
            let Process::Client(_) = op.process else {
                // Nemesis invocations and completions pair up loosely; a nemesis may also log a
                // bare `info` line for a fault it performed without a start.
                if op.kind == OpType::Invoke {
                    open.insert(op.process, pos);
                } else if let Some(start) = open.remove(&op.process) {
                    partner[start] = Some(pos);
                    partner[pos] = Some(start);
                }
                continue;
            };
            if op.kind == OpType::Invoke {
                if let Some(prev) = open.insert(op.process, pos) {
                    return Err(MalformedAt {
                        position: pos,
                        message: format!(
                            "process {} invokes {} while its {} (op {}) has not completed; expected a completion first",
                            op.process, op.f, ops[prev].f, ops[prev].index
                        ),
                    });
                }
            } else {
                let Some(start) = open.remove(&op.process) else {
                    return Err(MalformedAt {
                        position: pos,
                        message: format!(
                            "{} completion of {} by process {} without an invocation; expected an invoke by that process first",
                            op.kind.as_str(),
                            op.f,
                            op.process
                        ),
                    });
                };
                if ops[start].f != op.f {
                    return Err(MalformedAt {
                        position: pos,
                        message: format!(
                            "completion f {} does not match the invocation's f {} (op {})",
                            op.f, ops[start].f, ops[start].index
                        ),
                    });
                }
                partner[start] = Some(pos);
                partner[pos] = Some(start);
            }
        }
        Ok(History { ops, partner })
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The position of the completion of the invocation at `position`, if it completed.
    pub fn completion_of(&self, position: usize) -> Option<usize> {
        if self.ops.get(position)?.kind == OpType::Invoke {
            self.partner[position]
        } else {
            None
        }
    }

    /// The position of the invocation that the completion at `position` ends.
    pub fn invocation_of(&self, position: usize) -> Option<usize> {
        if self.ops.get(position)?.kind != OpType::Invoke {
            self.partner[position]
        } else {
            None
        }
    }

    /// Client calls as (invocation, completion) position pairs, in invocation order. A call with
    /// no completion line is reported with `None`.
    pub fn client_calls(&self) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.is_client() && op.kind == OpType::Invoke)
            .map(|(pos, _)| (pos, self.partner[pos]))
    }
}
