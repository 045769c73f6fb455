//! The decisions and messages of [`super`] on real mountinfo lines. Where a line comes from:
//!
//! - `THIS_MACHINE`: this workspace's Debian 12 VM (Linux 6.18), verbatim but for the cgroup
//!   lines; two GlusterFS mounts of a teammate's test volume were up. Its root was switched
//!   after boot, so `/proc` (22) is listed before `/` (27), and `/dev/pts` and `/dev/shm` each
//!   have a second mount stacked on the first (29 on 26, 30 on 25).
//! - `OVERLAY`, `SPACE`, `BACKSLASH`, `SSHFS`: mounted on the same VM for these tests
//!   (`test/node-local-locks.sh` makes the sshfs one).
//! - `NFS4`, `NFS3`: snapd's osutil tests (`osutil/nfs_test.go`), taken from a real machine;
//!   `NFS4_IPV6` and `S3FS`: rexray's mount tests, likewise.
//! - `NFS3_NOLOCK`: the options `nfsstat -m` shows for an NFSv3 Azure Blob volume on AKS
//!   (blob-csi-driver's docs), laid out as mountinfo (per-mount flags before the `-`, the rest
//!   after it).
//! - `CIFS`: util-linux's libmount test data; `CIFS_NOBRL`: the options `mount` shows for an SMB
//!   3.1.1 share mounted with nobrl (an openmediavault report), laid out as mountinfo.
//! - `CEPH`: the options `mount` shows for a CephFS volume in a Kubernetes pod (kernel client),
//!   laid out as mountinfo.
//! - The NFS option variants are the genuine `NFS4` line with the option where the kernel
//!   prints it (`nfs_show_mount_options` in fs/nfs/super.c: `nocto` and `nolock` after `hard`,
//!   `local_lock=` near the end; `nolock` sets local_lock=all); `FUSE_CEPH` is the GlusterFS
//!   line's FUSE layout with ceph-fuse's names.

