//! The namespace fabric against the kernel (root only): connectivity between namespaces,
//! partitions and loss cut exactly what they should, a bandwidth limit slows a transfer down,
//! heals restore it all, and dropping the fabric removes every namespace, link, rule and
//! claim. Without root (or without ip and
//! nft/iptables) these tests say so and pass: the proxy fabric is tested everywhere.

mod packages;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::fabric::grudge;
use harness::fabric::netns::{self, Netns};
use harness::fabric::{Fabric, NetMode, NetNeeds};
use harness::ledger::Ledger;

fn netns_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        packages::ensure("nft", "nftables");
    }
    match netns::available() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("{test}: skipped, namespaces are not available here: {why}");
            false
        }
    }
}

/// Runs `f` on a thread that has entered namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("setns into the node's namespace");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// A listener inside `ns` that accepts and keeps connections open for the test's life.
fn listen_in(ns: &str, addr: SocketAddr) {
    let listener = in_ns(ns, move || {
        TcpListener::bind(addr).expect("bind in namespace")
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept() {
            held.push(s);
            if held.len() > 100 {
                return;
            }
        }
    });
}

/// A server inside `ns` that reads each connection to its end and answers the byte count.
fn sink_in(ns: &str, addr: SocketAddr) {
    let listener = in_ns(ns, move || {
        TcpListener::bind(addr).expect("bind in namespace")
    });
    std::thread::spawn(move || {
        // A handful of transfers per test; the bound keeps a stray client from pinning it.
        for _ in 0..10 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            let _ = s.write_all(format!("{total}\n").as_bytes());
        }
    });
}

/// Sends `bytes` from namespace `ns` to the sink at `to` and waits for its count.
fn transfer(ns: &str, to: SocketAddr, bytes: usize) -> Duration {
    in_ns(ns, move || {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(&vec![7u8; bytes]).expect("send");
        s.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("the sink answers");
        assert_eq!(answer.trim(), bytes.to_string());
        t.elapsed()
    })
}

