//! The namespace fabric (root only): each node in its own network namespace, all on one
//! bridge, on a /24 of the project's subnet 10.77.0.0/16 claimed for the run. Partitions and
//! packet loss are drop rules inside the namespaces (nftables, or iptables when nft is
//! missing); each fault gets its own table, deleted when it heals.
//!
//! Names, for a run that claimed slot S (1..=250), node `nK` at position i (1-based):
//! - subnet `10.77.S.0/24`; node address `10.77.S.i`, port 7001; the controller's address on
//!   the bridge `10.77.S.254`;
//! - namespace `sbS-nK`; bridge `sbSbr`; host end of the node's veth `sbSvi` (the other end is
//!   `eth0` inside the namespace);
//! - fault tables `inet sbf<id>` (iptables: chains `SBF<id>I`, `SBF<id>O`);
//! - the bandwidth fault: a root `tbf` qdisc on `eth0` inside the node's namespace (what the
//!   node sends) and on the host end `sbSvi` (what it receives: shaping acts on egress only,
//!   and the host end's egress is the node's ingress);
//! - the claim file `/run/splitbrain/net-S.json` names the run's directory and controller.
//!
//! Every name is written to the run's ledger before it is created.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, Resource};

/// Where slot claims live (a tmpfs: claims vanish on reboot, as namespaces do).
pub const CLAIM_DIR: &str = "/run/splitbrain";
pub const NODE_PORT: u16 = 7001;
const SLOTS: u8 = 250;

/// The packet filter used for drop rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterTool {
    Nft,
    Iptables,
}

impl FilterTool {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterTool::Nft => "nft",
            FilterTool::Iptables => "iptables",
        }
    }
}

/// Whether namespaces can be used here, and with which filter; otherwise why not.
pub fn available() -> Result<FilterTool, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    if !on_path("ip") {
        return Err("`ip` (iproute2) is not installed".into());
    }
    if on_path("nft") {
        Ok(FilterTool::Nft)
    } else if on_path("iptables") {
        Ok(FilterTool::Iptables)
    } else {
        Err("neither nft nor iptables is installed".into())
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// What the claim file of a slot says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub run_dir: PathBuf,
    pub pid: u32,
    pub start_ticks: u64,
}

/// The drop rules of one fault in one node's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Drop every packet from these addresses (a partition).
    pub drop_from: Vec<Ipv4Addr>,
    /// Drop this many packets per thousand, in and out, within the run's subnet.
    pub loss_per_mille: u32,
}

/// The namespaces of one run; dropping it removes them.
#[derive(Debug)]
pub struct Netns {
    slot: u8,
    nodes: Vec<String>,
    tool: FilterTool,
    ledger: Arc<Ledger>,
    claim: PathBuf,
    torn_down: Mutex<bool>,
}

