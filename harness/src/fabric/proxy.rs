//! A userspace TCP proxy in the controller, one listener per link: node-to-node links (the
//! address a node dials to reach a peer) and, when asked for, client-to-node links. Faults act
//! on *traffic directions* between endpoints, so a grudge "b drops traffic from a" holds up
//! the bytes from a to b on every connection, whoever dialled it.
//!
//! Effects mirror what the kernel would do to a TCP stream, so the byte stream is never
//! corrupted:
//! - cut: bytes stop flowing (held, like packets dropped and retransmitted); they flow again,
//!   in order, when the cut heals;
//! - delay: every chunk is delivered `delay ± jitter` after it was read, never overtaking the
//!   chunk before it;
//! - loss: a chunk is "lost" with the given probability and delivered after a retransmission
//!   timeout (200 ms, doubling while it keeps being lost), as TCP would;
//! - bandwidth: each direction between two endpoints has a token bucket, shared by all its
//!   connections, that lets `bandwidth_kbit` through per second (with a burst of 20 ms of
//!   traffic, at least 4 KiB); a chunk waits for its tokens before it is written, and the
//!   wait holds up the reader through the bounded queue, as a slow link holds up TCP.
//!
//! Bounds: at most [`MAX_CONNECTIONS_PER_LINK`] connections per link (more are closed at
//! once), and per connection and direction at most [`QUEUE_CHUNKS`] chunks of at most
//! [`CHUNK_BYTES`] in flight; reading stops when the queue is full.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const MAX_CONNECTIONS_PER_LINK: usize = 2048;
pub const QUEUE_CHUNKS: usize = 16;
pub const CHUNK_BYTES: usize = 8 * 1024;
/// First retransmission timeout of an emulated lost chunk (Linux's minimum RTO).
const RTO_MS: u64 = 200;
/// A chunk is "lost" at most this many times in a row (the penalty then stops doubling).
const MAX_RETRANSMITS: u32 = 5;

/// One end of a link: the clients (all of them, in the controller) or a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Clients,
    Node(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Clients => f.write_str("clients"),
            Endpoint::Node(n) => f.write_str(n),
        }
    }
}

/// What a fault does to the traffic in one direction. Several faults on one direction add up:
/// any cut cuts, delays and jitters add, loss probabilities combine, the lowest bandwidth
/// limit holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Effect {
    pub cut: bool,
    pub delay_ms: u64,
    pub jitter_ms: u64,
    /// Probability in [0, 1] that a chunk is lost (and retransmitted).
    pub loss: f64,
    /// Most kilobits per second through this direction; 0 is no limit.
    pub bandwidth_kbit: u64,
}

impl Effect {
    fn add(self, other: Effect) -> Effect {
        let bandwidth_kbit = match (self.bandwidth_kbit, other.bandwidth_kbit) {
            (0, b) | (b, 0) => b,
            (a, b) => a.min(b),
        };
        Effect {
            cut: self.cut || other.cut,
            delay_ms: self.delay_ms + other.delay_ms,
            jitter_ms: self.jitter_ms + other.jitter_ms,
            loss: 1.0 - (1.0 - self.loss) * (1.0 - other.loss),
            bandwidth_kbit,
        }
    }
}

/// The token bucket of one direction under a bandwidth limit. Tokens are bytes; they may go
/// negative, which is a debt the next chunks wait off: connections sharing the direction
/// queue behind each other instead of each getting the full rate.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    kbit: u64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn burst_bytes(kbit: u64) -> f64 {
        // As the netns fabric's tbf: 20 ms of traffic, at least 4 KiB.
        (kbit as f64 * 1000.0 / 8.0 / 50.0).max(4096.0)
    }

    /// Takes `bytes` tokens at `now` and says how long the chunk must wait for them.
    fn take(&mut self, bytes: usize, kbit: u64, now: Instant) -> Duration {
        let rate_bytes_per_s = kbit as f64 * 1000.0 / 8.0;
        if self.kbit != kbit {
            // A new limit starts with a full bucket and no debt.
            *self = Bucket {
                kbit,
                tokens: Bucket::burst_bytes(kbit),
                last: now,
            };
        }
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * rate_bytes_per_s;
        self.tokens = (self.tokens + refill).min(Bucket::burst_bytes(kbit));
        self.last = now;
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate_bytes_per_s)
        }
    }
}

