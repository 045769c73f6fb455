//! `pingpong counter get|set N`, the operator's commands, on the volumes an operator meets
//! them on: beside a running replica on either kind of volume, on a read-only volume, and with
//! something other than a regular file where the counter's files should be (SPEC §3 "Repair").

mod support;

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use support::{BIN, Server, eventually};

const COUNTER: &str = "pingpong_counter.txt";

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
    let path = data_dir.join(COUNTER);
    let expected = format!("{n}\n");
    eventually(Duration::from_secs(20), "the count to be published", || {
        (fs::read_to_string(&path).ok().as_deref() == Some(&expected)).then_some(())
    });
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
