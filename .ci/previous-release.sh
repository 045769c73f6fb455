# shellcheck shell=bash
# A previous release's pingpong: by default test_support::PREVIOUS_RELEASE, for the local
# engine's rolling update down to it and back (.ci/engine.sh) and for the hazard scenario on
# several nodes, which is about its recipe (.ci/rwx.sh); or the COMMIT given, e.g. fe02056 (turns
# at the lock) beside leader-mode replicas in .ci/rwx.sh's rolling update. Built by pingpong's
# rolling_update test during `cargo test` into target/previous-release/<commit>/, else here, the
# same way (test_support::binary_at). Sourced from the repository's root; prints the bin directory.
#
#   previous_release_bin_dir [COMMIT]
previous_release_bin_dir() {
  local commit="${1:-}" home
  if [[ -z "$commit" ]]; then
    commit="$(sed -n 's/^pub const PREVIOUS_RELEASE: &str = "\(.*\)";$/\1/p' test-support/src/lib.rs)"
    [[ -n "$commit" ]] || { echo "no PREVIOUS_RELEASE in test-support/src/lib.rs" >&2; return 1; }
  fi
  home="${CARGO_TARGET_DIR:-$PWD/target}/previous-release/$commit"
  if [[ ! -x "$home/target/debug/pingpong" ]]; then
    rm -rf "$home/src" && mkdir -p "$home/src"
    git archive "$commit" | tar -x -C "$home/src"
    (cd "$home/src" && CARGO_TARGET_DIR="$home/target" cargo build --locked --quiet -p pingpong --bin pingpong) >&2
  fi
  echo "$home/target/debug"
}
