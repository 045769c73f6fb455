#!/usr/bin/env bash
# Offline image build: compiles the three binaries statically on this host, then packs them with
# the Dockerfile's own final stages (`--build-arg BINARIES=prebuilt`), so no base image is
# pulled. This is what CI uses; users with a registry can run `docker build --target ...`.
#
#   deploy/build-images.sh               # podman, tag 0.1.0
#   ENGINE=docker deploy/build-images.sh # the same with docker
#   TAG=0.2.0 deploy/build-images.sh
#
# Prints the two image references and their sizes.
set -euo pipefail

readonly TAG="${TAG:-0.1.0}"
readonly ENGINE="${ENGINE:-podman}"
readonly TARGET="${TARGET:-x86_64-unknown-linux-gnu}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly repo

if [[ "$ENGINE" == podman && -z "${CONTAINERS_CONF:-}" ]]; then
  export CONTAINERS_CONF="$repo/deploy/podman/containers.conf"
fi

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

# --layers=false: no intermediate images are left behind for each stage.
layers=()
if [[ "$ENGINE" == podman ]]; then
  layers=(--layers=false)
fi

step=2
for image in pingpong log-output; do
  echo "==> $step. $ENGINE build --target $image -t $image:$TAG"
  old_id="$("$ENGINE" image inspect "$image:$TAG" --format '{{.Id}}' 2>/dev/null || true)"
  "$ENGINE" build "${layers[@]}" \
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
