//! The load's HTTP/1.1 client connection, by hand: a keep-alive TCP stream, each request
//! written from a reused buffer in one write, its answer read into another and parsed with
//! `httparse`. Only what the system sends is understood (Content-Length bodies, one request
//! at a time); anything else is an error and the connection is dropped. Replacing hyper's
//! client connection (its channel between the sender and the connection task, header maps,
//! a body type) keeps loadgen's own CPU per request small beside the system's.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers in a response; the system sends four or five.
const MAX_HEADERS: usize = 24;
/// A response longer than this is not one of the system's and is refused.
const MAX_RESPONSE: usize = 1 << 20;
const READ_CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection before answering")]
    Closed,
    #[error("malformed response: {0}")]
    Parse(#[from] httparse::Error),
    #[error("a response without Content-Length (only Content-Length bodies are read)")]
    NoLength,
    #[error("a response longer than {MAX_RESPONSE} bytes")]
    TooLong,
    #[error("bytes after the response, which no request asked for")]
    Trailing,
}

/// A request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server keeps the connection open for the next request.
    pub keep_alive: bool,
}

/// The fixed part of every request of the load: request line, Host and Content-Type.
pub struct Template {
    head: Vec<u8>,
}

impl Template {
    pub fn post(host: &str, path: &str) -> Self {
        Self { head: format!("POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n").into_bytes() }
    }

    /// Writes the whole request into `out`: the fixed head, `headers`, the length and `body`.
    /// Header values come from loadgen's own renderer (ids, digits, base64, hex), never
    /// from a response, so they need no escaping.
    pub fn write<'n, 'v>(&self, out: &mut Vec<u8>, headers: impl Iterator<Item = (&'n str, &'v str)>, body: &[u8]) {
        out.clear();
        out.extend_from_slice(&self.head);
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }
}

/// One keep-alive connection and the buffer its answers are read into.
pub struct Conn {
    stream: TcpStream,
    answer: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, answer: Vec::with_capacity(READ_CHUNK) })
    }

    /// Whether the server closed (or wrote on) this connection while it was idle, so that a
    /// request is not sent into a closing socket. No system call unless the runtime saw the
    /// socket become readable.
    pub fn closed_while_idle(&self) -> bool {
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `request` (written by a `Template`) and reads its whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, WireError> {
        self.stream.write_all(request).await?;
        self.answer.clear();
        let head = loop {
            if let Some(h) = head(&self.answer)? {
                break h;
            }
            self.fill().await?;
        };
        if head.end > MAX_RESPONSE {
            return Err(WireError::TooLong);
        }
        while self.answer.len() < head.end {
            self.fill().await?;
        }
        if self.answer.len() > head.end {
            return Err(WireError::Trailing);
        }
        Ok(head.answer)
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        if self.answer.len() >= MAX_RESPONSE {
            return Err(WireError::TooLong);
        }
        self.answer.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.answer).await? {
            0 => Err(WireError::Closed),
            _ => Ok(()),
        }
    }
}

/// A parsed response head and where its body ends in the buffer.
struct Head {
    answer: Answer,
    end: usize,
}

/// The head of the response at the start of `buf`, once all of it has arrived.
fn head(buf: &[u8]) -> Result<Option<Head>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = r.parse(buf)? else { return Ok(None) };
    // A complete parse always has a code.
    let status = r.code.unwrap_or(0);
    let mut keep_alive = r.version == Some(1);
    let mut length = None;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = Some(std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or(WireError::NoLength)?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let tokens = || h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
            if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
                keep_alive = false;
            } else if tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive")) {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(WireError::NoLength);
        }
    }
    let body = match (length, status) {
        (Some(n), _) => n,
        // No body by definition (RFC 9112, 6.3).
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => return Err(WireError::NoLength),
    };
    Ok(Some(Head { answer: Answer { status, keep_alive }, end: head_len.saturating_add(body) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Result<Option<(Answer, usize)>, WireError> {
        head(raw.as_bytes()).map(|h| h.map(|h| (h.answer, h.end)))
    }

    #[test]
    fn a_request_is_the_template_its_headers_and_its_body() {
        let t = Template::post("127.0.0.1:3000", "/api/webhooks/payment");
        let mut out = b"stale bytes".to_vec();
        t.write(&mut out, [("webhook-id", "e1"), ("webhook-timestamp", "17")].into_iter(), b"{\"a\":1}");
        let expected = "POST /api/webhooks/payment HTTP/1.1\r\nhost: 127.0.0.1:3000\r\ncontent-type: application/json\r\n\
                        webhook-id: e1\r\nwebhook-timestamp: 17\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        assert_eq!(req.parse(&out).ok(), Some(httparse::Status::Complete(out.len() - 7)), "a valid HTTP/1.1 request");
    }

    #[test]
    fn an_answer_ends_after_its_content_length() {
        let raw = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"ok\":true}\r\n";
        assert_eq!(parsed(raw).ok().flatten(), Some((Answer { status: 200, keep_alive: true }, raw.len())));
        assert!(matches!(parsed("HTTP/1.1 200 OK\r\ncontent-len"), Ok(None)), "a partial head waits for more");
    }

    #[test]
    fn close_no_length_and_chunked_are_told_apart() {
        let raw = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parsed(raw).ok().flatten(), Some((Answer { status: 503, keep_alive: false }, raw.len())));
        let old = parsed("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").ok().flatten();
        assert_eq!(old.map(|(a, _)| a.keep_alive), Some(false), "HTTP/1.0 closes unless asked");
        let empty = "HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parsed(empty).ok().flatten().map(|(a, end)| (a.status, end)), Some((204, empty.len())));
        assert!(matches!(parsed("HTTP/1.1 200 OK\r\n\r\n"), Err(WireError::NoLength)));
        assert!(matches!(parsed("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"), Err(WireError::NoLength)));
        assert!(matches!(parsed("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"), Err(WireError::NoLength)));
        assert!(matches!(parsed("HTTP/9 OK\r\n\r\n"), Err(WireError::Parse(_))));
    }
}

#[cfg(test)]
mod loopback {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A server on loopback that answers two requests on one connection, the second answer
    /// in pieces, then closes it: both are read whole, and the close is seen while idle.
    #[tokio::test]
    async fn answers_in_pieces_are_read_whole_and_a_close_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("first request");
            assert!(buf[..n].ends_with(b"\r\n\r\n{}"));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.expect("answer");
            let _ = s.read(&mut buf).await.expect("second request");
            for piece in [&b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-le"[..], b"ngth: 5\r\n\r\nno", b"pe!"] {
                s.write_all(piece).await.expect("piece");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut c = Conn::open(&addr).await.expect("connect");
        let mut req = Vec::new();
        Template::post(&addr, "/x").write(&mut req, std::iter::empty(), b"{}");
        assert_eq!(c.exchange(&req).await.ok(), Some(Answer { status: 200, keep_alive: true }));
        assert!(!c.closed_while_idle());
        assert_eq!(c.exchange(&req).await.ok(), Some(Answer { status: 422, keep_alive: true }));
        server.await.expect("server");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(c.closed_while_idle(), "the server's close is noticed before the next send");
        assert!(matches!(c.exchange(&req).await, Err(WireError::Closed | WireError::Io(_))));
    }
}
