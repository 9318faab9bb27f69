//! Workload generators: pure, seeded sources of operations. The same seed gives the same
//! sequence of invocations; which worker performs which one depends on timing.

use histories::{F, Key, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use targets::Invocation;

/// Shape of the register workload.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// How many keys are in use at once.
    pub active_keys: usize,
    /// Invocations per key before it is retired and a fresh key takes its place. Like Jepsen's
    /// independent keys, this keeps each key's history small enough to check exhaustively.
    pub ops_per_key: u32,
    /// Values written are drawn from `0..value_range`; a small range makes cas succeed often.
    pub value_range: i64,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            active_keys: 3,
            ops_per_key: 120,
            value_range: 5,
        }
    }
}

/// Reads, writes and compare-and-sets on integer registers, on a rolling window of keys.
#[derive(Debug)]
pub struct RegisterWorkload {
    rng: ChaCha8Rng,
    config: RegisterConfig,
    /// (key, invocations left) for each active key.
    active: Vec<(i64, u32)>,
    next_key: i64,
}

impl RegisterWorkload {
    pub fn new(seed: u64, config: RegisterConfig) -> RegisterWorkload {
        let active_keys = config.active_keys.max(1);
        let active = (0..active_keys as i64)
            .map(|k| (k, config.ops_per_key.max(1)))
            .collect();
        RegisterWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            active,
            next_key: active_keys as i64,
        }
    }

    pub fn next_invocation(&mut self) -> Invocation {
        let slot = self.rng.random_range(0..self.active.len());
        let key = self.active[slot].0;
        self.active[slot].1 -= 1;
        if self.active[slot].1 == 0 {
            self.active[slot] = (self.next_key, self.config.ops_per_key.max(1));
            self.next_key += 1;
        }
        let range = self.config.value_range.max(1);
        let (f, value) = match self.rng.random_range(0..4) {
            0 | 1 => (F::Read, Value::Nil),
            2 => (F::Write, Value::Int(self.rng.random_range(0..range))),
            _ => (
                F::Cas,
                Value::List(vec![
                    Value::Int(self.rng.random_range(0..range)),
                    Value::Int(self.rng.random_range(0..range)),
                ]),
            ),
        };
        Invocation {
            f,
            key: Some(Key::Int(key)),
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_different_seed_differs() {
        let take = |seed| {
            let mut w = RegisterWorkload::new(seed, RegisterConfig::default());
            (0..500).map(|_| w.next_invocation()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
    }

    #[test]
    fn keys_retire_after_their_budget() {
        let config = RegisterConfig {
            active_keys: 2,
            ops_per_key: 10,
            value_range: 5,
        };
        let mut w = RegisterWorkload::new(1, config);
        let mut per_key = std::collections::HashMap::new();
        for _ in 0..200 {
            let inv = w.next_invocation();
            *per_key.entry(inv.key.clone()).or_insert(0) += 1;
        }
        assert!(per_key.values().all(|&n| n <= 10), "{per_key:?}");
        // Only the keys still active at the end may be short of their budget.
        let unfinished = per_key.values().filter(|&&n| n < 10).count();
        assert!(unfinished <= 2, "{per_key:?}");
        assert!(per_key.len() >= 20, "{per_key:?}");
    }

    #[test]
    fn mix_contains_every_function_with_valid_arguments() {
        let mut w = RegisterWorkload::new(3, RegisterConfig::default());
        let ops: Vec<_> = (0..300).map(|_| w.next_invocation()).collect();
        assert!(ops.iter().any(|o| o.f == F::Read && o.value.is_nil()));
        assert!(
            ops.iter()
                .any(|o| o.f == F::Write && o.value.as_int().is_some())
        );
        assert!(
            ops.iter()
                .any(|o| o.f == F::Cas && o.value.as_cas().is_some())
        );
    }
}
