//! How a follower sends its batch to the leader (SPEC §4 internal endpoint): one HTTP/1.1
//! request, from the counter writer's thread, blocking.
//!
//! On the connection kept from the last batch when there is one: a connection per batch cost
//! a handshake, an accept and a close on both sides per batch, and with it two replicas on one
//! directory behind HAProxy answered 0.78-0.80x of one, 0.88-0.90x without (wrk, BENCHMARKS.md
//! "Leader mode"). The danger of a kept connection: a request sent on one the leader is
//! closing meanwhile (idle, draining, or a dead process) breaks with no answer, and a broken
//! forward's outcome is unknown, which costs its callers a 503. So a connection is kept only
//! after a `200` that did not say `Connection: close`, reused only within [`KEEP_IDLE`] (the
//! leader closes idle ones after 10 s), only for the same leader, and only if, just before the
//! request is written, nothing has arrived on it: a leader that closed it or died has sent a
//! FIN or a reset by then, and the batch goes on a fresh connection instead, which such a
//! leader refuses cleanly. What is left is a close racing the request by microseconds. What
//! the answer means is [`shared_fs::leadership::Forwarded`]'s to say; this module only maps it.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use shared_fs::{
    leader_block::LeaderBlock,
    leadership::{FORWARD_TIMEOUT, Forward, Forwarded},
};

/// The longest a connection to the leader may take to open: an unreachable leader (a cut
/// network drops the handshake) is given up on within this, and nothing was sent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The longest answer read: the status line, a few headers and a decimal number.
const MAX_ANSWER: usize = 4096;

/// How long a connection kept from the last batch may have been idle to be used again: well
/// within the leader's keep-alive idle timeout (`HEADER_READ_TIMEOUT`, 10 s).
pub const KEEP_IDLE: Duration = Duration::from_secs(1);

/// The HTTP client of leader mode.
#[derive(Debug, Default)]
pub struct HttpForward {
    /// The connection of the last batch, to whom, and when its answer came.
    kept: Option<Kept>,
}

#[derive(Debug)]
struct Kept {
    to: SocketAddr,
    stream: TcpStream,
    answered: Instant,
}

impl HttpForward {
    /// The kept connection to `to`, if it may carry the next request (see the module docs).
    fn reusable(&mut self, to: SocketAddr) -> Option<TcpStream> {
        let kept = self.kept.take()?;
        (kept.to == to && kept.answered.elapsed() < KEEP_IDLE && quiet(&kept.stream))
            .then_some(kept.stream)
    }
}

/// Whether nothing at all has arrived on `stream`: no FIN, no reset, no stray bytes.
fn quiet(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = stream.peek(&mut [0u8; 1]);
    let quiet = matches!(&peeked, Err(error) if error.kind() == io::ErrorKind::WouldBlock);
    quiet && stream.set_nonblocking(false).is_ok()
}

impl Forward for HttpForward {
    fn forward(&mut self, to: &LeaderBlock, n: u64) -> Forwarded {
        let mut stream = match self.reusable(to.address) {
            Some(stream) => stream,
            None => match TcpStream::connect_timeout(&to.address, CONNECT_TIMEOUT) {
                Ok(stream) => stream,
                // Nothing was sent.
                Err(error) => return Forwarded::Refused(format!("connect: {error}")),
            },
        };
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        let answer = exchange(&mut stream, to, n, deadline);
        match answer {
            Ok(Answer {
                status,
                body,
                closing,
            }) => {
                if status == 200 && !closing {
                    self.kept = Some(Kept {
                        to: to.address,
                        stream,
                        answered: Instant::now(),
                    });
                }
                outcome(status, &body)
            }
            Err(error) => {
                // Reset, not closed: the leader's connection task sees the reset and drops the
                // request if its batch was not yet claimed (nothing used then).
                let _ = rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
                Forwarded::Unknown(error.to_string())
            }
        }
    }

    fn reachable(&mut self, to: &LeaderBlock) -> bool {
        TcpStream::connect_timeout(&to.address, CONNECT_TIMEOUT).is_ok()
    }
}

/// What an answer's status and body mean (SPEC §4).
fn outcome(status: u16, body: &str) -> Forwarded {
    let body = body.trim();
    match status {
        200 => match body.parse() {
            Ok(first) => Forwarded::Durable { first },
            Err(_) => Forwarded::Unknown(format!("a 200 whose body is not a number: {body:?}")),
        },
        // Not the leader (of this epoch), or another token: nothing was written.
        421 | 403 => Forwarded::Refused(format!("{status} {body}")),
        _ => Forwarded::Failed(format!("{status} {body}")),
    }
}

/// An answer of the leader.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    /// It said `Connection: close`: the connection is not used again.
    closing: bool,
}

/// Sends the request and reads the answer, by `deadline`.
fn exchange(
    stream: &mut TcpStream,
    to: &LeaderBlock,
    n: u64,
    deadline: Instant,
) -> io::Result<Answer> {
    let body = n.to_string();
    let request = format!(
        "POST /internal/increments HTTP/1.1\r\nHost: {}\r\nx-pingpong-epoch: {}\r\n\
         x-pingpong-token: {}\r\nContent-Length: {}\r\n\r\n{}",
        to.address,
        to.epoch,
        to.token.hex(),
        body.len(),
        body
    );
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(FORWARD_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::with_capacity(256);
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {FORWARD_TIMEOUT:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        if let Some(parsed) = parse(&answer)? {
            return Ok(parsed);
        }
        if answer.len() > MAX_ANSWER {
            return Err(io::Error::other(
                "an answer longer than any the leader sends",
            ));
        }
    }
    parse(&answer)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the whole answer",
        )
    })
}

