//! A node's own connection to one peer, shared by the drivers of every design: it carries the
//! node's messages out and the peer's answers back, and reconnects with capped exponential
//! backoff for as long as the node runs. What a message looks like on the wire and what an
//! answer means to the core are the driver's business, passed in as plain functions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::driver::{
    CONNECT_TIMEOUT, CONNECTION_QUEUE, LineSender, MAX_BACKOFF, MIN_BACKOFF, malformed, read_line,
};
use super::logger::{Logger, RateLimited};
use super::node::NodeId;
use crate::refnode::protocol::{Classified, Request};

pub(super) struct Link<M, E> {
    pub me: NodeId,
    pub peer: NodeId,
    pub addr: SocketAddr,
    /// The line that carries a message from `me`.
    pub encode: fn(&str, M) -> Vec<u8>,
    /// The event telling the core that the link is (re)connected, so it resends what the peer
    /// did not acknowledge.
    pub connected: fn(NodeId) -> E,
    /// The event for one line the peer sent back, if the line is an answer at all.
    pub answer: fn(&NodeId, &[u8]) -> Option<E>,
}

/// Runs the link until the node's outbox closes (the node is shutting down).
pub(super) async fn run<M: Send + 'static, E: Send + 'static>(
    link: Link<M, E>,
    mut outbox: mpsc::Receiver<M>,
    events: mpsc::Sender<E>,
    logger: Arc<Logger>,
) {
    let Link {
        me,
        peer,
        addr,
        encode,
        connected,
        answer,
    } = link;
    let mut backoff = MIN_BACKOFF;
    let mut failures = RateLimited::new(Duration::from_secs(5));
    loop {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                failures.failure(&logger, &format!("cannot connect to {peer} at {addr}: {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(_) => {
                failures.failure(
                    &logger,
                    &format!("cannot connect to {peer} at {addr}: timed out"),
                );
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        failures.success(&logger, &format!("connected to {peer} at {addr}"));
        backoff = MIN_BACKOFF;
        let _ = stream.set_nodelay(true);
        // Messages queued while disconnected were meant for a connection that is gone; the
        // core resends from what the peer acknowledged once told of the new one.
        while outbox.try_recv().is_ok() {}
        if events.send(connected(peer.clone())).await.is_err() {
            return;
        }
        let (read_half, mut write_half) = stream.into_split();
        let mut answers = tokio::spawn(read_answers(
            peer.clone(),
            read_half,
            events.clone(),
            answer,
        ));
        loop {
            tokio::select! {
                msg = outbox.recv() => {
                    let Some(msg) = msg else { return };
                    if write_half.write_all(&encode(&me, msg)).await.is_err() {
                        break;
                    }
                }
                _ = &mut answers => break,
            }
        }
        answers.abort();
        failures.failure(&logger, &format!("lost the connection to {peer}"));
        tokio::time::sleep(backoff).await;
    }
}

/// The peer's answers on this node's outbound link. The link, not the envelope, says who
/// sent them: answers on it come from the peer we dialled.
async fn read_answers<E>(
    peer: NodeId,
    read_half: OwnedReadHalf,
    events: mpsc::Sender<E>,
    answer: fn(&NodeId, &[u8]) -> Option<E>,
) {
    let mut reader = BufReader::new(read_half);
    let mut buf = Vec::new();
    while let Ok(true) = read_line(&mut reader, &mut buf).await {
        if let Some(event) = answer(&peer, &buf)
            && events.send(event).await.is_err()
        {
            return;
        }
    }
}

/// What every design's driver needs before its core starts: the log file, the listening
/// socket (the port is taken before `ready` is printed) and the other nodes.
pub(super) struct Startup {
    pub logger: Arc<Logger>,
    pub listener: tokio::net::TcpListener,
    pub local: SocketAddr,
    /// Every node but this one.
    pub peers: Vec<(NodeId, SocketAddr)>,
}

pub(super) async fn start(cfg: &super::config::Config) -> anyhow::Result<Startup> {
    use anyhow::Context as _;
    let logger = Arc::new(
        Logger::open(&cfg.log_file, &cfg.id)
            .with_context(|| format!("cannot open the log file {}", cfg.log_file.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let local = listener
        .local_addr()
        .context("listening socket has no address")?;
    let peers = cfg
        .peers
        .iter()
        .filter(|(id, _)| *id != cfg.id)
        .cloned()
        .collect();
    Ok(Startup {
        logger,
        listener,
        local,
        peers,
    })
}

/// `n2=127.0.0.1:7002,n3=...` for the log.
pub(super) fn peers_text(peers: &[(NodeId, SocketAddr)]) -> String {
    peers
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Milliseconds since the Unix epoch: the base of the node's (offset) wall clock.
pub(super) fn wall_clock_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0)
}

/// One running [`run`] per peer; returns each peer's outbox.
pub(super) fn spawn_all<M: Send + 'static, E: Send + 'static>(
    me: &NodeId,
    peers: &[(NodeId, SocketAddr)],
    spec: fn(NodeId, NodeId, SocketAddr) -> Link<M, E>,
    events: &mpsc::Sender<E>,
    logger: &Arc<Logger>,
) -> std::collections::HashMap<NodeId, mpsc::Sender<M>> {
    let mut links = std::collections::HashMap::new();
    for (peer, addr) in peers {
        let (tx, rx) = mpsc::channel(super::driver::PEER_QUEUE);
        links.insert(peer.clone(), tx);
        tokio::spawn(run(
            spec(me.clone(), peer.clone(), *addr),
            rx,
            events.clone(),
            Arc::clone(logger),
        ));
    }
    links
}

/// Prints the line the harness waits for, then accepts connections for as long as the node
/// runs, handing each to `serve_connection`.
pub(super) async fn announce_and_accept<E: Send + 'static, F>(
    id: &str,
    startup: Startup,
    events: mpsc::Sender<E>,
    serve_connection: fn(TcpStream, mpsc::Sender<E>) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use anyhow::Context as _;
    use std::io::Write as _;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready {id} {}", startup.local).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    let mut accept_failures = RateLimited::new(Duration::from_secs(5));
    loop {
        match startup.listener.accept().await {
            Ok((socket, _)) => {
                let _ = socket.set_nodelay(true);
                tokio::spawn(serve_connection(socket, events.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                accept_failures.failure(&startup.logger, &format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One accepted connection, for every design: a client's requests or a peer's messages, told
/// apart line by line by `classify`; `client` and `peer` turn them into the core's events, with
/// the connection to answer on. Malformed lines are answered here.
pub(super) async fn serve_connection<P, E>(
    socket: TcpStream,
    events: mpsc::Sender<E>,
    classify: fn(&[u8]) -> Classified<P>,
    client: fn(Request, LineSender) -> E,
    peer: fn(P, LineSender) -> E,
) {
    let (read_half, mut write_half) = socket.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CONNECTION_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if write_half.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let mut reader = BufReader::new(read_half);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let _ = out_tx.send(malformed(0, e.to_string())).await;
                break;
            }
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = match classify(&buf) {
            Classified::Client(req) => client(req, out_tx.clone()),
            Classified::Peer(msg) => peer(msg, out_tx.clone()),
            Classified::Malformed { id, message } => {
                if out_tx.send(malformed(id, message)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    // Let queued replies go out; the writer ends when every sender (ours and the core's
    // copies for pending requests) is gone.
    drop(out_tx);
    let _ = writer.await;
}
