//! `pingpong counter get|set N`, the operator's commands, on the volumes an operator meets
//! them on: beside a running replica on either kind of volume, on a read-only volume, and with
//! something other than a regular file where the counter's files should be (SPEC §3 "Repair").

mod support;

use std::{
    fs,
    os::unix::{fs::FileTypeExt, net::UnixListener},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use support::{BIN, Server, eventually};
use test_support::Mount;

const COUNTER: &str = "pingpong_counter.txt";
const LOCK: &str = "pingpong_counter.txt.lock";
const ROLLOUT: &str = "pingpong_counter.txt.rollout";

/// `pingpong counter <args>` on `data_dir`, on a volume of `kind`.
fn counter(args: &[&str], data_dir: &Path, kind: &str) -> Output {
    Command::new(BIN)
        .arg("counter")
        .args(args)
        .env("DATA_DIR", data_dir)
        .env("VOLUME_KIND", kind)
        .output()
        .expect("pingpong counter")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

/// The published file holds `n`: what a lease given back leaves.
fn wait_published(data_dir: &Path, n: u64) {
    let expected = format!("{n}\n");
    test_support::assert_published_within(
        &data_dir.join(COUNTER),
        &expected,
        Duration::from_secs(20),
    );
}

#[test]
fn counter_set_below_the_count_is_the_next_answer_on_either_kind_of_volume() {
    for kind in ["local", "network"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_with(dir.path(), &[("VOLUME_KIND", kind)]);
        for n in 0..20 {
            assert_eq!(
                server.get("/pingpong"),
                (200, format!("pong {n}")),
                "{kind}"
            );
        }
        wait_published(dir.path(), 20);

        let set = counter(&["set", "5"], dir.path(), kind);
        assert!(set.status.success(), "{kind}: {set:?}");
        assert_eq!(
            stdout(&set),
            format!("{} set to 5\n", dir.path().join(COUNTER).display()),
            "{kind}"
        );

        assert_eq!(
            server.get("/pingpong"),
            (200, "pong 5".to_owned()),
            "{kind}"
        );
        assert_eq!(
            server.get("/pingpong"),
            (200, "pong 6".to_owned()),
            "{kind}"
        );
        wait_published(dir.path(), 7);
        assert_eq!(
            stdout(&counter(&["get"], dir.path(), kind)),
            "7\n",
            "{kind}"
        );
    }
}

#[test]
fn counter_get_on_a_network_volume_prints_the_count_the_next_lease_starts_from() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("VOLUME_KIND", "network")]);
    for n in 0..3 {
        assert_eq!(server.get("/pingpong"), (200, format!("pong {n}")));
    }
    wait_published(dir.path(), 3);
    // A hand puts the published file ahead of the record. On a network volume the service
    // counts from the record alone (SPEC §3 "Readers"), and so must what `get` prints.
    let tmp = dir.path().join("by-hand");
    fs::write(&tmp, "50\n").unwrap();
    fs::rename(&tmp, dir.path().join(COUNTER)).unwrap();

    let get = counter(&["get"], dir.path(), "network");
    assert!(get.status.success(), "{get:?}");
    assert_eq!(stdout(&get), "3\n");
    assert_eq!(server.get("/pingpong"), (200, "pong 3".to_owned()));
}

#[test]
fn counter_get_prints_the_count_on_a_read_only_volume() {
    for kind in ["local", "network"] {
        let dir = tempfile::tempdir().unwrap();
        let set = counter(&["set", "7"], dir.path(), kind);
        assert!(set.status.success(), "{kind}: {set:?}");
        // The record ahead of the published file, as a holder killed before it published
        // leaves them: the published file cannot be brought up to it on this volume.
        fs::write(dir.path().join(COUNTER), "4\n").unwrap();
        let Some(view) = Mount::read_only_view(dir.path()) else {
            return;
        };
        assert!(
            fs::write(view.path().join("probe"), "").is_err(),
            "the view is read-only"
        );

        let get = counter(&["get"], view.path(), kind);
        assert_eq!(get.status.code(), Some(0), "{kind}: {get:?}");
        assert_eq!(stdout(&get), "7\n", "{kind}");
        assert_eq!(fs::read_to_string(dir.path().join(COUNTER)).unwrap(), "4\n");
    }
}

#[test]
fn counter_get_prints_the_count_on_a_full_volume() {
    for kind in ["local", "network"] {
        let Some(volume) = Mount::tmpfs("256k") else {
            return;
        };
        let set = counter(&["set", "7"], volume.path(), kind);
        assert!(set.status.success(), "{kind}: {set:?}");
        fs::write(volume.path().join(COUNTER), "4\n").unwrap();
        let filler = volume.path().join("filler");
        let full = fs::write(&filler, vec![7u8; 1 << 20]).unwrap_err();
        assert_eq!(full.kind(), std::io::ErrorKind::StorageFull, "{full}");

        let get = counter(&["get"], volume.path(), kind);
        assert_eq!(get.status.code(), Some(0), "{kind}: {get:?}");
        assert_eq!(stdout(&get), "7\n", "{kind}");
    }
}

/// The things an operator may find where a regular file should be.
#[derive(Debug, Clone, Copy)]
enum Thing {
    Directory,
    Fifo,
    Socket,
    Symlink,
}