/// The answer once it is complete (its `Content-Length` read), `None` while not yet.
fn parse(answer: &[u8]) -> io::Result<Option<Answer>> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&answer[..end]).map_err(io::Error::other)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    let headers: Vec<(&str, &str)> = lines.filter_map(|line| line.split_once(':')).collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim())
    };
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| io::Error::other("an answer without Content-Length"))?;
    let closing = header("connection").is_some_and(|value| value.eq_ignore_ascii_case("close"));
    let body = &answer[end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some(Answer {
        status,
        body: String::from_utf8_lossy(&body[..length]).into_owned(),
        closing,
    }))
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, sync::mpsc, thread};

    use shared_fs::leader_block::Token;

    use super::*;

    fn leader_at(address: SocketAddr) -> LeaderBlock {
        LeaderBlock {
            epoch: 7,
            heartbeat: 1,
            address,
            token: Token([1; 16]),
            stepped_down: false,
        }
    }

    /// Reads one forwarded request off `stream` (its head and its body).
    fn read_request(stream: &mut TcpStream) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 512];
        loop {
            let read = stream.read(&mut buffer).unwrap();
            assert_ne!(read, 0, "the follower closed before its whole request");
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    return;
                }
            }
        }
    }

    fn answer(stream: &mut TcpStream, extra: &str, first: u64) {
        let body = first.to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
    }

    #[test]
    fn batches_go_on_the_connection_kept_from_the_last_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let leader = leader_at(listener.local_addr().unwrap());
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for first in [0, 3, 9] {
                read_request(&mut stream);
                answer(&mut stream, "", first);
            }
        });
        let mut forward = HttpForward::default();
        for first in [0, 3, 9] {
            assert!(
                matches!(forward.forward(&leader, 3), Forwarded::Durable { first: f } if f == first)
            );
        }
        server.join().unwrap();
    }

    #[test]
    fn a_kept_connection_the_leader_closed_is_not_used_and_the_batch_goes_on_a_fresh_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let leader = leader_at(listener.local_addr().unwrap());
        let (closed, was_closed) = mpsc::channel();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_request(&mut stream);
            answer(&mut stream, "", 0);
            // Idle, draining, or the process gone: the connection closes under the follower.
            drop(stream);
            closed.send(()).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            read_request(&mut stream);
            answer(&mut stream, "", 5);
        });
        let mut forward = HttpForward::default();
        assert!(matches!(
            forward.forward(&leader, 5),
            Forwarded::Durable { first: 0 }
        ));
        was_closed.recv().unwrap();
        // The FIN has arrived (on a pod network too, long before a batch that comes within
        // KEEP_IDLE); then the next batch.
        let kept = &forward.kept.as_ref().expect("kept after a 200").stream;
        let deadline = Instant::now() + Duration::from_secs(10);
        while quiet(kept) {
            assert!(Instant::now() < deadline, "the FIN never arrived");
            thread::sleep(Duration::from_millis(1));
        }
        match forward.forward(&leader, 1) {
            Forwarded::Durable { first: 5 } => {}
            other => panic!("sent on the closed connection: {other:?}"),
        }
        server.join().unwrap();
    }

    #[test]
    fn an_answer_that_says_connection_close_leaves_no_connection_to_reuse() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let leader = leader_at(listener.local_addr().unwrap());
        let server = thread::spawn(move || {
            for first in [0, 2] {
                let (mut stream, _) = listener.accept().unwrap();
                read_request(&mut stream);
                // Kept open: only the header says it will not carry another request.
                answer(&mut stream, "connection: close\r\n", first);
                thread::sleep(Duration::from_millis(200));
            }
        });
        let mut forward = HttpForward::default();
        assert!(matches!(
            forward.forward(&leader, 2),
            Forwarded::Durable { first: 0 }
        ));
        assert!(matches!(
            forward.forward(&leader, 1),
            Forwarded::Durable { first: 2 }
        ));
        server.join().unwrap();
    }

    #[test]
    fn an_answer_is_complete_once_its_content_length_is_read() {
        let whole = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n417";
        assert_eq!(parse(&whole[..20]).unwrap(), None);
        assert_eq!(parse(&whole[..whole.len() - 1]).unwrap(), None);
        let answer = |closing| {
            Some(Answer {
                status: 200,
                body: "417".into(),
                closing,
            })
        };
        assert_eq!(parse(whole).unwrap(), answer(false));
        let closing = b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 3\r\n\r\n417";
        assert_eq!(parse(closing).unwrap(), answer(true));
    }

    #[test]
    fn only_a_200_with_a_number_hands_numbers_out_and_only_421_and_403_say_nothing_was_written() {
        assert!(matches!(
            outcome(200, "41\n"),
            Forwarded::Durable { first: 41 }
        ));
        assert!(matches!(outcome(200, "pong"), Forwarded::Unknown(_)));
        assert!(matches!(outcome(421, ""), Forwarded::Refused(_)));
        assert!(matches!(outcome(403, ""), Forwarded::Refused(_)));
        assert!(matches!(outcome(503, "disk full"), Forwarded::Failed(_)));
        assert!(matches!(outcome(400, ""), Forwarded::Failed(_)));
    }
}
