//! The network fabric between the nodes (and between the clients and the nodes), and the
//! network faults it can inject: partitions, packet loss, delay and bandwidth limits.
//!
//! Three fabrics, chosen by `--net`:
//! - `netns`: each node in its own network namespace on a bridge in 10.77.0.0/16; partitions
//!   and loss are kernel drop rules, bandwidth limits are `tc tbf` qdiscs on both ends of a
//!   node's link (see [`netns`]). Needs root, `ip` and nft or iptables (and `tc` for
//!   bandwidth). Delay needs tc netem, which these kernels lack, so delay is the proxy's job.
//! - `proxy`: every node-to-node link (and, for loss, delay and bandwidth, every
//!   client-to-node link) through a userspace TCP proxy in the controller (see [`proxy`]).
//!   Needs nothing.
//! - `direct`: no fabric, nodes talk over loopback; no network faults.
//!
//! A Maelstrom cluster has no sockets between its nodes: every message goes through the
//! host's router, so its fabric is the router ([`Fabric::maelstrom`]), whatever `--net`
//! says. Partitions are one-way cuts of the router exactly as the grudge says; loss and
//! delay are the router's, and apply to every node-to-node message (the host has no
//! per-node loss or delay), not only to the nodes the nemesis names.
//!
//! `auto` takes `direct` when the nemesis injects no network fault, else `netns` when it can
//! (and delay is not asked for, and tbf works when bandwidth is), else `proxy`; the run
//! prints its choice and why.
//!
//! A bandwidth limit means slightly different things in the two fabrics: in `netns` it caps
//! everything a node sends (and, separately, everything it receives) together, as a slow
//! network card would; in the proxy it caps each direction of each link on its own.
//!
//! Every fault is a [`NetFault`] guard: dropping it heals the fault.

pub mod grudge;
pub mod netns;
pub mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use targets::adapters::maelstrom::MaelstromHost;
use targets::refnode::cluster::NodeNetwork;

use crate::ledger::Ledger;
use grudge::Grudge;
use proxy::{Effect, Endpoint, Proxy};

/// The `--net` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetMode {
    #[default]
    Auto,
    Direct,
    Netns,
    Proxy,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Auto => "auto",
            NetMode::Direct => "direct",
            NetMode::Netns => "netns",
            NetMode::Proxy => "proxy",
        }
    }
}

impl FromStr for NetMode {
    type Err = String;
    fn from_str(s: &str) -> Result<NetMode, String> {
        match s {
            "auto" => Ok(NetMode::Auto),
            "direct" => Ok(NetMode::Direct),
            "netns" => Ok(NetMode::Netns),
            "proxy" => Ok(NetMode::Proxy),
            other => Err(format!(
                "unknown network fabric {other:?}; expected auto, netns, proxy or direct"
            )),
        }
    }
}

/// The network faults a run will inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetNeeds {
    pub partition: bool,
    pub loss: bool,
    pub delay: bool,
    pub bandwidth: bool,
}

impl NetNeeds {
    pub fn any(self) -> bool {
        self.partition || self.loss || self.delay || self.bandwidth
    }
}

#[derive(Debug)]
enum Backend {
    Direct,
    Proxy(Proxy),
    Netns(netns::Netns),
    Maelstrom(HostRouter),
}

/// A Maelstrom host's router as a fabric: the active faults by id, combined into the one
/// cut, loss and delay the host takes each time one starts or heals.
#[derive(Debug)]
struct HostRouter {
    host: Arc<MaelstromHost>,
    active: Mutex<BTreeMap<u64, HostFault>>,
}

#[derive(Debug, Clone)]
enum HostFault {
    Cut(Vec<(String, String)>),
    Loss(f64),
    Delay(u64, u64),
}

impl HostRouter {
    fn start(&self, id: u64, fault: HostFault) {
        let mut active = self.active.lock().expect("faults lock");
        active.insert(id, fault);
        self.apply(&active);
    }

