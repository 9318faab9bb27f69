//! Properties of the transactional checker over simulated databases:
//! - always: a history from a database that runs each transaction atomically between its
//!   invocation and its completion (strictly serializable) is valid under strict-serializable;
//! - always: the same with one injected anomaly that took effect is invalid, and the anomaly is
//!   one the injection can cause.

use checkers::Validity;
use checkers::txn::synth::{GenOptions, Inject, generate};
use checkers::txn::{TxnOptions, Workload, check};
use proptest::prelude::*;

fn workload() -> impl Strategy<Value = Workload> {
    prop_oneof![Just(Workload::ListAppend), Just(Workload::RwRegister)]
}

fn inject() -> impl Strategy<Value = Inject> {
    prop_oneof![
        Just(Inject::StaleRead),
        Just(Inject::AbortedRead),
        Just(Inject::LostUpdate)
    ]
}

fn types(v: &checkers::Verdict) -> Vec<String> {
    v.details["anomaly-types"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn strictly_serializable_simulations_are_always_valid(
        seed in any::<u64>(),
        workload in workload(),
        txns in 1usize..400,
        processes in 1usize..8,
        keys in 1usize..6,
        mops in 1usize..6,
        max_writes in 1usize..20,
        fail_permille in 0u32..100,
        info_permille in 0u32..100,
    ) {
        let g = generate(&GenOptions {
            workload, txns, processes, keys, mops_per_txn: mops, max_writes_per_key: max_writes,
            fail_permille, info_permille, seed, inject: None, inject_after: 0,
        });
        let v = check(&g.history, &TxnOptions::new(workload));
        prop_assert_eq!(v.valid, Validity::True, "seed {}: {}\n{:#?}", seed, v.summary, v.explanation);
        prop_assert!(types(&v).is_empty());
    }

    #[test]
    fn an_injected_anomaly_is_always_caught(
        seed in any::<u64>(),
        inject in inject(),
        txns in 20usize..400,
        processes in 2usize..8,
        keys in 1usize..4,
        mops in 2usize..6,
        fail_permille in 20u32..200,
    ) {
        let g = generate(&GenOptions {
            workload: Workload::ListAppend, txns, processes, keys, mops_per_txn: mops,
            max_writes_per_key: 32, fail_permille, info_permille: 10, seed,
            inject: Some(inject), inject_after: txns / 4,
        });
        prop_assume!(g.injected.is_some());
        let v = check(&g.history, &TxnOptions::new(Workload::ListAppend));
        prop_assert_eq!(v.valid, Validity::False, "seed {} {:?}: {:?} went unnoticed: {}", seed, inject, g.injected, v.summary);
        let found = types(&v);
        let expected: &[&str] = match inject {
            Inject::StaleRead => &["G-single-realtime", "G-single-process", "G-single", "G-nonadjacent", "G2-item"],
            Inject::AbortedRead => &["G1a"],
            Inject::LostUpdate => &["lost-update"],
        };
        prop_assert!(
            expected.iter().any(|e| found.iter().any(|f| f == e)),
            "seed {} {:?}: found {:?}", seed, inject, found
        );
    }
}
