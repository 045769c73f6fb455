//! SPEC §7.7 through the public API: `DATA_DIR` is resolved on this machine before its mount is
//! looked up (symlinks followed, `..` applied, the nearest existing ancestor standing in for a
//! directory not created yet), and the message names it as written. The mountinfo text is
//! injected: a root line, then an sshfs mount of a real temporary directory.

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use shared_fs::mounts::{Verdict, check, check_in};

/// A root mount, and `dir` (made real by canonicalising) mounted with sshfs.
fn sshfs_at(dir: &Path) -> (PathBuf, Vec<u8>) {
    let dir = dir.canonicalize().unwrap();
    let escaped = dir
        .to_str()
        .unwrap()
        .replace('\\', r"\134")
        .replace(' ', r"\040");
    let text = format!(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
         47 27 0:42 / {escaped} rw,nosuid,nodev,relatime - fuse.sshfs root@127.0.0.1:/srv rw,user_id=0,group_id=0\n"
    );
    (dir, text.into_bytes())
}

/// The refused mount point for `data_dir`, or a panic saying what was decided instead.
fn refused_at(mountinfo: &[u8], data_dir: &Path) -> PathBuf {
    match check_in(mountinfo, data_dir) {
        Err(refusal) => {
            assert_eq!(refusal.data_dir, data_dir, "named as written");
            assert_eq!(refusal.fs_type, "fuse.sshfs");
            refusal.mount_point
        }
        Ok(verdict) => panic!("{} was allowed: {verdict}", data_dir.display()),
    }
}

#[test]
fn a_data_dir_not_created_yet_is_judged_by_its_nearest_existing_ancestor() {
    let tmp = tempfile::tempdir().unwrap();
    let (mount, text) = sshfs_at(tmp.path());
    let data_dir = tmp.path().join("not/yet/there");
    assert_eq!(refused_at(&text, &data_dir), mount);
    assert!(
        !tmp.path().join("not").exists(),
        "the check creates nothing"
    );
}

#[test]
fn a_symlink_is_followed_to_the_mount_it_leads_to() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("volume")).unwrap();
    let (mount, text) = sshfs_at(&tmp.path().join("volume"));
    symlink(&mount, tmp.path().join("link")).unwrap();
    assert_eq!(refused_at(&text, &tmp.path().join("link/files")), mount);
    assert_eq!(refused_at(&text, &tmp.path().join("link")), mount);
    // A link to a directory that does not exist yet resolves no further than the link itself.
    symlink(mount.join("later"), tmp.path().join("dangling")).unwrap();
    assert_eq!(refused_at(&text, &tmp.path().join("dangling/files")), mount);
    // A loop ends, judged as written.
    symlink("loop", tmp.path().join("loop")).unwrap();
    let looped = tmp.path().join("loop/files");
    assert_eq!(
        check_in(&text, &looped),
        Ok(Verdict::Local {
            data_dir: looped.clone(),
            fs_type: "ext4".to_owned(),
            mount_point: PathBuf::from("/"),
        })
    );
}

#[test]
fn dot_dot_leaves_the_mount_it_climbs_out_of() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("volume")).unwrap();
    let (mount, text) = sshfs_at(&tmp.path().join("volume"));
    assert_eq!(
        refused_at(&text, &tmp.path().join("volume/../volume/files")),
        mount
    );
    let outside = tmp.path().join("volume/new/../../files");
    assert_eq!(
        check_in(&text, &outside),
        Ok(Verdict::Local {
            data_dir: outside.clone(),
            fs_type: "ext4".to_owned(),
            mount_point: PathBuf::from("/"),
        })
    );
}

#[test]
fn a_relative_data_dir_is_resolved_against_the_working_directory() {
    // cargo runs tests in the crate's directory; the default DATA_DIR is relative (`files`).
    let (mount, text) = sshfs_at(&std::env::current_dir().unwrap());
    assert_eq!(refused_at(&text, Path::new("files")), mount);
}

#[test]
fn this_machines_own_mountinfo_is_read() {
    // Whatever holds the temporary directory here (ext4, tmpfs, overlay), it is found and named.
    let tmp = tempfile::tempdir().unwrap();
    let verdict = check(tmp.path()).expect("a temporary directory is never refused");
    let Verdict::Local {
        data_dir, fs_type, ..
    } = &verdict
    else {
        panic!("the temporary directory is not on a local filesystem: {verdict}");
    };
    assert_eq!(data_dir, tmp.path());
    assert!(!fs_type.is_empty());
}