impl Netns {
    /// Claims a free slot and builds the bridge and one namespace per node. On an error
    /// everything built so far is removed again.
    pub fn build(
        nodes: &[String],
        tool: FilterTool,
        ledger: Arc<Ledger>,
        run_dir: &Path,
    ) -> anyhow::Result<Netns> {
        for n in nodes {
            if n.is_empty()
                || n.len() > 20
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                bail!("node name {n:?} cannot name a network namespace");
            }
        }
        if nodes.len() > 200 {
            bail!("at most 200 nodes fit a /24");
        }
        let (slot, claim) = claim_slot(&ledger, run_dir)?;
        let netns = Netns {
            slot,
            nodes: nodes.to_vec(),
            tool,
            ledger,
            claim,
            torn_down: Mutex::new(false),
        };
        // On error, `netns` is dropped here and tears down what exists.
        netns.build_links()?;
        Ok(netns)
    }

    fn build_links(&self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        self.ledger.record(&Resource::Link {
            name: bridge.clone(),
        })?;
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.controller_addr()),
            "dev",
            &bridge,
        ])?;
        for (i, node) in self.nodes.iter().enumerate() {
            let ns = self.ns_name(node);
            let veth = format!("sb{}v{}", self.slot, i + 1);
            self.ledger.record(&Resource::Netns { name: ns.clone() })?;
            ip(&["netns", "add", &ns])?;
            self.ledger.record(&Resource::Link { name: veth.clone() })?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.addr(node).expect("node of this fabric"));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn slot(&self) -> u8 {
        self.slot
    }

    pub fn tool(&self) -> FilterTool {
        self.tool
    }

    pub fn subnet(&self) -> String {
        format!("10.77.{}.0/24", self.slot)
    }

    pub fn bridge(&self) -> String {
        format!("sb{}br", self.slot)
    }

    pub fn ns_name(&self, node: &str) -> String {
        format!("sb{}-{node}", self.slot)
    }

    pub fn controller_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.slot, 254)
    }

    pub fn addr(&self, node: &str) -> Option<Ipv4Addr> {
        let i = self.nodes.iter().position(|n| n == node)?;
        Some(Ipv4Addr::new(10, 77, self.slot, (i + 1) as u8))
    }

    pub fn listen(&self, node: &str) -> Option<SocketAddr> {
        self.addr(node).map(|a| SocketAddr::from((a, NODE_PORT)))
    }

    /// The command prefix that starts a program inside `node`'s namespace.
    pub fn launcher(&self, node: &str) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.ns_name(node),
        ]
    }

    /// Installs fault `id`'s rules in `node`'s namespace.
    pub fn add_rules(&self, id: u64, node: &str, rules: &Rules) -> anyhow::Result<()> {
        let ns = self.ns_name(node);
        self.ledger.record(&Resource::Rules {
            netns: ns.clone(),
            table: format!("sbf{id}"),
        })?;
        match self.tool {
            FilterTool::Nft => {
                let script = nft_script(id, rules, &self.subnet());
                run_with_input(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], &script)
            }
            FilterTool::Iptables => {
                for cmd in iptables_add(id, rules, &self.subnet()) {
                    let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
                    args.extend(cmd.iter().map(String::as_str));
                    run(&args)?;
                }
                Ok(())
            }
        }
    }

    /// Removes fault `id`'s rules from `node`'s namespace; missing rules are not an error.
    pub fn remove_rules(&self, id: u64, node: &str) {
        let ns = self.ns_name(node);
        match self.tool {
            FilterTool::Nft => {
                let _ = run(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    &format!("sbf{id}"),
                ]);
            }
            FilterTool::Iptables => {
                for (hook, chain) in [
                    ("INPUT", format!("SBF{id}I")),
                    ("OUTPUT", format!("SBF{id}O")),
                ] {
                    for op in [
                        vec!["-D", hook, "-j", &chain],
                        vec!["-F", &chain],
                        vec!["-X", &chain],
                    ] {
                        let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
                        args.extend(op);
                        let _ = run(&args);
                    }
                }
            }
        }
    }

    /// Says whether `tc qdisc ... tbf` works here (the kernel may lack sch_tbf, the host
    /// `tc`), by adding one to the loopback of the first node's namespace and removing it.
    pub fn check_tbf(&self) -> Result<(), String> {
        if !on_path("tc") {
            return Err("`tc` (iproute2) is not installed".into());
        }
        let Some(first) = self.nodes.first() else {
            return Ok(());
        };
        let ns = self.ns_name(first);
        self.ledger
            .record(&Resource::Qdisc {
                netns: Some(ns.clone()),
                dev: "lo".into(),
            })
            .map_err(|e| format!("{e:#}"))?;
        let mut add = vec![
            "ip", "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root",
        ];
        let tbf = tbf_args(1000);
        add.extend(tbf.iter().map(String::as_str));
        run(&add).map_err(|e| format!("tc tbf does not work on this kernel ({e:#})"))?;
        run(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "lo", "root",
        ])
        .map_err(|e| format!("{e:#}"))
    }

    /// Limits what `node` sends and what it receives to `kbit` kilobits per second each.
    /// Refused while a limit is in force on the node (tc will not add a second root qdisc).
    pub fn limit_bandwidth(&self, node: &str, kbit: u64) -> anyhow::Result<()> {
        let (ns, veth) = (self.ns_name(node), self.veth(node)?);
        let tbf = tbf_args(kbit);
        for (netns, dev) in [(Some(ns.clone()), "eth0".to_string()), (None, veth)] {
            self.ledger.record(&Resource::Qdisc {
                netns: netns.clone(),
                dev: dev.clone(),
            })?;
            let mut args: Vec<&str> = match &netns {
                Some(ns) => vec!["ip", "netns", "exec", ns, "tc"],
                None => vec!["tc"],
            };
            args.extend(["qdisc", "add", "dev", &dev, "root"]);
            args.extend(tbf.iter().map(String::as_str));
            run(&args).with_context(|| format!("cannot limit {node}'s bandwidth"))?;
        }
        Ok(())
    }

    /// Removes `node`'s bandwidth limit; a missing limit is not an error.
    pub fn unlimit_bandwidth(&self, node: &str) {
        let ns = self.ns_name(node);
        let _ = run(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
        ]);
        if let Ok(veth) = self.veth(node) {
            let _ = run(&["tc", "qdisc", "del", "dev", &veth, "root"]);
        }
    }

    /// The root qdiscs of both ends of `node`'s link, as `tc qdisc show` prints them (for
    /// tests).
    pub fn qdiscs(&self, node: &str) -> String {
        let ns = self.ns_name(node);
        let inside = output(&[
            "ip", "netns", "exec", &ns, "tc", "qdisc", "show", "dev", "eth0",
        ]);
        let outside = self
            .veth(node)
            .and_then(|v| output(&["tc", "qdisc", "show", "dev", &v]));
        format!(
            "{}{}",
            inside.unwrap_or_default(),
            outside.unwrap_or_default()
        )
    }

    /// The host end of `node`'s veth pair.
    fn veth(&self, node: &str) -> anyhow::Result<String> {
        let i = self
            .nodes
            .iter()
            .position(|n| n == node)
            .ok_or_else(|| anyhow!("{node} is not a node of this fabric"))?;
        Ok(format!("sb{}v{}", self.slot, i + 1))
    }

    /// Every fault table in the namespaces, as `nft list tables` / `iptables -S` shows them
    /// (for tests).
    pub fn tables(&self, node: &str) -> String {
        let ns = self.ns_name(node);
        let args: Vec<&str> = match self.tool {
            FilterTool::Nft => vec!["ip", "netns", "exec", &ns, "nft", "list", "tables"],
            FilterTool::Iptables => vec!["ip", "netns", "exec", &ns, "iptables", "-S"],
        };
        output(&args).unwrap_or_default()
    }

    /// Removes the namespaces, links and the claim. Idempotent.
    pub fn teardown(&self) {
        let mut done = self.torn_down.lock().unwrap_or_else(|e| e.into_inner());
        if *done {
            return;
        }
        *done = true;
        remove_slot(self.slot);
        let _ = std::fs::remove_file(&self.claim);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Claims the first free slot, starting from one that depends on the process id so that
/// concurrent runs rarely race for the same one. The ledger names the slot first.
fn claim_slot(ledger: &Ledger, run_dir: &Path) -> anyhow::Result<(u8, PathBuf)> {
    std::fs::create_dir_all(CLAIM_DIR).with_context(|| format!("cannot create {CLAIM_DIR}"))?;
    let pid = std::process::id();
    let me = Claim {
        run_dir: std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf()),
        pid,
        start_ticks: crate::ledger::start_ticks(pid).unwrap_or(0),
    };
    let first = (pid % u32::from(SLOTS)) as u8;
    for k in 0..SLOTS {
        let slot = (first + k) % SLOTS + 1;
        let claim = claim_path(slot);
        if claim.exists() {
            continue;
        }
        ledger.record(&Resource::Slot {
            slot,
            claim: claim.clone(),
        })?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut f) => {
                f.write_all(&serde_json::to_vec(&me)?)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("cannot write {}", claim.display()))?;
                // A slot whose claim was lost may still hold interfaces: start clean.
                remove_slot(slot);
                return Ok((slot, claim));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", claim.display())),
        }
    }
    bail!(
        "every /24 of 10.77.0.0/16 is claimed in {CLAIM_DIR}; run `splitbrain clean` to free the slots of dead runs"
    )
}