fn connects_from(ns: Option<&str>, to: SocketAddr) -> bool {
    let attempt = move || TcpStream::connect_timeout(&to, Duration::from_millis(300)).is_ok();
    match ns {
        Some(ns) => in_ns(ns, attempt),
        None => attempt(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_loss_cut_exactly_their_links_and_heal() {
    if !netns_or_skip("partitions_and_loss_cut_exactly_their_links_and_heal") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
    let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
    let needs = NetNeeds {
        partition: true,
        loss: true,
        delay: false,
        bandwidth: false,
    };
    let fabric = Fabric::build(NetMode::Netns, needs, &nodes, ledger.clone(), dir.path(), 1)
        .await
        .unwrap();
    let ns: &Netns = fabric.namespaces().expect("a netns fabric");
    let slot = ns.slot();
    let addr = |n: &str| ns.listen(n).unwrap();
    for n in &nodes {
        listen_in(&ns.ns_name(n), addr(n));
    }
    let (ns1, ns3) = (ns.ns_name("n1"), ns.ns_name("n3"));
    assert!(connects_from(Some(&ns3), addr("n1")), "n3 reaches n1");
    assert!(connects_from(None, addr("n1")), "the controller reaches n1");

    {
        let cut = grudge::complete(&[vec!["n1".into()], vec!["n2".into(), "n3".into()]]);
        let _partition = fabric.partition(&cut).unwrap();
        assert!(ns.tables("n1").contains("sbf"), "{}", ns.tables("n1"));
        assert!(!connects_from(Some(&ns3), addr("n1")), "n3 -> n1 is cut");
        assert!(!connects_from(Some(&ns1), addr("n2")), "n1 -> n2 is cut");
        assert!(connects_from(Some(&ns3), addr("n2")), "n3 -> n2 is not");
        assert!(
            connects_from(None, addr("n1")),
            "clients are never partitioned"
        );
    }
    assert!(
        !ns.tables("n1").contains("sbf"),
        "the heal removed the table"
    );
    assert!(connects_from(Some(&ns3), addr("n1")), "healed");

    {
        let _loss = fabric.loss(&["n2".to_string()], 100.0).unwrap();
        assert!(
            !connects_from(Some(&ns3), addr("n2")),
            "all packets to n2 lost"
        );
        assert!(connects_from(Some(&ns3), addr("n1")));
    }
    assert!(connects_from(Some(&ns3), addr("n2")), "loss healed");

    let ledger_text = std::fs::read_to_string(ledger.path()).unwrap();
    for name in [
        format!("sb{slot}-n1"),
        format!("sb{slot}br"),
        format!("sb{slot}v3"),
    ] {
        assert!(
            ledger_text.contains(&name),
            "{name} is not in the ledger:\n{ledger_text}"
        );
    }
    drop(fabric);
    assert!(
        !netns::list_namespaces()
            .iter()
            .any(|n| n.starts_with(&format!("sb{slot}-"))),
        "namespaces left"
    );
    assert!(
        !netns::list_links()
            .iter()
            .any(|l| l.starts_with(&format!("sb{slot}"))),
        "links left"
    );
    assert!(!netns::claim_path(slot).exists(), "claim left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_partitioned_still_heals_and_removes_everything() {
    if !netns_or_skip("a_panic_while_partitioned_still_heals_and_removes_everything") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
    let nodes: Vec<String> = ["n1", "n2"].map(String::from).to_vec();
    let needs = NetNeeds {
        partition: true,
        ..NetNeeds::default()
    };
    let fabric = Fabric::build(NetMode::Netns, needs, &nodes, ledger, dir.path(), 2)
        .await
        .unwrap();
    let slot = fabric.namespaces().unwrap().slot();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let cut = grudge::complete(&[vec!["n1".into()], vec!["n2".into()]]);
        let _partition = fabric.partition(&cut).unwrap();
        let _fabric = fabric;
        panic!("a bug in the middle of a partition");
    }));
    assert!(unwound.is_err());
    assert!(
        !netns::list_namespaces()
            .iter()
            .any(|n| n.starts_with(&format!("sb{slot}-"))),
        "namespaces left after the panic"
    );
    assert!(!netns::claim_path(slot).exists());
}

#[test]
fn the_iptables_fallback_cuts_and_heals_like_nft() {
    if !netns_or_skip("the_iptables_fallback_cuts_and_heals_like_nft") {
        return;
    }
    if packages::ensure("iptables", "iptables").is_none() {
        eprintln!("the_iptables_fallback_cuts_and_heals_like_nft: skipped, no iptables");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
    let nodes: Vec<String> = ["n1", "n2"].map(String::from).to_vec();
    let ns = Netns::build(&nodes, netns::FilterTool::Iptables, ledger, dir.path()).unwrap();
    let (a1, a2) = (ns.listen("n1").unwrap(), ns.listen("n2").unwrap());
    listen_in(&ns.ns_name("n1"), a1);
    let ns2 = ns.ns_name("n2");
    assert!(connects_from(Some(&ns2), a1));
    let rules = netns::Rules {
        drop_from: vec![ns.addr("n2").unwrap()],
        loss_per_mille: 0,
    };
    ns.add_rules(9, "n1", &rules).unwrap();
    assert!(ns.tables("n1").contains("SBF9I"), "{}", ns.tables("n1"));
    assert!(!connects_from(Some(&ns2), a1), "n1 drops n2");
    assert!(connects_from(None, a1), "the controller still reaches n1");
    ns.remove_rules(9, "n1");
    assert!(!ns.tables("n1").contains("SBF9"), "{}", ns.tables("n1"));
    assert!(connects_from(Some(&ns2), a1), "healed");
    let _ = a2;
    let slot = ns.slot();
    drop(ns);
    assert!(!netns::claim_path(slot).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_limit_slows_a_transfer_down_and_heals_without_a_qdisc_left() {
    let test = "a_bandwidth_limit_slows_a_transfer_down_and_heals_without_a_qdisc_left";
    if !netns_or_skip(test) {
        return;
    }
    if packages::ensure("tc", "iproute2").is_none() {
        eprintln!("{test}: skipped, no tc");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
    let nodes: Vec<String> = ["n1", "n2"].map(String::from).to_vec();
    let needs = NetNeeds {
        bandwidth: true,
        ..NetNeeds::default()
    };
    let fabric = Fabric::build(NetMode::Netns, needs, &nodes, ledger.clone(), dir.path(), 3)
        .await
        .unwrap();
    let ns: &Netns = fabric.namespaces().expect("a netns fabric");
    let to = ns.listen("n2").unwrap();
    sink_in(&ns.ns_name("n2"), to);
    let ns1 = ns.ns_name("n1");
    let bytes = 256 * 1024;
    let free = transfer(&ns1, to, bytes);
    let limited = {
        let _limit = fabric.bandwidth(&["n2".to_string()], 2000).unwrap();
        assert_eq!(
            ns.qdiscs("n2").matches("tbf").count(),
            2,
            "both ends of n2's link: {}",
            ns.qdiscs("n2")
        );
        assert!(!ns.qdiscs("n1").contains("tbf"), "n1 is not limited");
        transfer(&ns1, to, bytes)
    };
    assert!(
        !ns.qdiscs("n2").contains("tbf"),
        "the heal removed the qdiscs: {}",
        ns.qdiscs("n2")
    );
    let healed = transfer(&ns1, to, bytes);
    eprintln!("256 KiB: free {free:?}, limited to 2000 kbit/s {limited:?}, healed {healed:?}");
    // 256 KiB at 2000 kbit/s takes about 1.05 s; unlimited, a few milliseconds.
    assert!(
        limited >= Duration::from_millis(700),
        "limited transfer took {limited:?}"
    );
    assert!(
        limited > free * 5 && limited > healed * 5,
        "free {free:?}, limited {limited:?}, healed {healed:?}"
    );
    let ledger_text = std::fs::read_to_string(ledger.path()).unwrap();
    assert!(
        ledger_text.contains(r#""kind":"qdisc""#),
        "qdiscs are in the ledger:\n{ledger_text}"
    );
    let slot = ns.slot();
    drop(fabric);
    assert!(!netns::claim_path(slot).exists(), "claim left");
}
