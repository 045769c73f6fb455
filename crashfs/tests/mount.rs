//! crashfs through the kernel: what a cut keeps, torn writes included, that the kernel forgets
//! its caches, that a busy mount is never cut, that flock excludes across processes, and that no
//! mount leaks.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    os::unix::fs::FileExt,
    path::Path,
    process::{Command, Stdio},
};

use crashfs::{Change, Cut, Error, Model, Op, Tear, env::mount_or_skip};

fn write_synced(path: &Path, bytes: &[u8], fsync_file: bool) {
    let mut f = File::create_new(path).expect("create");
    f.write_all(bytes).expect("write");
    if fsync_file {
        f.sync_all().expect("fsync");
    }
}

fn fsync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

#[test]
fn strict_cut_keeps_only_fsynced_data_under_fsynced_names() {
    let Some(mut fs) = mount_or_skip("strict_cut") else {
        return;
    };
    let root = fs.path().to_path_buf();
    write_synced(&root.join("a"), b"a1", true);
    write_synced(&root.join("b"), b"b1", false);
    fsync_dir(&root);
    write_synced(&root.join("c"), b"c1", true); // its name never fsynced
    fs::write(root.join("a"), b"a2").expect("overwrite a, unsynced");
    assert_eq!(names(&root), ["a", "b", "c"]);

    fs.cut_power(Model::Strict).expect("cut");
    assert_eq!(names(&root), ["a", "b"]);
    assert_eq!(fs::read(root.join("a")).expect("a"), b"a1");
    assert_eq!(fs::read(root.join("b")).expect("b"), b"");
    assert_eq!(
        fs::metadata(root.join("c")).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn names_durable_cut_keeps_every_name_but_only_fsynced_data() {
    let Some(mut fs) = mount_or_skip("names_durable_cut") else {
        return;
    };
    let root = fs.path().to_path_buf();
    write_synced(&root.join("a"), b"a1", true);
    write_synced(&root.join("b"), b"b1", false);
    fs::create_dir(root.join("d")).expect("mkdir");
    write_synced(&root.join("d/e"), b"e1", true);
    fs::rename(root.join("a"), root.join("d/a")).expect("rename");

    fs.cut_power(Model::NamesDurable).expect("cut");
    assert_eq!(names(&root), ["b", "d"]);
    assert_eq!(names(&root.join("d")), ["a", "e"]);
    assert_eq!(fs::read(root.join("d/a")).expect("a"), b"a1");
    assert_eq!(fs::read(root.join("b")).expect("b"), b"");
    assert_eq!(fs::read(root.join("d/e")).expect("e"), b"e1");
}

#[test]
fn crash_after_k_freezes_what_a_cut_keeps() {
    let Some(mut fs) = mount_or_skip("crash_after") else {
        return;
    };
    let root = fs.path().to_path_buf();
    let start = fs.mutating_ops();
    write_synced(&root.join("a"), b"a1", true); // create, write, fsync
    assert_eq!(fs.mutating_ops() - start, 3);
    fs.crash_after(1);
    fsync_dir(&root); // the last durable operation
    assert!(fs.frozen());
    write_synced(&root.join("b"), b"b1", true);
    fsync_dir(&root);
    fs.cut_power(Model::Strict).expect("cut");
    assert_eq!(names(&root), ["a"]);
    assert_eq!(fs::read(root.join("a")).expect("a"), b"a1");
    assert!(!fs.frozen());
}

#[test]
fn cut_power_refuses_while_a_process_uses_the_mount() {
    let Some(mut fs) = mount_or_skip("cut_refuses_busy") else {
        return;
    };
    let root = fs.path().to_path_buf();
    let open = File::create(root.join("open")).expect("create");
    assert!(matches!(fs.cut_power(Model::Strict), Err(Error::Busy)));
    drop(open);

    let mut child = Command::new("sleep")
        .arg("600")
        .current_dir(&root)
        .spawn()
        .expect("sleep");
    assert!(matches!(fs.cut_power(Model::Strict), Err(Error::Busy)));
    child.kill().expect("kill");
    child.wait().expect("wait");
    fs.cut_power(Model::Strict)
        .expect("cut once nothing uses the mount");
    // The refused cuts changed nothing; this one lost the never-fsynced name.
    assert_eq!(names(&root), Vec::<String>::new());
}

/// `flock` is the kernel's (no lock requests reach the filesystem): it must still exclude a
/// second process on the same mount, as pingpong's lock file relies on.
#[test]
fn flock_excludes_across_processes() {
    let Some(fs) = mount_or_skip("flock_across_processes") else {
        return;
    };
    let lock_path = fs.path().join("x.lock");
    let held = File::create(&lock_path).expect("create");
    held.lock().expect("flock");
    let try_lock = || {
        Command::new("flock")
            .args(["--nonblock", "--conflict-exit-code", "75"])
            .arg(&lock_path)
            .arg("true")
            .status()
            .expect("flock(1)")
            .code()
    };
    assert_eq!(try_lock(), Some(75), "a second process took a held flock");
    held.unlock().expect("unlock");
    assert_eq!(try_lock(), Some(0));
}

#[test]
fn the_mount_is_private_and_gone_after_drop() {
    let Some(fs) = mount_or_skip("private_mount") else {
        return;
    };
    let path = fs.path().to_path_buf();
    let needle = format!("crashfs {} fuse ", path.display());
    let mine = fs::read_to_string("/proc/thread-self/mounts").expect("mounts");
    assert!(mine.contains(&needle), "{mine}");
    // The main thread of this process is still in the namespace the test started in.
    let pid = std::process::id();
    let outside = fs::read_to_string(format!("/proc/{pid}/task/{pid}/mounts")).expect("mounts");
    assert!(!outside.contains(&needle));
    drop(fs);
    let mine = fs::read_to_string("/proc/thread-self/mounts").expect("mounts");
    assert!(!mine.contains(&needle));
    assert!(
        !path.exists(),
        "{:?}",
        fs::read_dir(&path).map(|d| d.count())
    );
}

/// Run by [`a_killed_test_leaves_no_mount_behind`] in a child process: mounts, prints where,
/// and waits to be killed.
#[test]
#[ignore = "helper: run as a child process by a_killed_test_leaves_no_mount_behind"]
fn child_mounts_and_waits() {
    let Some(fs) = mount_or_skip("child_mounts_and_waits") else {
        return;
    };
    fs::write(fs.path().join("f"), b"x").expect("write");
    println!("MOUNTED {}", fs.path().display());
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[test]
fn a_killed_test_leaves_no_mount_behind() {
    if mount_or_skip("a_killed_test_leaves_no_mount_behind").is_none() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_mounts_and_waits",
            "--ignored",
            "--nocapture",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child test");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let path = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("MOUNTED ").map(str::to_owned))
        .expect("the child mounted");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let pid = std::process::id();
    let outside = fs::read_to_string(format!("/proc/{pid}/task/{pid}/mounts")).expect("mounts");
    assert!(!outside.contains(&path), "{outside}");
    // An ordinary, empty directory: no "Transport endpoint is not connected".
    assert_eq!(names(Path::new(&path)), Vec::<String>::new());
    fs::remove_dir(&path).expect("remove the killed child's mount point");
}

#[test]
fn writes_reads_truncates_and_appends_through_the_kernel() {
    let Some(fs) = mount_or_skip("io_through_kernel") else {
        return;
    };
    let p = fs.path().join("f");
    fs::write(&p, b"hello world").expect("write");
    assert_eq!(fs::read(&p).expect("read"), b"hello world");
    let mut f = OpenOptions::new().append(true).open(&p).expect("append");
    f.write_all(b"!").expect("append");
    drop(f);
    assert_eq!(fs::read(&p).expect("read"), b"hello world!");
    fs::write(&p, b"hi").expect("truncating write");
    assert_eq!(fs::read(&p).expect("read"), b"hi");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 2);
    fs::remove_file(&p).expect("unlink");
    assert_eq!(names(fs.path()), Vec::<String>::new());
}

#[test]
fn fdatasync_reaches_the_filesystem_apart_from_fsync() {
    let Some(fs) = mount_or_skip("fdatasync_apart") else {
        return;
    };
    let root = fs.path().to_path_buf();
    let f = File::create_new(root.join("a")).expect("create");
    let mark = fs.mutating_ops();
    f.write_all_at(b"12345678", 4096).expect("pwrite");
    f.sync_data().expect("fdatasync");
    f.sync_all().expect("fsync");
    fsync_dir(&root);
    let journal = fs.journal_since(mark);
    let Op::Write { ino, .. } = journal[0] else {
        panic!("{journal:?}");
    };
    assert_eq!(
        journal,
        [
            Op::Write {
                ino,
                offset: 4096,
                len: 8
            },
            Op::Sync {
                ino,
                datasync: true
            },
            Op::Sync {
                ino,
                datasync: false
            },
            Op::Sync {
                ino: 1,
                datasync: false
            },
        ]
    );
}

#[test]
fn a_torn_cut_keeps_exactly_the_sectors_or_bytes_chosen() {
    let Some(mut fs) = mount_or_skip("torn_cut") else {
        return;
    };
    let root = fs.path().to_path_buf();
    let path = root.join("f");
    write_synced(&path, &[b'o'; 2048], true);
    fsync_dir(&root);
    // Sectors 1 and 2 of the file, rewritten in place and never synced.
    let f = OpenOptions::new().write(true).open(&path).expect("open");
    f.write_all_at(&[b'n'; 1024], 512).expect("pwrite");
    drop(f);
    let write = Change::Write {
        offset: 512,
        len: 1024,
    };
    let pending: Vec<Change> = fs.pending().into_iter().map(|p| p.change).collect();
    assert_eq!(pending, [write]);
    assert_eq!(write.tears().len(), 4, "lost, whole, either sector");
    let snapshot = fs.snapshot();

    // A cut naming another write is refused, cuts nothing, and leaves the mount usable.
    let other = Change::Write {
        offset: 0,
        len: 1024,
    };
    assert!(matches!(
        fs.cut_power(Cut::exactly(Model::Strict, vec![(other, Tear::Whole)])),
        Err(Error::Mismatch(_))
    ));
    assert_eq!(fs::read(&path).expect("read")[512], b'n');

    let kept = fs
        .cut_power(Cut::exactly(
            Model::Strict,
            vec![(write, Tear::Sectors(0b10))],
        ))
        .expect("cut");
    assert_eq!(kept.len(), 1);
    let per_sector = |bytes: Vec<u8>| bytes.chunks(512).map(|s| s[0]).collect::<Vec<u8>>();
    assert_eq!(per_sector(fs::read(&path).expect("read")), b"oono");

    // The same state, cut another way: the first 100 bytes of the write only.
    fs.cut_power_from(
        &snapshot,
        Cut::exactly(Model::NamesDurable, vec![(write, Tear::Prefix(100))]),
    )
    .expect("cut again");
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len(), 2048);
    assert_eq!(bytes[511..513], *b"on");
    assert_eq!(bytes[611..613], *b"no");
    assert_eq!(per_sector(bytes), b"onoo");
}

#[test]
fn a_hung_volume_blocks_every_request_until_it_resumes_and_failing_syncs_answer_eio() {
    let Some(fs) = mount_or_skip("faults") else {
        return;
    };
    let path = fs.path().join("f");
    write_synced(&path, b"1\n", true);

    fs.hang();
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || fs::read(&path).expect("read after resume"))
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!reader.is_finished(), "a read on a hung volume returned");
    fs.resume();
    assert_eq!(reader.join().expect("reader"), b"1\n");

    fs.fail_syncs(true, false);
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(b"2\n", 0).expect("write");
    let error = file.sync_data().expect_err("a failing disk");
    assert_eq!(error.raw_os_error(), Some(nix::libc::EIO));
    fsync_dir(fs.path());
    fs.fail_syncs(false, true);
    file.sync_data().expect("file syncs work again");
    let dir_error = File::open(fs.path())
        .and_then(|d| d.sync_all())
        .expect_err("directory syncs fail");
    assert_eq!(dir_error.raw_os_error(), Some(nix::libc::EIO));
    fs.fail_syncs(false, false);
    fsync_dir(fs.path());
}