pub fn claim_path(slot: u8) -> PathBuf {
    Path::new(CLAIM_DIR).join(format!("net-{slot}.json"))
}

/// Reads a claim file.
pub fn read_claim(path: &Path) -> Option<Claim> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Every slot claimed in [`CLAIM_DIR`], with its claim.
pub fn claims() -> Vec<(u8, PathBuf, Option<Claim>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(CLAIM_DIR) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(slot) = name
            .strip_prefix("net-")
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u8>().ok())
        else {
            continue;
        };
        out.push((slot, e.path(), read_claim(&e.path())));
    }
    out
}

/// What [`remove_slot`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub processes: Vec<i32>,
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
}

/// Removes every namespace and link of `slot`: processes still inside a namespace are killed
/// first, then the namespaces, then the host ends of the veths and the bridge (the kernel may
/// keep a deleted namespace, and so its veths, alive for a while).
pub fn remove_slot(slot: u8) -> Removed {
    let mut removed = Removed::default();
    let ns_prefix = format!("sb{slot}-");
    for ns in list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&ns_prefix))
    {
        for pid in output(&["ip", "netns", "pids", &ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
            removed.processes.push(pid.as_raw());
        }
        if run(&["ip", "netns", "del", &ns]).is_ok() {
            removed.namespaces.push(ns);
        }
    }
    let veth_prefix = format!("sb{slot}v");
    let bridge = format!("sb{slot}br");
    for link in list_links() {
        let ours = link == bridge
            || link
                .strip_prefix(&veth_prefix)
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
        if ours && run(&["ip", "link", "del", &link]).is_ok() {
            removed.links.push(link);
        }
    }
    removed
}

