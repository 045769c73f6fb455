//! log-output