    fn end(&self, id: u64) {
        let mut active = self.active.lock().expect("faults lock");
        if active.remove(&id).is_some() {
            self.apply(&active);
        }
    }

    fn end_all(&self) {
        let mut active = self.active.lock().expect("faults lock");
        active.clear();
        self.apply(&active);
    }

    /// Overlapping faults add up: every cut direction, the highest loss, the longest delay.
    fn apply(&self, active: &BTreeMap<u64, HostFault>) {
        let mut cut: Vec<(String, String)> = Vec::new();
        let (mut loss, mut delay) = (0.0_f64, (0, 0));
        for fault in active.values() {
            match fault {
                HostFault::Cut(dirs) => cut.extend(dirs.iter().cloned()),
                HostFault::Loss(p) => loss = loss.max(*p),
                HostFault::Delay(lo, hi) if *hi > delay.1 => delay = (*lo, *hi),
                HostFault::Delay(..) => {}
            }
        }
        if cut.is_empty() {
            self.host.heal();
        } else {
            self.host.block(&cut);
        }
        self.host.set_loss(loss);
        self.host.set_delay(delay.0, delay.1);
    }
}

/// The fabric of one run. Dropping it removes everything it built.
#[derive(Debug)]
pub struct Fabric {
    backend: Arc<Backend>,
    nodes: Vec<String>,
    next_fault: AtomicU64,
    why: String,
    network: Option<NodeNetwork>,
    client_addrs: Option<Vec<(String, SocketAddr)>>,
}

impl Fabric {
    /// Builds the fabric `mode` asks for (resolving `auto`), for nodes named `nodes`.
    /// Errors are setup failures or a fabric that cannot inject what `needs` asks for.
    pub async fn build(
        mode: NetMode,
        needs: NetNeeds,
        nodes: &[String],
        ledger: Arc<Ledger>,
        run_dir: &Path,
        seed: u64,
    ) -> anyhow::Result<Fabric> {
        match mode {
            NetMode::Direct => {
                if needs.any() {
                    bail!(
                        "--net direct cannot cut, drop, delay or slow down traffic; use --net auto, netns or proxy"
                    );
                }
                Ok(Fabric::with_direct(
                    nodes,
                    "forced with --net direct".into(),
                ))
            }
            NetMode::Proxy => {
                Fabric::with_proxy(nodes, needs, seed, "forced with --net proxy".into()).await
            }
            NetMode::Netns => {
                if needs.delay {
                    bail!(
                        "the delay fault needs --net proxy: tc netem is not available on this kernel"
                    );
                }
                let tool = netns::available()
                    .map_err(|why| anyhow::anyhow!("--net netns is not possible here: {why}"))?;
                Fabric::with_netns(
                    nodes,
                    needs,
                    tool,
                    ledger,
                    run_dir,
                    "forced with --net netns".into(),
                )
            }
            NetMode::Auto => {
                if !needs.any() {
                    return Ok(Fabric::with_direct(
                        nodes,
                        "no network faults requested (--net netns|proxy to force a fabric)".into(),
                    ));
                }
                if needs.delay {
                    return Fabric::with_proxy(
                        nodes,
                        needs,
                        seed,
                        "delay is requested and tc netem is not available, so the userspace proxy carries every link".into(),
                    )
                    .await;
                }
                match netns::available() {
                    Ok(tool) => {
                        let why = format!(
                            "running as root with ip and {}: one namespace per node",
                            tool.as_str()
                        );
                        match Fabric::with_netns(nodes, needs, tool, ledger, run_dir, why) {
                            Ok(f) => Ok(f),
                            Err(e) => {
                                Fabric::with_proxy(
                                    nodes,
                                    needs,
                                    seed,
                                    format!("namespaces could not be set up ({e:#})"),
                                )
                                .await
                            }
                        }
                    }
                    Err(why) => {
                        Fabric::with_proxy(
                            nodes,
                            needs,
                            seed,
                            format!("{why}, so no namespaces; the userspace proxy needs nothing"),
                        )
                        .await
                    }
                }
            }
        }
    }

