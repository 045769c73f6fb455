//! How a follower sends its batch to the leader (SPEC §4 internal endpoint): one HTTP/1.1
//! request on a connection of its own, from the counter writer's thread, blocking.
//!
//! A new connection per batch, not a kept-alive one: a request sent on a pooled connection the
//! server is closing meanwhile (idle, or draining) breaks with no answer, and a broken forward's
//! outcome is unknown, which costs its callers a 503. A fresh connection is refused cleanly by a
//! leader that is gone, and costs a loopback or pod-network handshake per *batch*. What the
//! answer means is [`shared_fs::leadership::Forwarded`]'s to say; this module only maps it.

use std::{
    io::{self, Read, Write},
    net::TcpStream,
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

/// The HTTP client of leader mode.
#[derive(Debug, Default)]
pub struct HttpForward;

impl Forward for HttpForward {
    fn forward(&mut self, to: &LeaderBlock, n: u64) -> Forwarded {
        let mut stream = match TcpStream::connect_timeout(&to.address, CONNECT_TIMEOUT) {
            Ok(stream) => stream,
            // Nothing was sent.
            Err(error) => return Forwarded::Refused(format!("connect: {error}")),
        };
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        let answer = exchange(&mut stream, to, n, deadline);
        match answer {
            Ok((status, body)) => outcome(status, &body),
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

/// Sends the request and reads the answer's status and body, by `deadline`.
fn exchange(
    stream: &mut TcpStream,
    to: &LeaderBlock,
    n: u64,
    deadline: Instant,
) -> io::Result<(u16, String)> {
    let body = n.to_string();
    let request = format!(
        "POST /internal/increments HTTP/1.1\r\nHost: {}\r\nx-pingpong-epoch: {}\r\n\
         x-pingpong-token: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
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

/// The status and body once the answer is complete (its `Content-Length` read), `None` while
/// not yet.
fn parse(answer: &[u8]) -> io::Result<Option<(u16, String)>> {
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
    let length: usize = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| io::Error::other("an answer without Content-Length"))?;
    let body = &answer[end + 4..];
    if body.len() < length {
        return Ok(None);
    }
    Ok(Some((
        status,
        String::from_utf8_lossy(&body[..length]).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_once_its_content_length_is_read() {
        let whole = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n417";
        assert_eq!(parse(&whole[..20]).unwrap(), None);
        assert_eq!(parse(&whole[..whole.len() - 1]).unwrap(), None);
        assert_eq!(parse(whole).unwrap(), Some((200, "417".into())));
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
