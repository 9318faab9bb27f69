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

use super::driver::{CONNECT_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, read_line};
use super::logger::{Logger, RateLimited};
use super::node::NodeId;

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