    fn with_direct(nodes: &[String], why: String) -> Fabric {
        Fabric {
            backend: Arc::new(Backend::Direct),
            nodes: nodes.to_vec(),
            next_fault: AtomicU64::new(1),
            why,
            network: None,
            client_addrs: None,
        }
    }

    async fn with_proxy(
        nodes: &[String],
        needs: NetNeeds,
        seed: u64,
        why: String,
    ) -> anyhow::Result<Fabric> {
        let listen = free_loopback_ports(nodes.len())?;
        let named: Vec<(String, SocketAddr)> = nodes.iter().cloned().zip(listen.clone()).collect();
        // Clients go through the proxy only when their links can be faulted: a partition
        // leaves the clients' links alone (as in Jepsen), and a direct link keeps a refused
        // connection a definite failure.
        let proxy_clients = needs.loss || needs.delay || needs.bandwidth;
        let proxy = Proxy::start(&named, proxy_clients, seed).await?;
        let mut routes = BTreeMap::new();
        for from in nodes {
            for to in nodes {
                if let Some(addr) = proxy.route(&Endpoint::Node(from.clone()), to) {
                    routes.insert((from.clone(), to.clone()), addr);
                }
            }
        }
        let client_addrs = proxy_clients.then(|| {
            nodes
                .iter()
                .filter_map(|n| Some((n.clone(), proxy.route(&Endpoint::Clients, n)?)))
                .collect()
        });
        Ok(Fabric {
            backend: Arc::new(Backend::Proxy(proxy)),
            nodes: nodes.to_vec(),
            next_fault: AtomicU64::new(1),
            why,
            network: Some(NodeNetwork {
                listen,
                routes,
                launcher: BTreeMap::new(),
            }),
            client_addrs,
        })
    }

    fn with_netns(
        nodes: &[String],
        needs: NetNeeds,
        tool: netns::FilterTool,
        ledger: Arc<Ledger>,
        run_dir: &Path,
        why: String,
    ) -> anyhow::Result<Fabric> {
        let ns = netns::Netns::build(nodes, tool, ledger, run_dir)?;
        if needs.bandwidth {
            // Found out now rather than at the first fault; `ns` is torn down on the error.
            ns.check_tbf().map_err(|why| {
                anyhow::anyhow!(
                    "the bandwidth fault needs tc tbf in the namespaces: {why}; use --net proxy"
                )
            })?;
        }
        let network = NodeNetwork {
            listen: nodes.iter().filter_map(|n| ns.listen(n)).collect(),
            routes: BTreeMap::new(),
            launcher: nodes.iter().map(|n| (n.clone(), ns.launcher(n))).collect(),
        };
        let why = format!("{why}; subnet {} on bridge {}", ns.subnet(), ns.bridge());
        Ok(Fabric {
            backend: Arc::new(Backend::Netns(ns)),
            nodes: nodes.to_vec(),
            next_fault: AtomicU64::new(1),
            why,
            network: Some(network),
            client_addrs: None,
        })
    }

    /// The fabric of a Maelstrom cluster: the host's router, which cuts, drops and delays
    /// node-to-node messages.
    pub fn maelstrom(host: Arc<MaelstromHost>, nodes: &[String]) -> Fabric {
        Fabric {
            backend: Arc::new(Backend::Maelstrom(HostRouter {
                host,
                active: Mutex::new(BTreeMap::new()),
            })),
            nodes: nodes.to_vec(),
            next_fault: AtomicU64::new(1),
            why: "Maelstrom nodes talk only through the host's router, which injects the network faults".into(),
            network: None,
            client_addrs: None,
        }
    }

