#!/usr/bin/env bash
# Offline image build: compiles the three binaries statically on this host, then packs them with
# the Dockerfile's own final stages (`--build-arg BINARIES=prebuilt`), so no base image is
# pulled. This is what CI uses; users with a registry can run `docker buildx build --target ...`.
#
#   deploy/build-images.sh               # podman, tag 0.1.0
#   ENGINE=docker deploy/build-images.sh # the same with docker (needs buildx, i.e. BuildKit)
#   TAG=0.2.0 deploy/build-images.sh
#   deploy/build-images.sh --check       # only check that this host can do it, build nothing
#
# The binaries are Linux binaries built by this host's cargo, so the host must be Linux. The
# Rust target and the image platform follow its architecture: x86_64 gives
# x86_64-unknown-linux-gnu and linux/amd64, aarch64 gives aarch64-unknown-linux-gnu and
# linux/arm64; the engine must run the same architecture. TARGET overrides the Rust target.
#
# Prints the two image references and their sizes.
set -euo pipefail
# portable: bash 3.2 and BSD userland (macOS)

readonly TAG="${TAG:-0.1.0}"
readonly ENGINE="${ENGINE:-podman}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo
# shellcheck source=deploy/lib.sh
. "$repo/deploy/lib.sh"

one_option --check "${BASH_SOURCE[0]}" "$@"
check_only="$option"

die() {
  echo "build-images.sh: $*" >&2
  exit 1
}

# An architecture as uname -m, `docker info` or `podman info` name it, in the images' terms.
image_arch() {
  case "$1" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) echo "$1" ;;
  esac
}

# --- what this host can build -------------------------------------------------------------

case "$ENGINE" in
  docker | podman) ;;
  *) die "ENGINE must be docker or podman, not '$ENGINE'" ;;
esac
command -v "$ENGINE" >/dev/null || die "$ENGINE is required but not installed"
command -v cargo >/dev/null ||
  die "cargo is required: it builds the binaries this script packs (install Rust 1.89 or newer, https://rustup.rs)"

if [[ -z "${TARGET:-}" ]]; then
  host_os="$(uname -s)"
  [[ "$host_os" == Linux ]] ||
    die "the images pack Linux binaries built by this host's cargo, so this needs a Linux host, not $host_os. On macOS use deploy/k3d-up.sh without --prebuilt: the binaries are then compiled inside Docker"
  case "$(image_arch "$(uname -m)")" in
    amd64) TARGET=x86_64-unknown-linux-gnu ;;
    arm64) TARGET=aarch64-unknown-linux-gnu ;;
    *) die "no prebuilt images for this host's architecture $(uname -m) (x86_64 and aarch64 only). Use deploy/k3d-up.sh without --prebuilt" ;;
  esac
fi
case "$TARGET" in
  x86_64-*-linux-*) readonly PLATFORM=linux/amd64 ;;
  aarch64-*-linux-*) readonly PLATFORM=linux/arm64 ;;
  *) die "TARGET=$TARGET: images are made only for x86_64 and aarch64 Linux targets" ;;
esac
readonly TARGET

# The engine runs the image: it must be of the binaries' architecture.
if [[ "$ENGINE" == docker ]]; then
  docker buildx version >/dev/null 2>&1 ||
    die "docker buildx (BuildKit) is required: the legacy builder runs every stage of the Dockerfile and fails. Install the buildx plugin (Docker Desktop has it; on Linux the docker-buildx-plugin package from Docker's repository)"
  engine_arch="$(docker info --format '{{.Architecture}}')" || die "docker info failed: is the Docker engine running?"
else
  if [[ -z "${CONTAINERS_CONF:-}" ]]; then
    export CONTAINERS_CONF="$repo/deploy/podman/containers.conf"
  fi
  engine_arch="$(podman info --format '{{.Host.Arch}}')" || die "podman info failed"
fi
[[ "$(image_arch "$engine_arch")" == "${PLATFORM#linux/}" ]] ||
  die "the $ENGINE engine runs $engine_arch containers, but the binaries are built for $TARGET ($PLATFORM)"

if [[ "$check_only" == true ]]; then
  echo "build-images.sh: can build $PLATFORM images ($TARGET) with $ENGINE"
  exit 0
fi

# --- build --------------------------------------------------------------------------------

echo "==> 1. cargo build --release --target $TARGET (static)"
(
  cd "$repo"
  RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$TARGET" \
    --bin pingpong --bin log-writer --bin log-reader
)
bindir="target/$TARGET/release"
if command -v file >/dev/null; then
  (cd "$repo/$bindir" && file pingpong log-writer log-reader)
fi

if [[ "$ENGINE" == docker ]]; then
  # --load: with a builder whose driver is not `docker` (docker-container, kubernetes) the
  # image otherwise stays in the builder's cache and never reaches `docker image ls`.
  build=(docker buildx build --load --platform "$PLATFORM")
else
  # --layers=false: no intermediate images are left behind for each stage.
  build=(podman build --layers=false --platform "$PLATFORM")
fi

step=2
for image in pingpong log-output; do
  echo "==> $step. ${build[*]} --target $image -t $image:$TAG"
  old_id="$("$ENGINE" image inspect "$image:$TAG" --format '{{.Id}}' 2>/dev/null || true)"
  "${build[@]}" \
    --build-arg BINARIES=prebuilt \
    --build-arg PREBUILT_DIR="$bindir" \
    --build-arg VERSION="$TAG" \
    --target "$image" \
    --tag "$image:$TAG" \
    --file "$repo/Dockerfile" \
    --quiet \
    "$repo"
  # A rebuild moves the tag; drop the image it left untagged so repeated runs leave no litter.
  new_id="$("$ENGINE" image inspect "$image:$TAG" --format '{{.Id}}')"
  if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
    "$ENGINE" image rm "$old_id" >/dev/null 2>&1 || true
  fi
  step=$((step + 1))
done

for image in pingpong log-output; do
  size="$("$ENGINE" image inspect "$image:$TAG" --format '{{.Size}}')"
  echo "$image:$TAG $size bytes"
done