use std::{
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use super::*;

const THIS_MACHINE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334192k,nr_inodes=3083548,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683584k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683584k
45 27 0:40 / /work/rwx-scratch/g1/m1 rw,relatime - fuse.glusterfs vm:/rwxa rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
46 27 0:41 / /work/rwx-scratch/g1/m2 rw,relatime - fuse.glusterfs vm:/rwxa rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
";

const OVERLAY: &str = "49 27 0:42 / /tmp/tmp.0SS3YFPzmo/merged rw,relatime - overlay overlay rw,lowerdir=/tmp/tmp.0SS3YFPzmo/lower,upperdir=/tmp/tmp.0SS3YFPzmo/upper,workdir=/tmp/tmp.0SS3YFPzmo/work,uuid=on";
const SPACE: &str =
    r"47 27 0:42 / /tmp/tmp.lxgiZOU9Ky/my\040data rw,relatime - tmpfs tmpfs rw,size=1024k";
const BACKSLASH: &str =
    r"48 27 0:43 / /tmp/tmp.lxgiZOU9Ky/back\134slash rw,relatime - tmpfs tmpfs rw,size=1024k";
const SSHFS: &str = "47 27 0:42 / /tmp/tmp.xcxq9pwfOJ/m1 rw,nosuid,nodev,relatime - fuse.sshfs root@127.0.0.1:/tmp/tmp.xcxq9pwfOJ/share rw,user_id=0,group_id=0";
const NFS4: &str = "680 27 0:59 / /home/zyga/nfs rw,relatime shared:478 - nfs4 localhost:/srv/nfs rw,vers=4.2,rsize=524288,wsize=524288,namlen=255,hard,proto=tcp,port=0,timeo=600,retrans=2,sec=sys,clientaddr=127.0.0.1,local_lock=none,addr=127.0.0.1";
const NFS3: &str = "1074 27 0:59 / /home/zyga/nfs rw,relatime shared:342 - nfs localhost:/srv/nfs rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=127.0.0.1,mountvers=3,mountport=54125,mountproto=tcp,local_lock=none,addr=127.0.0.1";
const NFS4_IPV6: &str = "128 27 0:41 / /home/akutz/red rw,relatime shared:74 - nfs4 localhost:/home/akutz rw,vers=4.1,rsize=524288,wsize=524288,namlen=255,hard,proto=tcp6,port=0,timeo=600,retrans=2,sec=sys,clientaddr=::1,local_lock=none,addr=::1";
const NFS3_NOLOCK: &str = "1200 27 0:60 / /var/lib/kubelet/plugins/kubernetes.io/csi/pv/pv-blob-mountoptions/globalmount rw,relatime shared:400 - nfs account.blob.core.windows.net:/account/container rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,nolock,proto=tcp,nconnect=16,port=2048,timeo=600,retrans=2,sec=sys,mountaddr=52.239.171.196,mountvers=3,mountport=2048,mountproto=tcp,local_lock=all,addr=52.239.171.196";
const CIFS: &str = r"47 27 0:38 / /mnt/sounds rw,relatime - cifs //foo.home/bar/ rw,unc=\\foo.home\bar,username=kzak,domain=SRGROUP,uid=0,noforceuid,gid=0,noforcegid,addr=192.168.111.1,posixpaths,serverino,acl,rsize=16384,wsize=57344";
const CIFS_NOBRL: &str = "300 27 0:70 / /mnt/openmediavault rw,relatime shared:200 - cifs //odroidxu4.local/julian rw,vers=3.1.1,cache=strict,username=julas,uid=1000,noforceuid,gid=1000,noforcegid,addr=192.168.0.220,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,nobrl,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1";
const CEPH: &str = "500 27 0:80 / /var/lib/kubelet/pods/e2b5c688-5e7c-11e9-ba95-001a4a160172/volumes/kubernetes.io~cephfs/cephfs rw,relatime shared:300 - ceph 192.168.13.6:6789,192.168.13.7:6789,192.168.13.8:6789:/httpd-index rw,name=admin,secret=<hidden>,acl,wsize=16777216";
const FUSE_CEPH: &str = "501 27 0:81 / /mnt/cephfs rw,relatime - fuse.ceph-fuse ceph-fuse rw,user_id=0,group_id=0,default_permissions,allow_other";
const S3FS: &str = "81 27 0:39 / /var/lib/rexray/volumes/s3fsvol01 rw,nosuid,nodev,relatime shared:31 - fuse.s3fs s3fs rw,user_id=0,group_id=0";

/// This machine's mountinfo followed by `extra`.
fn with(extra: &[&str]) -> String {
    let mut text = THIS_MACHINE.to_owned();
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The decision for `data_dir`, already absolute and resolved, on `mountinfo`.
fn decide(mountinfo: &str, data_dir: &str) -> Result<Verdict, Refusal> {
    judge(
        mountinfo.as_bytes(),
        Path::new(data_dir),
        Path::new(data_dir),
    )
}

fn verdict(kind: fn(PathBuf, String, PathBuf) -> Verdict, d: &str, t: &str, m: &str) -> Verdict {
    kind(PathBuf::from(d), t.to_owned(), PathBuf::from(m))
}

fn local(data_dir: PathBuf, fs_type: String, mount_point: PathBuf) -> Verdict {
    Verdict::Local {
        data_dir,
        fs_type,
        mount_point,
    }
}

fn shared(data_dir: PathBuf, fs_type: String, mount_point: PathBuf) -> Verdict {
    Verdict::Shared {
        data_dir,
        fs_type,
        mount_point,
    }
}

fn unknown(data_dir: PathBuf, fs_type: String, mount_point: PathBuf) -> Verdict {
    Verdict::Unknown {
        data_dir,
        fs_type,
        mount_point,
    }
}

/// The refusal's line for `data_dir`, or a panic naming what was decided instead.
fn refusal(mountinfo: &str, data_dir: &str) -> String {
    match decide(mountinfo, data_dir) {
        Err(refusal) => refusal.to_string(),
        Ok(verdict) => panic!("{data_dir} was allowed: {verdict}"),
    }
}

/// `line` with `option` put after `after` in its super options.
fn with_option(line: &str, after: &str, option: &str) -> String {
    let at = line.find(after).expect(after) + after.len();
    format!("{},{option}{}", &line[..at], &line[at..])
}

// --- local filesystems: allowed silently ---------------------------------------------------------

#[test]
fn this_machines_root_is_ext4_and_local() {
    let v = decide(THIS_MACHINE, "/work/main/files").unwrap();
    assert_eq!(v, verdict(local, "/work/main/files", "ext4", "/"));
    assert_eq!(
        v.to_string(),
        "DATA_DIR /work/main/files is on the ext4 mount at /, a local filesystem"
    );
}

#[test]
fn overlay_and_tmpfs_are_local() {
    let text = with(&[OVERLAY]);
    assert_eq!(
        decide(&text, "/tmp/tmp.0SS3YFPzmo/merged/files"),
        Ok(verdict(
            local,
            "/tmp/tmp.0SS3YFPzmo/merged/files",
            "overlay",
            "/tmp/tmp.0SS3YFPzmo/merged"
        ))
    );
    assert_eq!(
        decide(THIS_MACHINE, "/dev/shm/files"),
        Ok(verdict(local, "/dev/shm/files", "tmpfs", "/dev/shm"))
    );
}

#[test]
fn octal_escapes_in_mount_points_are_undone() {
    let text = with(&[SPACE, BACKSLASH]);
    assert_eq!(
        decide(&text, "/tmp/tmp.lxgiZOU9Ky/my data/files"),
        Ok(verdict(
            local,
            "/tmp/tmp.lxgiZOU9Ky/my data/files",
            "tmpfs",
            "/tmp/tmp.lxgiZOU9Ky/my data"
        ))
    );
    assert_eq!(
        decide(&text, r"/tmp/tmp.lxgiZOU9Ky/back\slash"),
        Ok(verdict(
            local,
            r"/tmp/tmp.lxgiZOU9Ky/back\slash",
            "tmpfs",
            r"/tmp/tmp.lxgiZOU9Ky/back\slash"
        ))
    );
    // The escaped spelling is not a directory of its own.
    assert_eq!(
        decide(&text, r"/tmp/tmp.lxgiZOU9Ky/my\040data/files"),
        Ok(verdict(
            local,
            r"/tmp/tmp.lxgiZOU9Ky/my\040data/files",
            "ext4",
            "/"
        ))
    );
}

#[test]
fn unescape_takes_three_octal_digits_and_leaves_other_backslashes() {
    assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
    assert_eq!(unescape(br"\x41\400\04"), br"\x41\400\04");
    assert_eq!(unescape(br"end\"), br"end\");
}

// --- which mount holds the path ----------------------------------------------------------------

fn holder(mountinfo: &str, path: &str) -> u64 {
    let mounts = parse(mountinfo.as_bytes());
    holding(&mounts, Path::new(path)).expect(path).id
}

#[test]
fn mount_points_match_by_components_not_by_string_prefix() {
    assert_eq!(holder(THIS_MACHINE, "/work/rwx-scratch/g1/m1/files"), 45);
    assert_eq!(holder(THIS_MACHINE, "/work/rwx-scratch/g1/m1"), 45);
    assert_eq!(holder(THIS_MACHINE, "/work/rwx-scratch/g1/m10/files"), 27);
    assert_eq!(holder(THIS_MACHINE, "/work/rwx-scratch/g1"), 27);
}

#[test]
fn a_mount_listed_before_the_root_it_sits_on_is_found_by_its_parent() {
    assert_eq!(holder(THIS_MACHINE, "/proc/self"), 22);
    assert_eq!(holder(THIS_MACHINE, "/sys/kernel"), 23);
}

#[test]
fn of_mounts_stacked_on_one_point_the_topmost_holds_it() {
    assert_eq!(holder(THIS_MACHINE, "/dev/pts/0"), 29);
    assert_eq!(holder(THIS_MACHINE, "/dev/shm/x"), 30);
    // The parents decide, not the order of the lines: the sshfs mount (61) sits on the NFS one
    // (60) although it is listed first.
    let nfs = NFS4.replacen("680 27", "60 27", 1);
    let sshfs_on_top = SSHFS
        .replacen("47 27", "61 60", 1)
        .replace("/tmp/tmp.xcxq9pwfOJ/m1 ", "/home/zyga/nfs ");
    let text = with(&[&sshfs_on_top, &nfs]);
    assert_eq!(holder(&text, "/home/zyga/nfs/files"), 61);
    assert_eq!(
        refusal(&text, "/home/zyga/nfs/files"),
        format!(
            "DATA_DIR /home/zyga/nfs/files is on the fuse.sshfs mount at /home/zyga/nfs: {}; {}",
            NO_SFTP_LOCKS, "put DATA_DIR on a filesystem from the README's \"Several nodes\" table"
        )
    );
}

#[test]
fn a_mount_on_a_directory_above_hides_an_older_one_below() {
    // sshfs at /data/inner, then NFS mounted on /data: /data/inner now is NFS's directory.
    let sshfs = SSHFS.replace("/tmp/tmp.xcxq9pwfOJ/m1 ", "/data/inner ");
    let nfs = NFS4
        .replacen("680 27", "681 27", 1)
        .replace("/home/zyga/nfs ", "/data ");
    let text = with(&[&sshfs, &nfs]);
    assert_eq!(holder(&text, "/data/inner/files"), 681);
    assert_eq!(
        decide(&text, "/data/inner/files"),
        Ok(verdict(shared, "/data/inner/files", "nfs4", "/data"))
    );
}

#[test]
fn without_a_root_mount_the_longest_prefix_holds_it() {
    // In a chroot the mount holding its root is not listed; the rest still is.
    let text = "\
100 99 0:50 / /data rw - nfs4 srv:/x rw,vers=4.2,hard,local_lock=flock
101 99 0:51 / /data/deeper rw - ext4 /dev/sdb rw
102 99 0:52 / /data rw - ext4 /dev/sdc rw
";
    assert_eq!(holder(text, "/data/deeper/x"), 101);
    assert_eq!(holder(text, "/data/x"), 102);
    assert_eq!(
        decide(text, "/elsewhere"),
        Ok(Verdict::Unchecked {
            data_dir: PathBuf::from("/elsewhere"),
            why: "no mount in /proc/self/mountinfo holds /elsewhere".to_owned()
        })
    );
}

#[test]
fn malformed_lines_are_skipped() {
    let text = format!(
        "garbage\n\n1 2 3\n47 27 0:42 / relative rw - fuse.sshfs x rw\n48 27 0:42 / /data rw no separator\n{THIS_MACHINE}"
    );
    assert_eq!(
        decide(&text, "/data/files"),
        Ok(verdict(local, "/data/files", "ext4", "/"))
    );
}

// --- refused -----------------------------------------------------------------------------------

#[test]
fn sshfs_is_refused() {
    let text = with(&[SSHFS]);
    assert_eq!(
        refusal(&text, "/tmp/tmp.xcxq9pwfOJ/m1/files"),
        "DATA_DIR /tmp/tmp.xcxq9pwfOJ/m1/files is on the fuse.sshfs mount at \
         /tmp/tmp.xcxq9pwfOJ/m1: SFTP has no locks, so flock would be local to this mount and \
         two replicas would hand out the same numbers; put DATA_DIR on a filesystem from the \
         README's \"Several nodes\" table"
    );
}

#[test]
fn nfs_with_local_flock_is_refused_and_local_posix_is_not() {
    for (option, refused) in [
        ("local_lock=flock", true),
        ("local_lock=all", true),
        ("local_lock=posix", false),
        ("local_lock=none", false),
    ] {
        let line = NFS4.replace("local_lock=none", option);
        let text = with(&[&line]);
        let decided = decide(&text, "/home/zyga/nfs/files");
        if refused {
            assert_eq!(
                decided.map_err(|r| r.to_string()),
                Err(format!(
                    "DATA_DIR /home/zyga/nfs/files is on the nfs4 mount at /home/zyga/nfs with \
                     {option}: flock would be local to this node and two replicas would hand \
                     out the same numbers; remount without local_lock (or with local_lock=none)"
                ))
            );
        } else {
            assert_eq!(
                decided,
                Ok(verdict(
                    shared,
                    "/home/zyga/nfs/files",
                    "nfs4",
                    "/home/zyga/nfs"
                )),
                "{option}"
            );
        }
    }
}

#[test]
fn nfs_with_nolock_is_refused_naming_nolock() {
    let v4 = with_option(NFS4, "hard", "nolock").replace("local_lock=none", "local_lock=all");
    assert_eq!(
        refusal(&with(&[&v4]), "/home/zyga/nfs/files"),
        "DATA_DIR /home/zyga/nfs/files is on the nfs4 mount at /home/zyga/nfs with nolock: \
         flock would be local to this node and two replicas would hand out the same numbers; \
         remount without nolock"
    );
    let dir = "/var/lib/kubelet/plugins/kubernetes.io/csi/pv/pv-blob-mountoptions/globalmount";
    assert_eq!(
        refusal(&with(&[NFS3_NOLOCK]), dir),
        format!(
            "DATA_DIR {dir} is on the nfs mount at {dir} with nolock: flock would be local to \
             this node and two replicas would hand out the same numbers; remount without nolock"
        )
    );
}

#[test]
fn nfs_with_nocto_is_refused() {
    let line = with_option(NFS4, "hard", "nocto");
    assert_eq!(
        refusal(&with(&[&line]), "/home/zyga/nfs"),
        "DATA_DIR /home/zyga/nfs is on the nfs4 mount at /home/zyga/nfs with nocto: opening a \
         file would not revalidate it, so a replica could read a count another node has \
         already replaced and two replicas would hand out the same numbers; remount without \
         nocto"
    );
}

#[test]
fn options_match_whole_not_as_substrings() {
    // fsc= takes any tag; a tag that spells a refused option is not that option.
    let line = with_option(NFS4, "hard", "fsc=nolock")
        .replace("local_lock=none", "local_lock=none,x=nocto");
    assert_eq!(
        decide(&with(&[&line]), "/home/zyga/nfs/files"),
        Ok(verdict(
            shared,
            "/home/zyga/nfs/files",
            "nfs4",
            "/home/zyga/nfs"
        ))
    );
}

#[test]
fn cifs_with_nobrl_is_refused() {
    assert_eq!(
        refusal(&with(&[CIFS_NOBRL]), "/mnt/openmediavault/files"),
        "DATA_DIR /mnt/openmediavault/files is on the cifs mount at /mnt/openmediavault with \
         nobrl: flock would be local to this node and two replicas would hand out the same \
         numbers; remount without nobrl (on Azure Files, drop it from the StorageClass's \
         mountOptions)"
    );
    let smb3 = CIFS_NOBRL.replace(" - cifs ", " - smb3 ");
    assert_eq!(
        decide(&with(&[&smb3]), "/mnt/openmediavault/files").map_err(|r| r.option),
        Err(Some("nobrl"))
    );
}

#[test]
fn a_refusal_is_one_line_whatever_the_path() {
    let line = SSHFS.replace("/tmp/tmp.xcxq9pwfOJ/m1 ", r"/srv/my\040vol\012ume ");
    let message = refusal(&with(&[&line]), "/srv/my vol\nume/files");
    assert!(
        message.starts_with(
            r"DATA_DIR /srv/my vol\nume/files is on the fuse.sshfs mount at /srv/my vol\nume: "
        ),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

// --- known network filesystems: allowed, logged at info ------------------------------------------

#[test]
fn coherent_network_filesystems_are_allowed_by_name() {
    let kubelet = "/var/lib/kubelet/pods/e2b5c688-5e7c-11e9-ba95-001a4a160172/volumes/kubernetes.io~cephfs/cephfs";
    let cases = [
        (NFS4, "/home/zyga/nfs", "nfs4"),
        (NFS3, "/home/zyga/nfs", "nfs"),
        (NFS4_IPV6, "/home/akutz/red", "nfs4"),
        (CIFS, "/mnt/sounds", "cifs"),
        (CEPH, kubelet, "ceph"),
        (FUSE_CEPH, "/mnt/cephfs", "fuse.ceph-fuse"),
        (THIS_MACHINE, "/work/rwx-scratch/g1/m2", "fuse.glusterfs"),
    ];
    for (line, mount_point, fs_type) in cases {
        let data_dir = format!("{mount_point}/files");
        assert_eq!(
            decide(&with(&[line]), &data_dir),
            Ok(verdict(shared, &data_dir, fs_type, mount_point)),
            "{line}"
        );
    }
    assert_eq!(
        decide(THIS_MACHINE, "/work/rwx-scratch/g1/m1/files")
            .unwrap()
            .to_string(),
        "DATA_DIR /work/rwx-scratch/g1/m1/files is on the fuse.glusterfs mount at \
         /work/rwx-scratch/g1/m1, a network filesystem whose locks reach the server; the \
         README's \"Several nodes\" table lists the options it needs"
    );
}

// --- anything else: allowed with a warning -------------------------------------------------------

#[test]
fn an_unknown_fuse_or_network_filesystem_is_allowed_with_a_warning_naming_it() {
    let s3 = "/var/lib/rexray/volumes/s3fsvol01";
    let v = decide(&with(&[S3FS]), s3).unwrap();
    assert_eq!(v, verdict(unknown, s3, "fuse.s3fs", s3));
    assert_eq!(
        v.to_string(),
        "DATA_DIR /var/lib/rexray/volumes/s3fsvol01 is on the fuse.s3fs mount at \
         /var/lib/rexray/volumes/s3fsvol01, a filesystem not known here: if its locks are \
         local to each node, two replicas on different nodes would hand out the same numbers; \
         see the README's \"Several nodes\" table"
    );
    let virtiofs = "600 27 0:90 / /mnt/shared rw,relatime - virtiofs myfs rw";
    assert_eq!(
        decide(&with(&[virtiofs]), "/mnt/shared/files"),
        Ok(verdict(
            unknown,
            "/mnt/shared/files",
            "virtiofs",
            "/mnt/shared"
        ))
    );
}

#[test]
fn an_unchecked_mount_says_why() {
    let v = Verdict::Unchecked {
        data_dir: PathBuf::from("/data"),
        why: "cannot read /proc/self/mountinfo: No such file or directory (os error 2)".to_owned(),
    };
    assert_eq!(
        v.to_string(),
        "DATA_DIR /data: its mount could not be checked (cannot read /proc/self/mountinfo: No \
         such file or directory (os error 2)); if its locks are local to each node, two \
         replicas on different nodes would hand out the same numbers"
    );
}

// --- resolving DATA_DIR ------------------------------------------------------------------------

#[test]
fn a_volume_that_hangs_is_judged_by_the_path_as_written() {
    fn hangs(_: &Path) -> PathBuf {
        thread::sleep(Duration::from_secs(3600));
        PathBuf::from("/resolved")
    }
    assert_eq!(
        resolve_within(
            Path::new("/data/./a/../files"),
            Duration::from_millis(50),
            hangs
        ),
        Err(PathBuf::from("/data/files"))
    );
    fn answers(_: &Path) -> PathBuf {
        PathBuf::from("/resolved")
    }
    assert_eq!(
        resolve_within(Path::new("/data"), Duration::from_secs(60), answers),
        Ok(PathBuf::from("/resolved"))
    );
}

/// `statfs(2)`'s magic numbers, independent of the table the code uses: a wrong number
/// there fails here. Every filesystem the mount guard calls local must be read through
/// the page cache, and every other one past the client's caches.
const MAGIC: &[(&str, u64)] = &[
    ("ext2", 0xEF53),
    ("ext3", 0xEF53),
    ("ext4", 0xEF53),
    ("xfs", 0x5846_5342),
    ("btrfs", 0x9123_683E),
    ("zfs", 0x2FC1_2FC1),
    ("f2fs", 0xF2F5_2010),
    ("jfs", 0x3153_464A),
    ("reiserfs", 0x5265_4973),
    ("nilfs2", 0x3434),
    ("bcachefs", 0xCA45_1A4E),
    ("tmpfs", 0x0102_1994),
    ("ramfs", 0x8584_58F6),
    ("overlay", 0x794C_7630),
    ("vfat", 0x4D44),
    ("msdos", 0x4D44),
    ("exfat", 0x2011_BAB0),
    ("ntfs3", 0x7366_746E),
    ("hfsplus", 0x482B),
    ("squashfs", 0x7371_7368),
    ("erofs", 0xE0F5_E1E2),
    ("iso9660", 0x9660),
    ("nfs", 0x6969),
    ("nfs4", 0x6969),
    ("cifs", 0xFF53_4D42),
    ("smb3", 0xFE53_4D42),
    ("ceph", 0x00C3_6400),
    ("fuse.glusterfs", 0x6573_5546),
    ("fuse.ceph-fuse", 0x6573_5546),
    ("fuse.sshfs", 0x6573_5546),
    ("9p", 0x0102_1997),
];

#[test]
fn the_mount_guard_and_the_read_path_agree_on_every_filesystem() {
    for &(name, magic) in MAGIC {
        let mountinfo = format!("1 0 8:1 / / rw - {name} /dev/x rw\n");
        let guard = matches!(
            check_in(mountinfo.as_bytes(), Path::new("/")),
            Ok(Verdict::Local { .. })
        );
        assert_eq!(
            (name, guard),
            (name, crate::volume::is_local_magic(magic)),
            "(name, local to the mount guard) vs (name, local to the read path)"
        );
    }
}