/// Names from `ip netns list` (which prints `name (id: N)` for namespaces with an id).
pub fn list_namespaces() -> Vec<String> {
    output(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Interface names in the root namespace (`ip -o link show` prints `N: name@peer: ...`).
pub fn list_links() -> Vec<String> {
    output(&["ip", "-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next()?.to_string())
        })
        .collect()
}

fn nft_script(id: u64, rules: &Rules, subnet: &str) -> String {
    let mut input = Vec::new();
    let mut out = Vec::new();
    if !rules.drop_from.is_empty() {
        let addrs: Vec<String> = rules.drop_from.iter().map(|a| a.to_string()).collect();
        input.push(format!("ip saddr {{ {} }} drop", addrs.join(", ")));
    }
    if rules.loss_per_mille > 0 {
        // `numgen random mod 1000` is 0..=999, so "< 1000" is out of range: all is plain drop.
        let sample = match rules.loss_per_mille {
            p if p >= 1000 => String::new(),
            p => format!("numgen random mod 1000 < {p} "),
        };
        input.push(format!("ip saddr {subnet} {sample}drop"));
        out.push(format!("ip daddr {subnet} {sample}drop"));
    }
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let mut s =
            format!("  chain {name} {{\n    type filter hook {hook} priority 0; policy accept;\n");
        for r in rules {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n");
        s
    };
    format!(
        "table inet sbf{id} {{\n{}{}}}\n",
        chain("input", "input", &input),
        chain("output", "output", &out)
    )
}

/// `tbf` arguments for `kbit` kilobits per second. The bucket holds 20 ms of traffic, and
/// at least 4 KiB so that a full-size frame always fits (tbf drops what can never fit); the
/// queue holds 200 ms, beyond which packets are dropped and TCP backs off, as behind a real
/// slow link.
pub fn tbf_args(kbit: u64) -> Vec<String> {
    let burst_bytes = (kbit.saturating_mul(1000) / 8 / 50).max(4096);
    vec![
        "tbf".into(),
        "rate".into(),
        format!("{kbit}kbit"),
        "burst".into(),
        burst_bytes.to_string(),
        "latency".into(),
        "200ms".into(),
    ]
}

fn iptables_add(id: u64, rules: &Rules, subnet: &str) -> Vec<Vec<String>> {
    let (ci, co) = (format!("SBF{id}I"), format!("SBF{id}O"));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cmds = vec![s(&["-N", &ci]), s(&["-N", &co])];
    for a in &rules.drop_from {
        cmds.push(s(&["-A", &ci, "-s", &a.to_string(), "-j", "DROP"]));
    }
    if rules.loss_per_mille > 0 {
        let p = format!("{:.3}", f64::from(rules.loss_per_mille.min(1000)) / 1000.0);
        let stat = ["-m", "statistic", "--mode", "random", "--probability", &p];
        let mut i = s(&["-A", &ci, "-s", subnet]);
        i.extend(s(&stat));
        i.extend(s(&["-j", "DROP"]));
        cmds.push(i);
        let mut o = s(&["-A", &co, "-d", subnet]);
        o.extend(s(&stat));
        o.extend(s(&["-j", "DROP"]));
        cmds.push(o);
    }
    cmds.push(s(&["-I", "INPUT", "-j", &ci]));
    cmds.push(s(&["-I", "OUTPUT", "-j", &co]));
    cmds
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    run(&all)
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    output(args).map(|_| ())
}

fn output(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        return Err(anyhow!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn run_with_input(args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_tables_hold_partition_and_loss_rules() {
        let rules = Rules {
            drop_from: vec![Ipv4Addr::new(10, 77, 3, 2), Ipv4Addr::new(10, 77, 3, 3)],
            loss_per_mille: 200,
        };
        let s = nft_script(7, &rules, "10.77.3.0/24");
        assert!(s.starts_with("table inet sbf7 {"), "{s}");
        assert!(s.contains("ip saddr { 10.77.3.2, 10.77.3.3 } drop"), "{s}");
        assert!(s.contains("numgen random mod 1000 < 200 drop"), "{s}");
        let ipt = iptables_add(7, &rules, "10.77.3.0/24");
        assert!(
            ipt.iter()
                .any(|c| c.join(" ") == "-A SBF7I -s 10.77.3.2 -j DROP")
        );
        assert!(ipt.iter().any(|c| c.contains(&"0.200".to_string())));
        assert_eq!(ipt.last().unwrap().join(" "), "-I OUTPUT -j SBF7O");
        let all = nft_script(
            8,
            &Rules {
                drop_from: vec![],
                loss_per_mille: 1000,
            },
            "10.77.3.0/24",
        );
        assert!(all.contains("ip saddr 10.77.3.0/24 drop"), "{all}");
    }

    #[test]
    fn tbf_buckets_hold_20_ms_and_at_least_4_kib() {
        assert_eq!(
            tbf_args(1000).join(" "),
            "tbf rate 1000kbit burst 4096 latency 200ms",
            "20 ms of 1 Mbit/s is 2500 bytes, less than a bucket may hold"
        );
        assert_eq!(tbf_args(100_000)[4], "250000", "20 ms of 100 Mbit/s");
    }
}
