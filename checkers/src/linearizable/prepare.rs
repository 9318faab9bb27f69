//! From a history to the calls the search sees, split into independent partitions.

use std::collections::HashMap;

use histories::{History, Key};

use super::model::{Call, Model};

/// One client call as the search sees it.
#[derive(Debug)]
pub(crate) struct PCall<M: Model> {
    /// History position of the invocation.
    pub invoke: usize,
    /// History position of the completion line, if there is one.
    pub completion: Option<usize>,
    /// Must be linearized before `completion`; otherwise the call is optional and pending
    /// forever.
    pub required: bool,
    pub input: M::Input,
    pub output: M::Output,
}

/// Calls that share keys, checked as one object.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The keys of the partition, sorted; empty for calls that name no key.
    pub keys: Vec<Key>,
    /// Indices into `Prepared::calls`, in invocation order.
    pub members: Vec<usize>,
    /// How many members are required.
    pub required: usize,
}

#[derive(Debug)]
pub(crate) struct Prepared<M: Model> {
    pub calls: Vec<PCall<M>>,
    pub parts: Vec<Part>,
    /// Client calls left out because they constrain nothing.
    pub skipped: usize,
}

/// A call the model cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrepareError {
    pub position: usize,
    pub message: String,
}

pub(crate) fn prepare<M: Model>(history: &History, model: &M) -> Result<Prepared<M>, PrepareError> {
    let ops = history.ops();
    let mut calls = Vec::new();
    let mut call_keys: Vec<Vec<Key>> = Vec::new();
    let mut skipped = 0;
    for (invoke, completion) in history.client_calls() {
        let op = &ops[invoke];
        let done = completion.map(|c| &ops[c]);
        let call = model.call(op, done).map_err(|message| PrepareError {
            position: invoke,
            message,
        })?;
        let (input, output, required) = match call {
            Call::Skip => {
                skipped += 1;
                continue;
            }
            // A required call needs a completion to bound it; without one it can only be
            // pending.
            Call::Required { input, output } => (input, output, completion.is_some()),
            Call::Optional { input, output } => (input, output, false),
        };
        call_keys.push(model.keys(op, &input));
        calls.push(PCall {
            invoke,
            completion,
            required,
            input,
            output,
        });
    }
    let parts = partition(&calls, &call_keys);
    Ok(Prepared {
        calls,
        parts,
        skipped,
    })
}

/// Groups calls into connected components of "shares a key"; calls without keys form one group.
fn partition<M: Model>(calls: &[PCall<M>], call_keys: &[Vec<Key>]) -> Vec<Part> {
    let mut key_ids: HashMap<&Key, usize> = HashMap::new();
    let mut keys: Vec<&Key> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    for ks in call_keys {
        let mut first = None;
        for k in ks {
            let id = *key_ids.entry(k).or_insert_with(|| {
                keys.push(k);
                parent.push(parent.len());
                parent.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(f) => union(&mut parent, f, id),
            }
        }
    }
    // Group id per root key; the keyless group comes last.
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    let mut parts: Vec<Part> = Vec::new();
    let mut keyless: Option<usize> = None;
    for (i, ks) in call_keys.iter().enumerate() {
        let g = match ks.first() {
            Some(k) => {
                let root = find(&mut parent, key_ids[k]);
                *group_of_root.entry(root).or_insert_with(|| {
                    parts.push(Part {
                        keys: Vec::new(),
                        members: Vec::new(),
                        required: 0,
                    });
                    parts.len() - 1
                })
            }
            None => *keyless.get_or_insert_with(|| {
                parts.push(Part {
                    keys: Vec::new(),
                    members: Vec::new(),
                    required: 0,
                });
                parts.len() - 1
            }),
        };
        parts[g].members.push(i);
        parts[g].required += usize::from(calls[i].required);
    }
    for (id, k) in keys.iter().enumerate() {
        let root = find(&mut parent, id);
        if let Some(&g) = group_of_root.get(&root) {
            parts[g].keys.push((*k).clone());
        }
    }
    for p in &mut parts {
        p.keys.sort();
    }
    // Calls were collected in invocation order, so members already are too.
    parts
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[rb] = ra;
    }
}
