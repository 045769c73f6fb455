//! Leader mode's internal endpoint (SPEC §4): `POST /internal/increments`, where followers send
//! their batches. On a port of its own (`INTERNAL_PORT`), which no Service, Ingress or public
//! route reaches; the NetworkPolicy of `deploy/rwx` admits pingpong pods only. Whoever can read
//! the volume can read the token, and is trusted: the checks here are what keeps anybody else,
//! and any malformed or oversized request, from handing out or burning a number.
//!
//! Checked in this order, each refusal writing nothing: the request's form (400: the epoch and
//! token headers, a body `n` of digits from 1 to [`MAX_FORWARDED`]), the token against this
//! epoch's, in constant time (403), whether this replica leads that epoch (421). Only then is
//! the batch queued, and it is served only if this replica still leads that epoch when the
//! writer takes it (421 otherwise).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use service_kit::http::REQUEST_TIMEOUT;
use shared_fs::{
    Error,
    group_commit::FollowersDoor,
    leadership::{Admission, MAX_FORWARDED},
};

/// The internal endpoint's routes: this one, 404 elsewhere, 405 for other methods.
pub fn app(door: FollowersDoor) -> Router {
    Router::new()
        .route("/internal/increments", post(increments))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        })
        .with_state(door)
}

async fn increments(
    State(door): State<FollowersDoor>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (epoch, token, n) = match read(&headers, &body) {
        Ok(request) => request,
        Err(reason) => return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response(),
    };
    match door.role().admit(epoch, token) {
        Admission::Admitted => {}
        Admission::WrongToken => {
            return (StatusCode::FORBIDDEN, "wrong token\n").into_response();
        }
        Admission::NotLeader => return not_leader(epoch),
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, door.increment_forwarded(n, epoch)).await {
        Ok(Ok(first)) => (StatusCode::OK, first.to_string()).into_response(),
        Ok(Err(Error::NotLeader { .. } | Error::WriterStopped { .. })) => not_leader(epoch),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
        // Dropped before its batch was claimed: nothing written.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("timed out after {}s\n", REQUEST_TIMEOUT.as_secs()),
        )
            .into_response(),
    }
}

fn not_leader(epoch: u64) -> Response {
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!("not the leader of epoch {epoch}\n"),
    )
        .into_response()
}

/// The epoch, the token and `n`, or why the request is malformed.
fn read<'h>(headers: &'h HeaderMap, body: &[u8]) -> Result<(u64, &'h [u8], u64), &'static str> {
    let epoch = headers
        .get("x-pingpong-epoch")
        .and_then(|v| digits(v.as_bytes()))
        .ok_or("x-pingpong-epoch: a decimal epoch is required")?;
    let token = headers
        .get("x-pingpong-token")
        .map(|v| v.as_bytes())
        .ok_or("x-pingpong-token is required")?;
    let n = digits(body)
        .filter(|n| (1..=MAX_FORWARDED).contains(n))
        .ok_or("the body must be a decimal count of increments from 1 to 1024")?;
    Ok((epoch, token, n))
}

/// A decimal `u64` of digits only (no sign, no space).
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_the_one_the_message_states() {
        assert_eq!(MAX_FORWARDED, 1024);
    }

    #[test]
    fn a_count_is_digits_only_and_within_the_cap() {
        let headers = |epoch: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-pingpong-epoch", epoch.parse().unwrap());
            h.insert("x-pingpong-token", "00".parse().unwrap());
            h
        };
        assert_eq!(read(&headers("7"), b"3").unwrap().2, 3);
        for body in [
            &b"0"[..],
            b"1025",
            b"+3",
            b" 3",
            b"",
            b"99999999999999999999999",
        ] {
            assert!(read(&headers("7"), body).is_err(), "{body:?}");
        }
        assert!(read(&headers("-1"), b"3").is_err());
        assert!(read(&HeaderMap::new(), b"3").is_err());
    }
}
