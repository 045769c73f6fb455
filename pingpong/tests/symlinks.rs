//! A symbolic link on the volume is never followed (SPEC §3): a counter file linked to a secret
//! never puts the secret in an answer, and a lock file linked to a config file leaves that file
//! byte for byte; both are corrupt, "a symbolic link", until the operator removes the link.

mod support;

use std::{fs, os::unix::fs::symlink};

use support::Server;

const SECRET: &str = "password=hunter2\n";
const PRECIOUS: &[u8] = b"precious config\n";

#[test]
fn a_counter_linked_to_a_secret_never_shows_it_in_an_answer() {
    let away = tempfile::tempdir().unwrap();
    let secret = away.path().join("secret");
    fs::write(&secret, SECRET).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("pingpong_counter.txt");
    symlink(&secret, &counter).unwrap();
    let server = Server::start(dir.path());

    let reason = format!(
        "{} is a symbolic link, not a regular file",
        counter.display()
    );
    assert_eq!(server.get("/pingpong"), (503, format!("{reason}\n")));
    assert_eq!(server.get("/pings"), (503, format!("{reason}\n")));
    assert_eq!(server.get("/readyz"), (503, reason));
    for path in ["/pingpong", "/pings", "/readyz", "/metrics", "/healthz"] {
        let (_, body) = server.get(path);
        assert!(
            !body.contains("hunter2"),
            "{path} showed the secret: {body}"
        );
    }
    assert_eq!(fs::read_to_string(&secret).unwrap(), SECRET);
}

#[test]
fn a_lock_file_linked_to_a_config_file_leaves_it_byte_for_byte() {
    let away = tempfile::tempdir().unwrap();
    let config = away.path().join("config");
    fs::write(&config, PRECIOUS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("pingpong_counter.txt.lock");
    symlink(&config, &lock).unwrap();
    let server = Server::start(dir.path());

    let reason = format!("{} is a symbolic link, not a regular file", lock.display());
    assert_eq!(server.get("/pingpong"), (503, format!("{reason}\n")));
    assert_eq!(server.get("/readyz"), (503, reason));
    assert_eq!(fs::read(&config).unwrap(), PRECIOUS);
    assert!(fs::symlink_metadata(&lock).unwrap().is_symlink());
}