#[test]
fn a_slow_rename_is_done_when_answered_and_descriptors_work_meanwhile() {
    let Some(fs) = mount_or_skip("slow_rename") else {
        return;
    };
    let dir = fs.path().to_path_buf();
    write_synced(&dir.join("new"), b"2\n", true);
    write_synced(&dir.join("target"), b"1\n", true);
    write_synced(&dir.join("other"), b"1\n", true);
    let open = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("other"))
        .unwrap();
    fs.delay_renames(std::time::Duration::from_secs(2));
    let started = std::time::Instant::now();
    let renaming = {
        let dir = dir.clone();
        std::thread::spawn(move || fs::rename(dir.join("new"), dir.join("target")).unwrap())
    };
    while fs.renames_in_flight() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The kernel holds the directory's and both files' locks across the rename (a listing, a
    // new name or a write to `target` waits for it, as on any FUSE filesystem); a descriptor
    // of another file does not.
    let mut content = [0; 2];
    open.read_exact_at(&mut content, 0).unwrap();
    assert_eq!(&content, b"1\n");
    open.write_all_at(b"1\n", 0).unwrap();
    open.sync_all().unwrap();
    assert_eq!(fs.renames_in_flight(), 1);
    renaming.join().unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(fs.renames_in_flight(), 0);
    assert_eq!(names(&dir), ["other", "target"]);
    assert_eq!(fs::read(dir.join("target")).unwrap(), b"2\n");
}
