//! A client for one refnode: one connection, one request in flight at a time (each harness
//! worker owns its own client, as each Jepsen process owns its connection).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{ErrorReply, ReplyBody, Request, RequestBody, Response, ResponseResult};

/// Why a call did not return a reply. `definite()` tells whether the request certainly had no
/// effect, which decides between recording `fail` and `info`.
#[derive(Debug)]
pub enum CallError {
    /// The connection could not be made: nothing was sent.
    Connect(std::io::Error),
    /// The node answered with an error.
    Reply(ErrorReply),
    /// No answer within the timeout: the request may or may not have taken effect.
    Timeout,
    /// The connection broke after the request was sent.
    Broken(String),
}

impl CallError {
    pub fn definite(&self) -> bool {
        match self {
            CallError::Connect(_) => true,
            CallError::Reply(e) => e.definite,
            CallError::Timeout | CallError::Broken(_) => false,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connect: {e}"),
            CallError::Reply(e) => write!(
                f,
                "{}: {}",
                serde_json::to_value(e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                e.message
            ),
            CallError::Timeout => f.write_str("timeout"),
            CallError::Broken(e) => write!(f, "connection broken: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

#[derive(Debug)]
struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// A lazily (re)connecting client for one node.
#[derive(Debug)]
pub struct NodeClient {
    addr: SocketAddr,
    conn: Option<Connection>,
    next_id: u64,
    line: String,
}

impl NodeClient {
    pub fn new(addr: SocketAddr) -> NodeClient {
        NodeClient {
            addr,
            conn: None,
            next_id: 1,
            line: String::new(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request and waits up to `timeout` for its reply. After a timeout or a broken
    /// connection the connection is dropped, so a late reply can never be taken for the answer
    /// to a later request.
    pub async fn call(
        &mut self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ReplyBody, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.conn.is_none() {
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(self.addr))
                .await
                .map_err(|_| {
                    CallError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    ))
                })?
                .map_err(CallError::Connect)?;
            // Requests are small and latency matters more than packet count.
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            self.conn = Some(Connection {
                reader: BufReader::new(r),
                writer: w,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let result = tokio::time::timeout_at(deadline, self.exchange(id, body)).await;
        match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        id: u64,
        body: RequestBody,
    ) -> Result<Result<ReplyBody, CallError>, CallError> {
        let conn = self.conn.as_mut().expect("connected above");
        let mut out = serde_json::to_vec(&Request { id, body })
            .map_err(|e| CallError::Broken(e.to_string()))?;
        out.push(b'\n');
        conn.writer
            .write_all(&out)
            .await
            .map_err(|e| CallError::Broken(e.to_string()))?;
        loop {
            self.line.clear();
            let n = conn
                .reader
                .read_line(&mut self.line)
                .await
                .map_err(|e| CallError::Broken(e.to_string()))?;
            if n == 0 {
                return Err(CallError::Broken("closed by the node".to_string()));
            }
            let response: Response = serde_json::from_str(self.line.trim())
                .map_err(|e| CallError::Broken(format!("unparseable reply: {e}")))?;
            // Replies to requests abandoned earlier cannot arrive here (the connection is
            // dropped on abandonment), but skip mismatched ids rather than trust that.
            if response.id != id {
                continue;
            }
            return Ok(match response.result {
                ResponseResult::Ok(reply) => Ok(reply),
                ResponseResult::Err(e) => Err(CallError::Reply(e)),
            });
        }
    }
}
