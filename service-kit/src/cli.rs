//! The common start of every binary: `--help` and `--version` (without a parser dependency: the
//! binaries take almost no arguments, their configuration is the environment), configuration
//! and the log filter from the environment, logging, then the binary's own `run`.

use std::{env, process::ExitCode};

use crate::{
    config::{ConfigError, EXIT_USAGE, check_utf8, process_env},
    telemetry,
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
/// with `config` and `RUST_LOG`, exiting with status 2 and one line if either is malformed;
/// installs logging; then calls `run`. A failure of `run` prints the whole error chain as one
/// line (and logs it) and exits with status 1.
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
    let (config, filter) = match (config(&process_env), telemetry::filter(&process_env)) {
        (Ok(config), Ok(filter)) => (config, filter),
        (Err(error), _) | (_, Err(error)) => return usage_error(name, &error.to_string()),
    };
    telemetry::init(filter);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} stopped");
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
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
