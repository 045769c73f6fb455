//! Environment variables, read once at start (SPEC §2). Unset means the default; set but
//! malformed is an error naming the variable, the value and what was expected, which the binary
//! prints as one line before exiting with status 2.

use std::{env, ffi::OsString, fmt, net::IpAddr, path::PathBuf, time::Duration};

/// A variable that is set but malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Exit status for a malformed variable or argument.
pub const EXIT_USAGE: i32 = 2;

/// Reads `var` through `lookup` (the environment in production, a map in tests) and parses it;
/// unset or empty means `None`.
pub fn parse_var<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    match lookup(var) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => parse(&value).map(Some).ok_or(ConfigError {
            var,
            value,
            expected,
        }),
    }
}

/// Every variable a binary of this workspace reads (SPEC §2).
pub const VARIABLES: [&str; 8] = [
    "PORT",
    "LISTEN_ADDRESS",
    "DATA_DIR",
    "LOG_INTERVAL",
    "RUST_LOG",
    "LOG_FORMAT",
    "SHUTDOWN_DELAY",
    "VOLUME_KIND",
];

/// The process environment as a lookup. Call [`check_utf8`] first: a value that is not UTF-8
/// would read here as its lossy conversion, a different path for `DATA_DIR`.
pub fn process_env(var: &str) -> Option<String> {
    env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

/// Fails on the first of [`VARIABLES`] whose value `lookup_os` gives is not UTF-8: such a value
/// is refused, never silently replaced by its lossy conversion.
pub fn check_utf8(lookup_os: impl Fn(&str) -> Option<OsString>) -> Result<(), ConfigError> {
    for var in VARIABLES {
        if let Some(value) = lookup_os(var)
            && value.to_str().is_none()
        {
            return Err(ConfigError {
                var,
                value: value.to_string_lossy().into_owned(),
                expected: "valid UTF-8",
            });
        }
    }
    Ok(())
}

/// A fixed environment, for tests: `lookup` over `pairs` instead of the process's variables.
pub fn fixed_env(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// `PORT`: a TCP port, digits only (`u16::from_str` alone would accept `+3000`).
pub fn port(lookup: &impl Fn(&str) -> Option<String>, default: u16) -> Result<u16, ConfigError> {
    Ok(parse_var(
        lookup,
        "PORT",
        "a TCP port number from 0 to 65535",
        port_number,
    )?
    .unwrap_or(default))
}

/// `LISTEN_ADDRESS`: where an HTTP server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenAddress {
    /// Unset: every address of both families, `[::]` with `IPV6_V6ONLY` off, so that an
    /// IPv6-only, an IPv4-only and a dual-stack pod all serve their pod IPs; `0.0.0.0` on a host
    /// without IPv6.
    #[default]
    Any,
    /// Exactly this address (`::` also takes IPv4, as above, but never falls back).
    Ip(IpAddr),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Any => f.write_str("every address"),
            ListenAddress::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A TCP port as a variable holds it: digits only (`u16::from_str` alone would accept `+3000`).
pub fn port_number(v: &str) -> Option<u16> {
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse().ok())
        .flatten()
}

/// An IPv4 or IPv6 address as a variable holds it, IPv6 optionally in brackets (`[::1]`).
pub fn ip_address(v: &str) -> Option<IpAddr> {
    let bare = v
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .filter(|inner| inner.contains(':'))
        .unwrap_or(v);
    bare.parse().ok()
}

/// `LISTEN_ADDRESS`: an IPv4 or IPv6 address, IPv6 optionally in brackets (`[::1]`); no host
/// names (a name can resolve to several addresses, or to none at start).
pub fn listen_address(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<ListenAddress, ConfigError> {
    Ok(parse_var(
        lookup,
        "LISTEN_ADDRESS",
        "an IP address such as ::, 0.0.0.0, ::1 or 127.0.0.1",
        |v| ip_address(v).map(ListenAddress::Ip),
    )?
    .unwrap_or_default())
}

/// `DATA_DIR`: the shared volume, default `files` relative to the working directory.
pub fn data_dir(lookup: &impl Fn(&str) -> Option<String>) -> PathBuf {
    lookup("DATA_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("files"), PathBuf::from)
}

/// A duration such as `250ms`, `5s` or `1m`, from `range.0` to `range.1` inclusive; `expected`
/// says so in words for the error (e.g. "a duration from 100ms to 24h, such as 5s").
pub fn duration(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: Duration,
    range: (Duration, Duration),
    expected: &'static str,
) -> Result<Duration, ConfigError> {
    Ok(parse_var(lookup, var, expected, |v| {
        humantime::parse_duration(v)
            .ok()
            .filter(|d| (range.0..=range.1).contains(d))
    })?
    .unwrap_or(default))
}

/// The longest `SHUTDOWN_DELAY` accepted: longer than any load balancer needs to notice a 503
/// readiness probe, short enough that a typo (`5m` for `5s`) is refused rather than stalling
/// every rollout; the pod's `terminationGracePeriodSeconds` must cover it plus the drain.
pub const MAX_SHUTDOWN_DELAY: Duration = Duration::from_secs(60);

/// `SHUTDOWN_DELAY` (SPEC §2, §6): after SIGTERM, how long to keep serving (with `/readyz`
/// already 503) before draining. Unlike an interval, zero is valid and is the default: a
/// local Ctrl-C stays instant.
pub fn shutdown_delay(lookup: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    Ok(parse_var(
        lookup,
        "SHUTDOWN_DELAY",
        "a duration from 0s to 60s such as 0s, 500ms or 5s",
        |v| {
            humantime::parse_duration(v)
                .ok()
                .filter(|d| *d <= MAX_SHUTDOWN_DELAY)
        },
    )?
    .unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fixed_env as env_of;

    #[test]
    fn unset_and_empty_mean_the_default() {
        assert_eq!(port(&env_of(&[]), 3000), Ok(3000));
        assert_eq!(port(&env_of(&[("PORT", "")]), 3000), Ok(3000));
        assert_eq!(data_dir(&env_of(&[])), PathBuf::from("files"));
    }

    #[test]
    fn listen_address_is_an_ip_address_or_any() {
        let a = |v: &'static str| {
            listen_address(&move |var: &str| (var == "LISTEN_ADDRESS").then(|| v.to_owned()))
        };
        assert_eq!(listen_address(&env_of(&[])), Ok(ListenAddress::Any));
        assert_eq!(a(""), Ok(ListenAddress::Any));
        assert_eq!(a("127.0.0.1"), Ok(ListenAddress::Ip([127, 0, 0, 1].into())));
        let loopback6 = ListenAddress::Ip(std::net::Ipv6Addr::LOCALHOST.into());
        assert_eq!(a("::1"), Ok(loopback6));
        assert_eq!(a("[::1]"), Ok(loopback6));
        assert_eq!(
            a("::"),
            Ok(ListenAddress::Ip(std::net::Ipv6Addr::UNSPECIFIED.into()))
        );
        assert_eq!(
            a("localhost").expect_err("a name").to_string(),
            r#"invalid LISTEN_ADDRESS="localhost": expected an IP address such as ::, 0.0.0.0, ::1 or 127.0.0.1"#
        );
        for bad in [
            "127.0.0.1:3000",
            "[127.0.0.1]",
            "[::1]:3000",
            " ::1",
            "::1 ",
            "256.0.0.1",
            "[::1",
            "fe80::1%eth0",
        ] {
            assert!(a(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn valid_values_are_used() {
        assert_eq!(port(&env_of(&[("PORT", "8080")]), 3000), Ok(8080));
        assert_eq!(
            data_dir(&env_of(&[("DATA_DIR", "/v")])),
            PathBuf::from("/v")
        );
        let d = |v| {
            duration(
                &env_of(v),
                "LOG_INTERVAL",
                Duration::from_secs(5),
                RANGE,
                "",
            )
        };
        assert_eq!(
            d(&[("LOG_INTERVAL", "250ms")]),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(d(&[("LOG_INTERVAL", "5s")]), Ok(Duration::from_secs(5)));
        assert_eq!(d(&[("LOG_INTERVAL", "1m")]), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn malformed_values_name_variable_value_and_expectation() {
        let err = port(&env_of(&[("PORT", "abc")]), 3000).expect_err("abc is no port");
        assert_eq!(
            err.to_string(),
            r#"invalid PORT="abc": expected a TCP port number from 0 to 65535"#
        );
        for bad in ["70000", "+3000", " 3000", "3000 ", "-1", "0x10"] {
            let lookup = |var: &str| (var == "PORT").then(|| bad.to_owned());
            assert!(port(&lookup, 3000).is_err(), "{bad:?}");
        }
        let d = |v: &'static str| {
            duration(
                &|var: &str| (var == "LOG_INTERVAL").then(|| v.to_owned()),
                "LOG_INTERVAL",
                Duration::ZERO,
                RANGE,
                "a duration from 100ms to 24h, such as 5s",
            )
        };
        assert_eq!(
            d("0s").expect_err("zero").to_string(),
            r#"invalid LOG_INTERVAL="0s": expected a duration from 100ms to 24h, such as 5s"#
        );
        for bad in ["5", "1ns", "99ms", "25h", "5 parsecs"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
        assert_eq!(d("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(d("24h"), Ok(Duration::from_secs(24 * 3600)));
    }

    const RANGE: (Duration, Duration) =
        (Duration::from_millis(100), Duration::from_secs(24 * 3600));

    #[test]
    fn a_value_that_is_not_utf8_is_refused_not_converted() {
        use std::os::unix::ffi::OsStringExt;
        let lookup =
            |var: &str| (var == "DATA_DIR").then(|| OsString::from_vec(b"/tmp/caf\xe9".to_vec()));
        assert_eq!(
            check_utf8(lookup).expect_err("not UTF-8").to_string(),
            "invalid DATA_DIR=\"/tmp/caf\u{fffd}\": expected valid UTF-8"
        );
        assert_eq!(check_utf8(|_: &str| Some(OsString::from("ok"))), Ok(()));
    }

    #[test]
    fn shutdown_delay_accepts_zero_up_to_the_maximum_and_defaults_to_zero() {
        let d = |v| shutdown_delay(&env_of(v));
        assert_eq!(d(&[]), Ok(Duration::ZERO));
        assert_eq!(d(&[("SHUTDOWN_DELAY", "")]), Ok(Duration::ZERO));
        assert_eq!(d(&[("SHUTDOWN_DELAY", "0s")]), Ok(Duration::ZERO));
        assert_eq!(
            d(&[("SHUTDOWN_DELAY", "500ms")]),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(d(&[("SHUTDOWN_DELAY", "5s")]), Ok(Duration::from_secs(5)));
        assert_eq!(d(&[("SHUTDOWN_DELAY", "1m")]), Ok(MAX_SHUTDOWN_DELAY));
        for bad in ["5", "abc", "-1s", "61s", "5m"] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([("SHUTDOWN_DELAY", bad)]));
            assert_eq!(
                d(pairs).expect_err(bad).to_string(),
                format!(
                    "invalid SHUTDOWN_DELAY={bad:?}: expected a duration from 0s to 60s such as 0s, 500ms or 5s"
                )
            );
        }
    }
}
