//! A minimal HTTP/1.1 JSON client: one connection, one request at a time, `Content-Length`
//! and chunked bodies. Enough for etcd's JSON gateway, and it tells apart "nothing was sent"
//! (a definite failure) from "sent, then no answer" (indeterminate), which general clients
//! blur.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Responses larger than this are refused (etcd answers here are tiny).
const MAX_BODY_BYTES: usize = 16 << 20;
const MAX_HEADER_LINES: usize = 100;

#[derive(Debug)]
pub(crate) enum HttpError {
    /// No connection could be made: the request was not sent.
    Connect(String),
    /// No complete answer within the timeout; the request may have been sent.
    Timeout,
    /// The connection broke or the answer was garbled after the request was (maybe) sent.
    Broken(String),
}

impl HttpError {
    /// True when the request certainly did not reach the server.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, HttpError::Connect(_))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "connect: {e}"),
            HttpError::Timeout => f.write_str("timeout"),
            HttpError::Broken(e) => write!(f, "connection broken: {e}"),
        }
    }
}

/// A keep-alive connection to one `host:port`, (re)made on demand.
#[derive(Debug)]
pub(crate) struct HttpClient {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl HttpClient {
    pub(crate) fn new(addr: &str) -> HttpClient {
        HttpClient {
            addr: addr.to_string(),
            conn: None,
        }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// POSTs `body` as JSON to `path`; returns the status code and the parsed JSON answer.
    /// After any error the connection is dropped, so a late answer is never read as the
    /// answer to a later request.
    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.conn.as_ref().is_some_and(|c| !still_open(c.get_ref())) {
            // The server closed the idle connection (it restarted, or timed it out): sending
            // on it would turn a certain "not sent" into an uncertain "no answer".
            self.conn = None;
        }
        if self.conn.is_none() {
            let stream = tokio::time::timeout_at(deadline, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| HttpError::Connect("connect timed out".into()))?
                .map_err(|e| HttpError::Connect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(BufReader::new(stream));
        }
        let result = tokio::time::timeout_at(deadline, self.exchange(path, body)).await;
        match result {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(HttpError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        let conn = self.conn.as_mut().expect("connected above");
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let broken = |e: std::io::Error| HttpError::Broken(e.to_string());
        conn.get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(broken)?;
        let (status, headers) = read_head(conn).await?;
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.trim().parse::<usize>())
            .transpose()
            .map_err(|e| HttpError::Broken(format!("bad content-length: {e}")))?;
        let bytes = if chunked {
            read_chunked(conn).await?
        } else if let Some(n) = length {
            if n > MAX_BODY_BYTES {
                return Err(HttpError::Broken(format!(
                    "answer of {n} bytes is too large"
                )));
            }
            let mut buf = vec![0; n];
            conn.read_exact(&mut buf).await.map_err(broken)?;
            buf
        } else {
            return Err(HttpError::Broken(
                "answer has neither a length nor chunks".into(),
            ));
        };
        let close = headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        if close {
            self.conn = None;
        }
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                HttpError::Broken(format!(
                    "answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ))
            })?
        };
        Ok((status, json))
    }
}

/// Whether an idle connection is still usable: nothing to read yet (no FIN, no stray bytes).
pub(crate) fn still_open(stream: &impl std::os::fd::AsRawFd) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
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

type Headers = Vec<(String, String)>;

async fn read_head(conn: &mut BufReader<TcpStream>) -> Result<(u16, Headers), HttpError> {
    let status_line = read_line(conn).await?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Broken(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for _ in 0..MAX_HEADER_LINES {
        let line = read_line(conn).await?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Err(HttpError::Broken("too many header lines".into()))
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, HttpError> {
    let mut line = String::new();
    let n = (&mut *conn)
        .take(64 * 1024)
        .read_line(&mut line)
        .await
        .map_err(|e| HttpError::Broken(e.to_string()))?;
    if n == 0 {
        return Err(HttpError::Broken("closed by the server".into()));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(conn).await?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Broken(format!("bad chunk size {size_line:?}")))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(HttpError::Broken("chunked answer is too large".into()));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..MAX_HEADER_LINES {
                if read_line(conn).await?.is_empty() {
                    return Ok(body);
                }
            }
            return Err(HttpError::Broken("too many trailer lines".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])
            .await
            .map_err(|e| HttpError::Broken(e.to_string()))?;
        let crlf = read_line(conn).await?;
        if !crlf.is_empty() {
            return Err(HttpError::Broken("chunk not followed by CRLF".into()));
        }
    }
}
