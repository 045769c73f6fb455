//! `--help` and `--version`, without a parser dependency: the binaries take almost no arguments,
//! their configuration is the environment.

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
