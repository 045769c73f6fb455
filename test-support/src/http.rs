//! A raw HTTP/1.1 client over loopback: the bytes a test writes are the bytes the server reads
//! (no client library normalises a method, a head or a half-close away), and the answer comes
//! back as status, content type and body.

use std::{
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// How long [`get`] and [`request`] wait for a whole answer: long enough for a debug build on a
/// loaded machine, short enough that a server that never answers fails the test.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// One HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text; panics if it is not UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }

    /// (status, body as text).
    pub fn status_and_text(self) -> (u16, String) {
        let text = self.text();
        (self.status, text)
    }
}

/// `GET path` on a fresh connection to `127.0.0.1:port`, answered within [`ANSWER_WITHIN`].
pub fn get(port: u16, path: &str) -> io::Result<Response> {
    request(port, "GET", path)
}

/// `method path` on a fresh connection to `127.0.0.1:port`, answered within
/// [`ANSWER_WITHIN`].
pub fn request(port: u16, method: &str, path: &str) -> io::Result<Response> {
    exchange(loopback(port), &request_bytes(method, path), ANSWER_WITHIN)
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// The bytes of a bodiless request with `Connection: close`.
pub fn request_bytes(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Sends `raw` on a new connection to `addr` and reads the answer until the server closes or
/// the body its `content-length` announces is complete; fails if that has not happened within
/// `within` of the connect.
pub fn exchange(addr: SocketAddr, raw: &[u8], within: Duration) -> io::Result<Response> {
    exchange_with(addr, raw, within, false)
}

/// [`exchange`], half-closing the connection (`shutdown(SHUT_WR)`, as `nc -N` and some proxies
/// do) once `raw` is sent.
pub fn exchange_half_closed(
    addr: SocketAddr,
    raw: &[u8],
    within: Duration,
) -> io::Result<Response> {
    exchange_with(addr, raw, within, true)
}

fn exchange_with(
    addr: SocketAddr,
    raw: &[u8],
    within: Duration,
    half_close: bool,
) -> io::Result<Response> {
    let deadline = Instant::now() + within;
    let mut stream = TcpStream::connect_timeout(&addr, within)?;
    stream.write_all(raw)?;
    if half_close {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no complete answer within {within:?}: {:?}",
                    String::from_utf8_lossy(&response)
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if complete(&response) {
                    break;
                }
            }
            // A signal to this process (a child's exit) is no answer; read_to_end retries too.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    parse(&response)
}

/// Whether the server has closed `stream` (EOF or reset), waiting until `deadline`; an answer
/// before the close (a 408, a 503) is read and passed over.
pub fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // a 408 or 503 before the close
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(e) => panic!("reading an idle connection: {e}"),
        }
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The head and the body of an answer read so far.
fn split(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end + 4..],
    ))
}

/// The value of header `name` in `head`.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Whether `raw` holds a head and the whole body its `content-length` announces (without one,
/// the answer ends where the server closes).
pub fn complete(raw: &[u8]) -> bool {
    split(raw).is_some_and(|(head, body)| {
        header(&head, "content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .is_some_and(|length| body.len() >= length)
    })
}

/// A whole answer as read from the socket. A `content-length` that disagrees with the body is
/// an error: a cut body must fail.
fn parse(raw: &[u8]) -> io::Result<Response> {
    let (head, body) = split(raw).ok_or_else(|| {
        bad(format!(
            "no end of head in {:?}",
            raw.escape_ascii().to_string()
        ))
    })?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line in {head:?}")))?;
    if let Some(length) = header(&head, "content-length")
        && length != body.len().to_string()
    {
        return Err(bad(format!(
            "content-length {length} but {} body bytes",
            body.len()
        )));
    }
    Ok(Response {
        status,
        content_type: header(&head, "content-type"),
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\npong 0";

    #[test]
    fn an_answer_is_complete_once_its_announced_body_is_there() {
        assert!(complete(ANSWER));
        assert!(!complete(&ANSWER[..ANSWER.len() - 1]));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\nno length"));
        let answer = parse(ANSWER).unwrap();
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.status_and_text(), (200, "pong 0".to_owned()));
    }

    #[test]
    fn a_cut_body_or_a_missing_head_is_an_error() {
        assert!(parse(&ANSWER[..ANSWER.len() - 1]).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 6").is_err());
    }
}