impl Thing {
    const ALL: [Thing; 4] = [Thing::Directory, Thing::Fifo, Thing::Socket, Thing::Symlink];

    /// Puts one at `path`; what it points at, for a symlink.
    fn plant(self, path: &Path) -> Option<PathBuf> {
        match self {
            Thing::Directory => {
                fs::create_dir(path).unwrap();
                fs::write(path.join("kept"), "inside").unwrap();
            }
            Thing::Fifo => test_support::plant_fifo(path),
            Thing::Socket => drop(UnixListener::bind(path).unwrap()),
            Thing::Symlink => {
                let target = path.with_extension("elsewhere");
                fs::write(&target, "99\n").unwrap();
                std::os::unix::fs::symlink(&target, path).unwrap();
                return Some(target);
            }
        }
        None
    }

    /// How the operator is told what it was.
    fn kind(self) -> &'static str {
        match self {
            Thing::Directory => "a directory",
            Thing::Fifo => "a named pipe (FIFO)",
            Thing::Socket => "a socket",
            Thing::Symlink => "a symbolic link",
        }
    }

    /// Whether `path` is still one, untouched.
    fn is_at(self, path: &Path) -> bool {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return false;
        };
        let t = meta.file_type();
        match self {
            Thing::Directory => {
                t.is_dir() && fs::read_to_string(path.join("kept")).is_ok_and(|s| s == "inside")
            }
            Thing::Fifo => t.is_fifo(),
            Thing::Socket => t.is_socket(),
            Thing::Symlink => t.is_symlink(),
        }
    }
}

/// `counter set 5` with `thing` at `name`: it moves it aside, says where, and sets the count.
fn set_moves_it_aside(name: &str, thing: Thing) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let target = thing.plant(&path);

    let set = counter(&["set", "5"], dir.path(), "local");
    assert_eq!(set.status.code(), Some(0), "{name} {thing:?}: {set:?}");
    let out = stdout(&set);
    let lines: Vec<&str> = out.lines().collect();
    let prefix = format!("moved {} ({}) aside to ", path.display(), thing.kind());
    assert_eq!(lines.len(), 2, "{name} {thing:?}: {out}");
    let aside = PathBuf::from(
        lines[0]
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{name} {thing:?}: {out}")),
    );
    assert_eq!(
        lines[1],
        format!("{} set to 5", dir.path().join(COUNTER).display())
    );
    let aside_name = aside.file_name().unwrap().to_str().unwrap();
    let stamp = aside_name
        .strip_prefix(&format!("{name}.corrupt-"))
        .unwrap_or_else(|| panic!("{name} {thing:?}: {aside_name}"));
    assert!(
        !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()),
        "a unix time: {aside_name}"
    );
    assert_eq!(aside.parent(), Some(dir.path()));
    assert!(thing.is_at(&aside), "{thing:?} kept at {}", aside.display());
    if let Some(target) = target {
        assert_eq!(fs::read_to_string(target).unwrap(), "99\n", "never written");
    }

    if name == ROLLOUT {
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "no marker until a sight"
        );
    } else {
        assert!(fs::symlink_metadata(&path).unwrap().is_file(), "{name}");
    }
    assert!(
        fs::symlink_metadata(dir.path().join(LOCK))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read_to_string(dir.path().join(COUNTER)).unwrap(), "5\n");
    assert_eq!(stdout(&counter(&["get"], dir.path(), "local")), "5\n");
}

#[test]
fn counter_set_moves_what_is_not_a_regular_file_at_the_counter_aside() {
    for thing in Thing::ALL {
        set_moves_it_aside(COUNTER, thing);
    }
}

#[test]
fn counter_set_moves_what_is_not_a_regular_file_at_the_lock_file_aside() {
    for thing in Thing::ALL {
        set_moves_it_aside(LOCK, thing);
    }
}

#[test]
fn counter_set_moves_what_is_not_a_regular_file_at_the_rollout_marker_aside() {
    for thing in Thing::ALL {
        set_moves_it_aside(ROLLOUT, thing);
    }
}

#[test]
fn a_directory_at_the_rollout_marker_is_reported_until_counter_set_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(ROLLOUT);
    fs::create_dir(&marker).unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.get("/pingpong"), (200, "pong 0".to_owned()));
    let reported = |server: &Server| {
        server
            .stderr_lines()
            .iter()
            .filter(|l| l.contains("WARN") && l.contains("the rollout marker is unusable"))
            .count()
    };
    eventually(Duration::from_secs(20), "the marker to be reported", || {
        (reported(&server) == 1).then_some(())
    });
    let line = server
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("the rollout marker is unusable"))
        .unwrap();
    assert!(line.contains(&marker.display().to_string()), "{line}");
    assert!(
        line.contains("it is a directory, not a regular file"),
        "{line}"
    );
    assert_eq!(server.get("/pingpong"), (200, "pong 1".to_owned()));
    assert_eq!(reported(&server), 1, "once, not once per lease");

    let set = counter(&["set", "5"], dir.path(), "local");
    assert!(set.status.success(), "{set:?}");
    assert!(
        stdout(&set).starts_with(&format!(
            "moved {} (a directory) aside to ",
            marker.display()
        )),
        "{set:?}"
    );
    assert_eq!(server.get("/pingpong"), (200, "pong 5".to_owned()));
    assert!(!marker.exists(), "no marker until an old replica is seen");
}
