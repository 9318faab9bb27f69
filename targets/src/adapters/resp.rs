//! A minimal RESP2 client (Redis and Sentinel): one connection, one command at a time. It
//! tells "never sent" (definite) from "sent, then no answer" (indeterminate), and drops the
//! connection after any error so a late answer is never taken for the next one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bulk strings and arrays larger than this are refused.
const MAX_LEN: usize = 64 << 20;
/// Arrays nest at most this deep (Redis answers here nest two levels).
const MAX_DEPTH: usize = 8;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resp {
    Simple(String),
    /// An error reply: the server refused the command before running it.
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub(crate) fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

#[derive(Debug)]
pub(crate) enum RespError {
    /// No connection could be made: the command was not sent.
    Connect(String),
    /// No answer within the timeout; the command may have run.
    Timeout,
    /// The connection broke after the command was (maybe) sent.
    Broken(String),
}

impl RespError {
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, RespError::Connect(_))
    }
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Connect(e) => write!(f, "connect: {e}"),
            RespError::Timeout => f.write_str("timeout"),
            RespError::Broken(e) => write!(f, "connection broken: {e}"),
        }
    }
}

/// A connection to one `host:port`, (re)made on demand.
#[derive(Debug)]
pub(crate) struct RespConn {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl RespConn {
    pub(crate) fn new(addr: &str) -> RespConn {
        RespConn {
            addr: addr.to_string(),
            conn: None,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command and reads its answer within `timeout`. An error *reply* is
    /// `Ok(Resp::Error(..))`: the exchange itself worked.
    pub(crate) async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Resp, RespError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.conn.as_ref().is_some_and(|c| !still_open(c.get_ref())) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| RespError::Connect("connect timed out".into()))?
                .map_err(|e| RespError::Connect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(BufReader::new(stream));
        }
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let conn = self.conn.as_mut().expect("connected above");
        let exchange = async {
            conn.get_mut()
                .write_all(&out)
                .await
                .map_err(|e| RespError::Broken(e.to_string()))?;
            read_value(conn, 0).await
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(RespError::Timeout)
            }
        }
    }
}

type Reading<'a> = Pin<Box<dyn Future<Output = Result<Resp, RespError>> + Send + 'a>>;

fn read_value(conn: &mut BufReader<TcpStream>, depth: usize) -> Reading<'_> {
    Box::pin(async move {
        let line = read_line(conn).await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        let len = || -> Result<i64, RespError> {
            rest.parse::<i64>()
                .map_err(|_| RespError::Broken(format!("bad length in {line:?}")))
        };
        match kind {
            "+" => Ok(Resp::Simple(rest.to_string())),
            "-" => Ok(Resp::Error(rest.to_string())),
            ":" => Ok(Resp::Int(len()?)),
            "$" => {
                let n = len()?;
                if n < 0 {
                    return Ok(Resp::Bulk(None));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n > MAX_LEN {
                    return Err(RespError::Broken(format!("bulk of {n} bytes is too large")));
                }
                let mut buf = vec![0; n + 2];
                conn.read_exact(&mut buf)
                    .await
                    .map_err(|e| RespError::Broken(e.to_string()))?;
                buf.truncate(n);
                Ok(Resp::Bulk(Some(buf)))
            }
            "*" => {
                let n = len()?;
                if n < 0 {
                    return Ok(Resp::Array(None));
                }
                if depth >= MAX_DEPTH || n as usize > MAX_LEN {
                    return Err(RespError::Broken("array too deep or too long".into()));
                }
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(read_value(conn, depth + 1).await?);
                }
                Ok(Resp::Array(Some(items)))
            }
            _ => Err(RespError::Broken(format!("unexpected answer {line:?}"))),
        }
    })
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, RespError> {
    let mut line = String::new();
    let n = (&mut *conn)
        .take(64 * 1024)
        .read_line(&mut line)
        .await
        .map_err(|e| RespError::Broken(e.to_string()))?;
    if n == 0 {
        return Err(RespError::Broken("closed by the server".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Whether an idle connection is still usable: nothing to read yet (no FIN, no stray bytes).
/// Sending on a connection the server already closed (it restarted, or timed the connection
/// out) would turn a certain "not sent" into an uncertain "no answer".
fn still_open(stream: &TcpStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd as _;
    let mut byte = [0u8; 1];
    matches!(
        recv(
            stream.as_raw_fd(),
            &mut byte,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Err(nix::errno::Errno::EAGAIN)
    )
}
