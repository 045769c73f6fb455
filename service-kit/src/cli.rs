//! The common start and end of every binary: `--help` and `--version` (without a parser
//! dependency: the binaries take almost no arguments, their configuration is the environment),
//! configuration, `RUST_LOG` and `LOG_FORMAT` from the environment, logging, then the binary's
//! own `run`; at the end, the error if any, and the last log lines flushed before the exit.

use std::{env, process::ExitCode};

use crate::{
    config::{ConfigError, EXIT_USAGE, check_utf8, process_env},
    telemetry::{self, LogFormat},
};

/// What `--help` and `--version` print.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    pub name: &'static str,
    /// `env!("CARGO_PKG_VERSION")` of the binary's crate.
    pub version: &'static str,
    pub help: &'static str,
}

/// Runs `binary`: answers `--help` and `--version`; reads its configuration
/// with `config`, `RUST_LOG` and `LOG_FORMAT`, exiting with status 2 and one line if any is
/// malformed; installs logging; then calls `run` and ends as [`exit`] says.
pub fn run_main<C>(
    binary: Binary,
    args: &[String],
    config: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<C, ConfigError>,
    run: impl FnOnce(C) -> anyhow::Result<()>,
) -> ExitCode {
    let Binary {
        name,
        version,
        help,
    } = binary;
    match standard_flag(args) {
        Ok(Flag::Run) => {}
        Ok(Flag::Help) => {
            print!("{help}");
            return ExitCode::SUCCESS;
        }
        Ok(Flag::Version) => {
            println!("{name} {version}");
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(name, &message),
    }
    if let Err(error) = check_utf8(|var| env::var_os(var)) {
        return usage_error(name, &error.to_string());
    }
    let config = match config(&process_env) {
        Ok(config) => config,
        Err(error) => return usage_error(name, &error.to_string()),
    };
    let format = match logging(&process_env) {
        Ok(format) => format,
        Err(error) => return usage_error(name, &error.to_string()),
    };
    exit(name, format, run(config))
}

/// Reads `RUST_LOG` and `LOG_FORMAT` through `lookup` and installs logging; the format, or the
/// first malformed variable (nothing installed then).
pub fn logging(lookup: &impl Fn(&str) -> Option<String>) -> Result<LogFormat, ConfigError> {
    let filter = telemetry::filter(lookup)?;
    let format = telemetry::format(lookup)?;
    telemetry::init_with(filter, format);
    Ok(format)
}

/// How a binary whose logging is installed ends: on success exit 0; on failure the whole error
/// chain is logged and, in the text format, also printed as one plain line, `name: error`;
/// exit 1. Either way the log lines still queued are flushed first (for at most
/// [`telemetry::FLUSH_AT_EXIT`]).
pub fn exit(name: &str, format: LogFormat, result: anyhow::Result<()>) -> ExitCode {
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} stopped");
            if format == LogFormat::Text {
                telemetry::write_line(&format!("{name}: {error:#}"));
            }
            ExitCode::FAILURE
        }
    };
    telemetry::flush(telemetry::FLUSH_AT_EXIT);
    code
}

/// A malformed argument or variable: one line on stderr, exit status 2.
pub fn usage_error(name: &str, message: &str) -> ExitCode {
    eprintln!("{name}: {message}");
    ExitCode::from(EXIT_USAGE as u8)
}

/// What the first argument asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Flag {
    /// No arguments: run the service.
    Run,
    Help,
    Version,
}

/// Recognises `--help`/`-h` and `--version`/`-V`; any other argument is an error message.
pub fn standard_flag(args: &[String]) -> Result<Flag, String> {
    match args {
        [] => Ok(Flag::Run),
        [a] if a == "--help" || a == "-h" => Ok(Flag::Help),
        [a] if a == "--version" || a == "-V" => Ok(Flag::Version),
        [a, ..] => Err(format!("unexpected argument {a:?}; see --help")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn recognises_standard_flags() {
        assert_eq!(standard_flag(&args(&[])), Ok(Flag::Run));
        assert_eq!(standard_flag(&args(&["--help"])), Ok(Flag::Help));
        assert_eq!(standard_flag(&args(&["-V"])), Ok(Flag::Version));
        assert_eq!(
            standard_flag(&args(&["--port"])),
            Err(r#"unexpected argument "--port"; see --help"#.to_owned())
        );
    }
}