/// A directed traffic flow: bytes from `.0` to `.1`.
pub type Direction = (Endpoint, Endpoint);

#[derive(Debug)]
struct Shared {
    faults: Mutex<HashMap<Direction, Vec<(u64, Effect)>>>,
    /// Bumped whenever faults change, to wake writers held by a cut.
    changed: watch::Sender<u64>,
    rng: Mutex<ChaCha8Rng>,
    /// One per direction that has been under a bandwidth limit: at most one per link
    /// direction, so bounded by the number of links.
    buckets: Mutex<HashMap<Direction, Bucket>>,
}

impl Shared {
    fn effect(&self, dir: &Direction) -> Effect {
        let faults = self.faults.lock().expect("proxy faults lock");
        faults.get(dir).map_or(Effect::default(), |list| {
            list.iter()
                .fold(Effect::default(), |acc, (_, e)| acc.add(*e))
        })
    }

    /// When a chunk of `bytes` may go out on `dir` under a limit of `kbit`.
    fn pace(&self, dir: &Direction, bytes: usize, kbit: u64) -> Instant {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("proxy buckets lock");
        let bucket = buckets.entry(dir.clone()).or_insert(Bucket {
            kbit: 0,
            tokens: 0.0,
            last: now,
        });
        now + bucket.take(bytes, kbit, now)
    }
}

/// One proxied link: connections to `listen` are forwarded to `upstream` (node `to`).
#[derive(Debug, Clone)]
pub struct Link {
    pub from: Endpoint,
    pub to: String,
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    /// Bytes forwarded in both directions so far.
    pub bytes: Arc<AtomicU64>,
}

