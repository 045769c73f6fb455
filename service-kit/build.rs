//! Sets `BUILD_COMMIT`, the commit `build_info` reports: the variable of that name when it is set
//! at build time (a container build, where `.git` is not copied in), else `git rev-parse HEAD`
//! when this crate sits in a git checkout of its own workspace, else `unknown` (a source
//! archive, or no git). A source archive unpacked inside some other repository must not report
//! that repository's commit, so the checkout's top level has to be this workspace's root.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    println!("cargo:rerun-if-env-changed=BUILD_COMMIT");
    let commit = env::var("BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let crate_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let workspace = crate_dir.parent()?.canonicalize().ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&crate_dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).ok())
            .flatten()
            .map(|s| s.trim().to_owned())
    };
    let top = Path::new(&git(&["rev-parse", "--show-toplevel"])?)
        .canonicalize()
        .ok()?;
    if top != workspace {
        return None;
    }
    let commit = git(&["rev-parse", "HEAD"])?;
    if commit.is_empty() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Built again when HEAD moves: a commit, a checkout, a branch's ref packed.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        // A path that does not exist would make cargo run this script at every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &path])
            .map(|path| crate_dir.join(path))
            .filter(|path| path.exists())
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
