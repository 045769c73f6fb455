//! `LISTEN_ADDRESS` (SPEC §2): the real binary listens where it is told, on IPv6 and IPv4, and by
//! default on every address of both families; a malformed value is refused at start.

mod support;

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use support::{BIN, Response, Server};
use test_support::http;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// One GET to `ip`:`port`: the answer, or the connection's error.
fn get_at(ip: IpAddr, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let raw = http::request_bytes("GET", path);
    http::exchange(SocketAddr::new(ip, port), &raw, Duration::from_secs(20))
        .map(Response::status_and_text)
}

/// Whether this host has IPv6 loopback (a container started without IPv6 has none). Without
/// it the IPv6 tests say so and pass, unless `IPV6_REQUIRED=1` (as CI sets) makes that a failure.
fn ipv6_loopback(test: &str) -> bool {
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("IPV6_REQUIRED").is_none_or(|v| v != "1"),
        "{test}: this host has no ::1 and IPV6_REQUIRED=1"
    );
    println!("{test}: skipped, this host has no IPv6 loopback (::1)");
    false
}

fn refused(ip: IpAddr, port: u16) -> bool {
    get_at(ip, port, "/healthz").is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)
}

#[test]
fn on_ipv6_loopback_only_that_address_is_served() {
    if !ipv6_loopback("on_ipv6_loopback_only_that_address_is_served") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("LISTEN_ADDRESS", "::1")]);
    assert_eq!(
        get_at(V6, server.port, "/pingpong").unwrap(),
        (200, "pong 0".to_owned())
    );
    assert!(refused(V4, server.port), "127.0.0.1 answered");
    assert!(
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("pingpong listening") && l.contains("address=::1")),
        "{:?}",
        server.stderr_lines()
    );
}

#[test]
fn on_ipv4_loopback_only_that_address_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("LISTEN_ADDRESS", "127.0.0.1")]);
    assert_eq!(
        get_at(V4, server.port, "/pingpong").unwrap(),
        (200, "pong 0".to_owned())
    );
    if ipv6_loopback("on_ipv4_loopback_only_that_address_is_served") {
        assert!(refused(V6, server.port), "::1 answered");
    }
}

#[test]
fn unset_serves_ipv6_and_ipv4_on_one_port() {
    if !ipv6_loopback("unset_serves_ipv6_and_ipv4_on_one_port") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert_eq!(
        get_at(V6, server.port, "/pingpong").unwrap(),
        (200, "pong 0".to_owned())
    );
    assert_eq!(
        get_at(V4, server.port, "/pingpong").unwrap(),
        (200, "pong 1".to_owned())
    );
    assert!(
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("pingpong listening") && l.contains("address=::")),
        "{:?}",
        server.stderr_lines()
    );
}

/// Runs `command` to its exit, within `DEADLINE`: (status code, stderr). A binary that ignores
/// `LISTEN_ADDRESS` would serve instead of exiting; it is killed and the test fails.
fn exit_code_and_stderr(command: &mut Command) -> (Option<i32>, String) {
    const DEADLINE: Duration = Duration::from_secs(20);
    let (status, _, stderr) = test_support::process::run_to_end(command, DEADLINE);
    let status = status.unwrap_or_else(|| panic!("still running after {DEADLINE:?}: {command:?}"));
    (status.code(), stderr)
}

#[test]
fn a_malformed_address_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["localhost", "127.0.0.1:3000", "[127.0.0.1]"] {
        let (code, stderr) = exit_code_and_stderr(
            Command::new(BIN)
                .env("LISTEN_ADDRESS", value)
                .env("PORT", "0")
                .env("DATA_DIR", dir.path()),
        );
        assert_eq!(code, Some(2), "{value}");
        assert_eq!(
            stderr,
            format!(
                "pingpong: invalid LISTEN_ADDRESS={value:?}: expected an IP address such as ::, 0.0.0.0, ::1 or 127.0.0.1\n"
            )
        );
    }
}

/// An IPv4 address from the documentation ranges (RFC 5737) that this host does not have:
/// sandboxes and CI runners do use those ranges for their own interfaces.
fn address_not_on_this_host() -> Ipv4Addr {
    ["203.0.113.7", "198.51.100.7", "192.0.2.77", "192.0.2.1"]
        .into_iter()
        .map(|a| a.parse::<Ipv4Addr>().unwrap())
        .find(|a| {
            std::net::TcpListener::bind((*a, 0))
                .is_err_and(|e| e.kind() == ErrorKind::AddrNotAvailable)
        })
        .expect("every candidate address is this host's")
}

#[test]
fn an_address_this_host_does_not_have_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let address = address_not_on_this_host();
    let (code, stderr) = exit_code_and_stderr(
        Command::new(BIN)
            .env("LISTEN_ADDRESS", address.to_string())
            .env("PORT", "0")
            .env("DATA_DIR", dir.path()),
    );
    assert_eq!(code, Some(1));
    let expected = format!(
        "pingpong: listening on {address} port 0: Cannot assign requested address (os error 99)"
    );
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
}