/// The running proxy; dropping it stops every listener and connection.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    links: Vec<Link>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Opens one listener on 127.0.0.1 per link: every ordered pair of nodes, and one per
    /// node for the clients when `proxy_clients`.
    pub async fn start(
        nodes: &[(String, SocketAddr)],
        proxy_clients: bool,
        seed: u64,
    ) -> anyhow::Result<Proxy> {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            faults: Mutex::new(HashMap::new()),
            changed,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x0070_726f_7879)),
            buckets: Mutex::new(HashMap::new()),
        });
        let mut links = Vec::new();
        let mut tasks = Vec::new();
        let mut plan: Vec<(Endpoint, &String, SocketAddr)> = Vec::new();
        for (from, _) in nodes {
            for (to, addr) in nodes {
                if from != to {
                    plan.push((Endpoint::Node(from.clone()), to, *addr));
                }
            }
        }
        if proxy_clients {
            for (to, addr) in nodes {
                plan.push((Endpoint::Clients, to, *addr));
            }
        }
        for (from, to, upstream) in plan {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot open a proxy port on 127.0.0.1")?;
            let link = Link {
                from,
                to: to.clone(),
                listen: listener.local_addr()?,
                upstream,
                bytes: Arc::new(AtomicU64::new(0)),
            };
            tasks.push(tokio::spawn(serve_link(
                listener,
                link.clone(),
                Arc::clone(&shared),
            )));
            links.push(link);
        }
        Ok(Proxy {
            shared,
            links,
            tasks,
        })
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The address `from` dials to reach node `to` through the proxy.
    pub fn route(&self, from: &Endpoint, to: &str) -> Option<SocketAddr> {
        self.links
            .iter()
            .find(|l| &l.from == from && l.to == to)
            .map(|l| l.listen)
    }

    /// Applies `effect` to every direction in `dirs` until [`Proxy::remove`] with `id`.
    pub fn apply(&self, id: u64, dirs: &[Direction], effect: Effect) {
        {
            let mut faults = self.shared.faults.lock().expect("proxy faults lock");
            for d in dirs {
                faults.entry(d.clone()).or_default().push((id, effect));
            }
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Heals fault `id` everywhere; held bytes flow again.
    pub fn remove(&self, id: u64) {
        {
            let mut faults = self.shared.faults.lock().expect("proxy faults lock");
            for list in faults.values_mut() {
                list.retain(|(i, _)| *i != id);
            }
            faults.retain(|_, list| !list.is_empty());
        }
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// Heals every fault.
    pub fn heal_all(&self) {
        self.shared
            .faults
            .lock()
            .expect("proxy faults lock")
            .clear();
        self.shared.changed.send_modify(|v| *v += 1);
    }

    /// The combined effect on one direction now (for tests and the report).
    pub fn effect(&self, dir: &Direction) -> Effect {
        self.shared.effect(dir)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Listeners stop; their connection tasks hold abort handles through `ConnTasks` and
        // stop with them.
        self.heal_all();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Aborts a connection's tasks when the link's accept loop ends (the proxy is dropped).
#[derive(Debug, Default)]
struct ConnTasks(Vec<JoinHandle<()>>);

impl Drop for ConnTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn serve_link(listener: TcpListener, link: Link, shared: Arc<Shared>) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut conns = ConnTasks::default();
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            // Out of file descriptors or similar: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        conns.0.retain(|t| !t.is_finished());
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS_PER_LINK {
            drop(socket);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (link, shared, open) = (link.clone(), Arc::clone(&shared), Arc::clone(&open));
        conns.0.push(tokio::spawn(async move {
            connection(socket, &link, &shared).await;
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
}

async fn connection(downstream: TcpStream, link: &Link, shared: &Arc<Shared>) {
    // The node is down (killed, not yet listening): close at once, as a refused connection
    // would end the exchange.
    let Ok(upstream) = TcpStream::connect(link.upstream).await else {
        return;
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let to = Endpoint::Node(link.to.clone());
    let (down_r, down_w) = downstream.into_split();
    let (up_r, up_w) = upstream.into_split();
    let forward = pump(
        down_r,
        up_w,
        (link.from.clone(), to.clone()),
        Arc::clone(shared),
        Arc::clone(&link.bytes),
    );
    let backward = pump(
        up_r,
        down_w,
        (to, link.from.clone()),
        Arc::clone(shared),
        Arc::clone(&link.bytes),
    );
    // Each direction ends on its own (a half-close passes through); the connection ends when
    // both have.
    tokio::join!(forward, backward);
}

/// Moves bytes one way: a reader that stamps each chunk with its delivery time, and a writer
/// that delivers it then, unless the direction is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Direction,
    shared: Arc<Shared>,
    bytes: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let reader_shared = Arc::clone(&shared);
    let reader_dir = dir.clone();
    let reader = async move {
        let mut last = Instant::now();
        loop {
            let mut buf = vec![0u8; CHUNK_BYTES];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            let effect = reader_shared.effect(&reader_dir);
            let extra = {
                let mut rng = reader_shared.rng.lock().expect("proxy rng lock");
                extra_delay(effect, &mut *rng)
            };
            // TCP never reorders: a chunk is due no earlier than the one before it.
            let due = (Instant::now() + extra).max(last);
            last = due;
            if tx.send((due, buf)).await.is_err() {
                break;
            }
        }
        // End of stream: the writer delivers what is queued, then half-closes.
        drop(tx);
    };
    let writer = async move {
        let mut changes = shared.changed.subscribe();
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let kbit = shared.effect(&dir).bandwidth_kbit;
            if kbit > 0 {
                let at = shared.pace(&dir, buf.len(), kbit);
                changes.borrow_and_update();
                // A heal (or any other change of faults) ends the wait early: a link whose
                // limit is gone does not stay slow for the tokens it still owed. Before the
                // cut check, so that a cut begun meanwhile still holds the chunk.
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    r = changes.changed() => if r.is_err() { return },
                }
            }
            loop {
                changes.borrow_and_update();
                if !shared.effect(&dir).cut {
                    break;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
            if to.write_all(&buf).await.is_err() {
                return;
            }
            bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown().await;
    };
    // The pump ends with its writer; a writer that fails (peer gone) drops the reader too.
    tokio::pin!(reader, writer);
    let mut reader_done = false;
    loop {
        tokio::select! {
            () = &mut reader, if !reader_done => reader_done = true,
            () = &mut writer => return,
        }
    }
}

/// Delay for one chunk: `delay ± jitter`, plus retransmission timeouts while it is "lost".
fn extra_delay(effect: Effect, rng: &mut impl Rng) -> Duration {
    let mut ms = effect.delay_ms as f64;
    if effect.jitter_ms > 0 {
        let j = effect.jitter_ms as f64;
        ms += rng.random_range(-j..=j);
    }
    let mut rto = RTO_MS as f64;
    let mut lost = 0;
    while effect.loss > 0.0 && lost < MAX_RETRANSMITS && rng.random_bool(effect.loss.min(1.0)) {
        ms += rto;
        rto *= 2.0;
        lost += 1;
    }
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// An echo server that answers each line with the same line.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(
        conn: &mut BufReader<TcpStream>,
        text: &str,
        within: Duration,
    ) -> Option<(String, Duration)> {
        let t = Instant::now();
        conn.get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await
            .ok()?;
        let mut line = String::new();
        tokio::time::timeout(within, conn.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        Some((line.trim().to_string(), t.elapsed()))
    }

    fn node(n: &str) -> Endpoint {
        Endpoint::Node(n.into())
    }

    #[tokio::test]
    async fn cut_holds_bytes_and_heal_delivers_them_in_order() {
        let a = echo().await;
        let b = echo().await;
        let nodes = vec![("n1".to_string(), a), ("n2".to_string(), b)];
        let proxy = Proxy::start(&nodes, true, 1).await.unwrap();
        assert_eq!(proxy.links().len(), 4, "two node links, two client links");
        let via = proxy.route(&node("n1"), "n2").unwrap();
        let mut conn = BufReader::new(TcpStream::connect(via).await.unwrap());
        let (line, _) = round_trip(&mut conn, "hello", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(line, "hello");

        // n1 drops traffic from n2: the answer is held, not lost.
        proxy.apply(
            1,
            &[(node("n2"), node("n1"))],
            Effect {
                cut: true,
                ..Effect::default()
            },
        );
        assert!(
            round_trip(&mut conn, "one", Duration::from_millis(300))
                .await
                .is_none()
        );
        proxy.remove(1);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(2), conn.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.trim(), "one", "held bytes arrive after the heal");
        let (line, _) = round_trip(&mut conn, "two", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(line, "two");
        // Other directions were never touched.
        assert_eq!(proxy.effect(&(node("n1"), node("n2"))), Effect::default());
        assert!(proxy.links()[0].bytes.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn delay_and_jitter_slow_a_link_down_without_reordering() {
        let a = echo().await;
        let nodes = vec![("n1".to_string(), a)];
        let proxy = Proxy::start(&nodes, true, 2).await.unwrap();
        let via = proxy.route(&Endpoint::Clients, "n1").unwrap();
        let mut conn = BufReader::new(TcpStream::connect(via).await.unwrap());
        let dirs = [
            (Endpoint::Clients, node("n1")),
            (node("n1"), Endpoint::Clients),
        ];
        proxy.apply(
            7,
            &dirs,
            Effect {
                delay_ms: 60,
                jitter_ms: 20,
                ..Effect::default()
            },
        );
        for i in 0..5 {
            let (line, took) = round_trip(&mut conn, &format!("m{i}"), Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(line, format!("m{i}"));
            // Two directions, each 60 ± 20 ms.
            assert!(took >= Duration::from_millis(75), "round trip {took:?}");
        }
        proxy.remove(7);
        let (_, took) = round_trip(&mut conn, "fast", Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            took < Duration::from_millis(60),
            "healed round trip {took:?}"
        );
    }

    #[test]
    fn loss_adds_retransmission_timeouts_and_effects_combine() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let lossy = Effect {
            loss: 0.5,
            ..Effect::default()
        };
        let delays: Vec<Duration> = (0..200).map(|_| extra_delay(lossy, &mut rng)).collect();
        let lost = delays
            .iter()
            .filter(|d| **d >= Duration::from_millis(200))
            .count();
        assert!((60..140).contains(&lost), "{lost} of 200 lost at p=0.5");
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200 * 31)));
        let both = lossy.add(Effect {
            cut: true,
            delay_ms: 5,
            jitter_ms: 1,
            loss: 0.5,
            bandwidth_kbit: 800,
        });
        assert!(both.cut && both.delay_ms == 5 && (both.loss - 0.75).abs() < 1e-9);
        assert_eq!(
            both.bandwidth_kbit, 800,
            "no limit and a limit make the limit"
        );
        let slower = both.add(Effect {
            bandwidth_kbit: 100,
            ..Effect::default()
        });
        assert_eq!(slower.bandwidth_kbit, 100, "the lowest limit holds");
    }

    #[test]
    fn the_token_bucket_lets_the_rate_through_after_its_burst() {
        let t0 = Instant::now();
        let mut b = Bucket {
            kbit: 0,
            tokens: 0.0,
            last: t0,
        };
        // 800 kbit/s is 100 000 bytes/s; the burst is 4096 bytes (20 ms would be 2000).
        assert_eq!(
            b.take(4096, 800, t0),
            Duration::ZERO,
            "the burst goes at once"
        );
        let wait = b.take(10_000, 800, t0);
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-6,
            "10 000 bytes owe 100 ms: {wait:?}"
        );
        // 100 ms later the debt is paid: the next 1000 bytes wait 10 ms.
        let later = t0 + Duration::from_millis(100);
        let wait = b.take(1000, 800, later);
        assert!((wait.as_secs_f64() - 0.01).abs() < 1e-6, "{wait:?}");
        // A new limit starts afresh.
        assert_eq!(b.take(4000, 8000, later), Duration::ZERO);
    }

    /// A server that reads until the end of the stream and answers with the byte count.
    async fn sink() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0usize;
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    let _ = s.write_all(format!("{total}\n").as_bytes()).await;
                });
            }
        });
        addr
    }

    /// Sends `bytes` through `via`, half-closes, and waits for the sink's count.
    async fn send(via: SocketAddr, bytes: usize) -> Duration {
        let t = Instant::now();
        let mut conn = TcpStream::connect(via).await.unwrap();
        conn.write_all(&vec![7u8; bytes]).await.unwrap();
        conn.shutdown().await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
            .await
            .expect("the sink answers within 10 s")
            .unwrap();
        assert_eq!(answer.trim(), bytes.to_string());
        t.elapsed()
    }

    #[tokio::test]
    async fn a_bandwidth_limit_slows_a_transfer_and_heals() {
        let nodes = vec![("n1".to_string(), sink().await)];
        let proxy = Proxy::start(&nodes, true, 5).await.unwrap();
        let via = proxy.route(&Endpoint::Clients, "n1").unwrap();
        let bytes = 100_000;
        let free = send(via, bytes).await;
        proxy.apply(
            3,
            &[(Endpoint::Clients, node("n1"))],
            Effect {
                bandwidth_kbit: 800,
                ..Effect::default()
            },
        );
        // 100 000 bytes at 100 000 bytes/s, less the 4 KiB burst: about 0.96 s.
        let limited = send(via, bytes).await;
        proxy.remove(3);
        let healed = send(via, bytes).await;
        assert!(
            limited >= Duration::from_millis(800),
            "limited transfer took {limited:?}"
        );
        assert!(
            limited > free * 4 && limited > healed * 4,
            "free {free:?}, limited {limited:?}, healed {healed:?}"
        );
    }

    #[tokio::test]
    async fn a_dead_upstream_closes_the_connection() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let proxy = Proxy::start(&[("n1".to_string(), dead)], true, 4)
            .await
            .unwrap();
        let via = proxy.route(&Endpoint::Clients, "n1").unwrap();
        let mut conn = BufReader::new(TcpStream::connect(via).await.unwrap());
        assert!(
            round_trip(&mut conn, "x", Duration::from_secs(2))
                .await
                .is_none()
        );
    }
}