    /// `direct`, `proxy`, `netns` or `maelstrom`.
    pub fn kind(&self) -> &'static str {
        match *self.backend {
            Backend::Direct => "direct",
            Backend::Proxy(_) => "proxy",
            Backend::Netns(_) => "netns",
            Backend::Maelstrom(_) => "maelstrom",
        }
    }

    /// A fault with a fresh id and nothing applied yet; `undo` says how dropping it heals.
    fn new_fault(&self, undo: Undo) -> NetFault {
        NetFault {
            backend: Arc::clone(&self.backend),
            id: self.next_fault.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            undo,
        }
    }

    /// Starts `fault` in a Maelstrom host's router, when that is the backend.
    fn in_router(&self, fault: impl FnOnce() -> HostFault) -> Option<NetFault> {
        let Backend::Maelstrom(router) = &*self.backend else {
            return None;
        };
        let net_fault = self.new_fault(Undo::Rules);
        router.start(net_fault.id, fault());
        Some(net_fault)
    }

    /// Why this fabric was chosen, for the run's first lines.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// The same fabric, with the account of why it was chosen given by a caller that made
    /// the choice itself.
    pub fn because(mut self, why: String) -> Fabric {
        self.why = why;
        self
    }

    /// Listen addresses, peer routes and launchers for the cluster, `None` for `direct`.
    pub fn node_network(&self) -> Option<NodeNetwork> {
        self.network.clone()
    }

    /// Where clients reach each node, when not at the node's own address.
    pub fn client_addrs(&self) -> Option<Vec<(String, SocketAddr)>> {
        self.client_addrs.clone()
    }

    /// The proxy, when this fabric is one (for tests and statistics).
    pub fn proxy(&self) -> Option<&Proxy> {
        match &*self.backend {
            Backend::Proxy(p) => Some(p),
            _ => None,
        }
    }

    /// The namespaces, when this fabric is made of them (for tests).
    pub fn namespaces(&self) -> Option<&netns::Netns> {
        match &*self.backend {
            Backend::Netns(n) => Some(n),
            _ => None,
        }
    }

    /// Cuts the network as `grudge` says: each node drops traffic from the nodes it names.
    pub fn partition(&self, grudge: &Grudge) -> anyhow::Result<NetFault> {
        let one_way = || {
            HostFault::Cut(
                grudge
                    .iter()
                    .flat_map(|(to, froms)| froms.iter().map(|from| (from.clone(), to.clone())))
                    .collect(),
            )
        };
        if let Some(fault) = self.in_router(one_way) {
            return Ok(fault);
        }
        let mut fault = self.new_fault(Undo::Rules);
        let id = fault.id;
        match &*self.backend {
            Backend::Direct => bail!("the direct fabric cannot partition"),
            Backend::Maelstrom(_) => unreachable!("the router's faults start in in_router"),
            Backend::Proxy(p) => {
                let dirs: Vec<_> = grudge
                    .iter()
                    .flat_map(|(to, froms)| {
                        froms
                            .iter()
                            .map(|from| (Endpoint::Node(from.clone()), Endpoint::Node(to.clone())))
                    })
                    .collect();
                let cut = Effect {
                    cut: true,
                    ..Effect::default()
                };
                p.apply(id, &dirs, cut);
                fault.nodes = grudge.keys().cloned().collect();
            }
            Backend::Netns(ns) => {
                for (node, froms) in grudge {
                    let rules = netns::Rules {
                        drop_from: froms.iter().filter_map(|f| ns.addr(f)).collect(),
                        loss_per_mille: 0,
                    };
                    // Noted before the rules exist, so a failure halfway heals what was
                    // installed when `fault` drops.
                    fault.nodes.push(node.clone());
                    ns.add_rules(id, node, &rules)
                        .with_context(|| format!("cannot partition {node}"))?;
                }
            }
        }
        Ok(fault)
    }

    /// Drops `percent` of the packets to and from `targets` (in the proxy: that share of
    /// chunks waits for a retransmission timeout, as TCP would make it).
    pub fn loss(&self, targets: &[String], percent: f64) -> anyhow::Result<NetFault> {
        let p = (percent / 100.0).clamp(0.0, 1.0);
        if let Some(fault) = self.in_router(|| HostFault::Loss(p)) {
            return Ok(fault);
        }
        self.packet_fault(
            targets,
            Effect {
                loss: p,
                ..Effect::default()
            },
            (p * 1000.0).round() as u32,
        )
    }

    /// Delays every chunk to and from `targets` by `delay_ms ± jitter_ms` (proxy only).
    pub fn delay(
        &self,
        targets: &[String],
        delay_ms: u64,
        jitter_ms: u64,
    ) -> anyhow::Result<NetFault> {
        if let Backend::Netns(_) = &*self.backend {
            bail!("the netns fabric cannot delay packets (no tc netem); use --net proxy");
        }
        let range = || {
            HostFault::Delay(
                delay_ms.saturating_sub(jitter_ms),
                delay_ms.saturating_add(jitter_ms),
            )
        };
        if let Some(fault) = self.in_router(range) {
            return Ok(fault);
        }
        self.packet_fault(
            targets,
            Effect {
                delay_ms,
                jitter_ms,
                ..Effect::default()
            },
            0,
        )
    }

    /// Limits the traffic to and from each of `targets` to `kbit` kilobits per second each
    /// way: a tbf on both ends of each target's link in `netns`, a token bucket on each
    /// direction of each of their links in the proxy.
    pub fn bandwidth(&self, targets: &[String], kbit: u64) -> anyhow::Result<NetFault> {
        if kbit == 0 {
            bail!("a bandwidth limit of 0 kbit/s is a partition; use the partition fault");
        }
        let mut fault = self.new_fault(Undo::Bandwidth);
        let id = fault.id;
        match &*self.backend {
            Backend::Direct => bail!("the direct fabric cannot limit bandwidth"),
            Backend::Maelstrom(_) => bail!("the Maelstrom host cannot limit bandwidth"),
            Backend::Proxy(p) => {
                let effect = Effect {
                    bandwidth_kbit: kbit,
                    ..Effect::default()
                };
                p.apply(id, &self.proxy_dirs(targets), effect);
                fault.nodes = targets.to_vec();
            }
            Backend::Netns(ns) => {
                for t in targets {
                    // Noted before the qdiscs exist, so a failure halfway heals what was
                    // installed when `fault` drops.
                    fault.nodes.push(t.clone());
                    ns.limit_bandwidth(t, kbit)?;
                }
            }
        }
        Ok(fault)
    }

    /// Every direction between `targets` and every other endpoint, the clients included.
    fn proxy_dirs(&self, targets: &[String]) -> Vec<proxy::Direction> {
        let mut ends: Vec<Endpoint> = self.nodes.iter().cloned().map(Endpoint::Node).collect();
        ends.push(Endpoint::Clients);
        let mut dirs = Vec::new();
        for t in targets {
            let t = Endpoint::Node(t.clone());
            for other in &ends {
                if *other != t {
                    dirs.push((t.clone(), other.clone()));
                    dirs.push((other.clone(), t.clone()));
                }
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn packet_fault(
        &self,
        targets: &[String],
        effect: Effect,
        loss_per_mille: u32,
    ) -> anyhow::Result<NetFault> {
        let mut fault = self.new_fault(Undo::Rules);
        let id = fault.id;
        match &*self.backend {
            Backend::Direct => bail!("the direct fabric cannot drop or delay packets"),
            Backend::Maelstrom(_) => unreachable!("the router's faults start in in_router"),
            Backend::Proxy(p) => {
                p.apply(id, &self.proxy_dirs(targets), effect);
                fault.nodes = targets.to_vec();
            }
            Backend::Netns(ns) => {
                for t in targets {
                    fault.nodes.push(t.clone());
                    ns.add_rules(
                        id,
                        t,
                        &netns::Rules {
                            drop_from: Vec::new(),
                            loss_per_mille,
                        },
                    )?;
                }
            }
        }
        Ok(fault)
    }

    /// Removes everything the fabric built (also done on drop).
    pub fn teardown(&self) {
        match &*self.backend {
            Backend::Netns(ns) => ns.teardown(),
            Backend::Proxy(p) => p.heal_all(),
            Backend::Maelstrom(r) => r.end_all(),
            Backend::Direct => {}
        }
    }
}

/// An active network fault; dropping it (or [`NetFault::heal`]) heals it.
#[derive(Debug)]
pub struct NetFault {
    backend: Arc<Backend>,
    id: u64,
    nodes: Vec<String>,
    undo: Undo,
}

/// What healing a fault in the namespaces removes from its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undo {
    /// The fault's filter table.
    Rules,
    /// The tbf qdiscs.
    Bandwidth,
}

impl NetFault {
    pub fn heal(self) {
        drop(self);
    }
}

impl Drop for NetFault {
    fn drop(&mut self) {
        match &*self.backend {
            Backend::Direct => {}
            Backend::Proxy(p) => p.remove(self.id),
            Backend::Maelstrom(r) => r.end(self.id),
            Backend::Netns(ns) => {
                for n in &self.nodes {
                    match self.undo {
                        Undo::Rules => ns.remove_rules(self.id, n),
                        Undo::Bandwidth => ns.unlimit_bandwidth(n),
                    }
                }
            }
        }
    }
}

fn free_loopback_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    Ok(targets::ports::free_ports(ip, n)?
        .into_iter()
        .map(|port| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[tokio::test]
    async fn auto_takes_direct_without_network_faults_and_the_proxy_for_delay() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
        let f = Fabric::build(
            NetMode::Auto,
            NetNeeds::default(),
            &names(3),
            ledger.clone(),
            dir.path(),
            1,
        )
        .await
        .unwrap();
        assert_eq!(f.kind(), "direct");
        assert!(f.why().contains("no network faults"));
        let needs = NetNeeds {
            delay: true,
            ..NetNeeds::default()
        };
        let f = Fabric::build(
            NetMode::Auto,
            needs,
            &names(3),
            ledger.clone(),
            dir.path(),
            1,
        )
        .await
        .unwrap();
        assert_eq!(f.kind(), "proxy");
        assert!(f.why().contains("netem"), "{}", f.why());
        let net = f.node_network().unwrap();
        assert_eq!(net.listen.len(), 3);
        assert_eq!(net.routes.len(), 6, "one route per ordered pair of nodes");
        assert_eq!(f.client_addrs().unwrap().len(), 3);
        let err = Fabric::build(
            NetMode::Direct,
            needs,
            &names(3),
            ledger.clone(),
            dir.path(),
            1,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("--net direct"), "{err}");
        let err = Fabric::build(NetMode::Netns, needs, &names(3), ledger, dir.path(), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("delay"), "{err}");
    }

    #[tokio::test]
    async fn proxy_partitions_cut_exactly_the_grudge_and_heal_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::create(dir.path()).unwrap());
        let needs = NetNeeds {
            partition: true,
            ..NetNeeds::default()
        };
        let f = Fabric::build(NetMode::Proxy, needs, &names(3), ledger, dir.path(), 1)
            .await
            .unwrap();
        assert!(
            f.client_addrs().is_none(),
            "partitions leave client links direct"
        );
        let g = grudge::complete(&[vec!["n1".into()], vec!["n2".into(), "n3".into()]]);
        let p = f.proxy().unwrap();
        let dir_ = |a: &str, b: &str| (Endpoint::Node(a.into()), Endpoint::Node(b.into()));
        {
            let _fault = f.partition(&g).unwrap();
            assert!(p.effect(&dir_("n1", "n2")).cut);
            assert!(p.effect(&dir_("n3", "n1")).cut);
            assert!(!p.effect(&dir_("n2", "n3")).cut);
        }
        assert!(
            !p.effect(&dir_("n1", "n2")).cut,
            "healed when the guard dropped"
        );
    }
}
