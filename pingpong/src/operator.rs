//! `pingpong counter get|set N`: the operator's repair and reset, run in the server's own
//! container (which has no shell) with `kubectl exec`. It uses the same lock and atomic write
//! as the server, so it is safe while the server runs, and the server picks the new value up
//! at its next increment because every batch re-reads the file under the lock.

use shared_fs::CounterFile;

/// What the operator asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Get,
    Set(u64),
}

/// Parses the words after `counter`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args {
        [get] if get == "get" => Ok(Command::Get),
        // Digits only: `u64::from_str` alone would accept `+5`.
        [set, n] if set == "set" => Some(n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(Command::Set)
            .ok_or_else(|| {
                format!(
                    "invalid count {n:?}: expected a decimal number from 0 to {}",
                    u64::MAX
                )
            }),
        _ => Err("usage: pingpong counter get | pingpong counter set N".to_owned()),
    }
}

/// Runs the command against the counter `file`; returns the line to print.
pub fn run(command: &Command, file: &CounterFile) -> shared_fs::Result<String> {
    match *command {
        // Also brings the published file up to the record, if the lock is free (a crash or a
        // power cut may have left it behind): what a downgrade to a release without the
        // record needs first. Only a note where the volume refuses it: the count is the answer.
        Command::Get => {
            let (count, unreconciled) = file.reconcile_if_free()?;
            if let Some(error) = unreconciled {
                tracing::warn!(
                    %error,
                    "the published file was not brought up to the count; the count is right"
                );
            }
            Ok(count.to_string())
        }
        // What was not a regular file where one of the counter's files should be was moved
        // aside: one line each, before the answer.
        Command::Set(n) => {
            file.create_dir()?;
            let moved = file.set(n)?;
            let mut lines: Vec<String> = moved.iter().map(ToString::to_string).collect();
            lines.push(format!("{} set to {n}", file.path().display()));
            Ok(lines.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_get_and_set() {
        assert_eq!(parse(&args(&["get"])), Ok(Command::Get));
        assert_eq!(parse(&args(&["set", "42"])), Ok(Command::Set(42)));
    }

    #[test]
    fn refuses_anything_but_a_plain_u64() {
        for bad in ["-1", "+1", "abc", "", "18446744073709551616", " 1"] {
            assert!(parse(&args(&["set", bad])).is_err(), "{bad:?}");
        }
        assert!(parse(&args(&["reset"])).is_err());
        assert!(parse(&args(&[])).is_err());
    }
}
