#!/usr/bin/env bash
# The release workflow's first step (.github/workflows/release.yml): refuses to publish a tag
# that the overlay deploy/published would not deploy.
#
#   .ci/release-guard.sh TAG IMAGE_PREFIX      e.g. v0.1.0 ghcr.io/owner/repo
#
# Passes when TAG is `v` + the workspace's version (Cargo.toml [workspace.package]) and
# `kubectl kustomize deploy/published` names exactly IMAGE_PREFIX/pingpong:VERSION and
# IMAGE_PREFIX/log-output:VERSION, so that `kubectl apply -k <repo>/deploy/published?ref=TAG`
# pulls what this run pushes. Prints `version=VERSION` (appended to $GITHUB_OUTPUT when set).
# .ci/dist-check.sh runs it on the checkout, with good and bad arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if (($# != 2)); then
  echo "usage: $0 TAG IMAGE_PREFIX" >&2
  exit 2
fi
tag="$1" prefix="$2"

version="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)"
if [[ -z "$version" ]]; then
  echo "release-guard: no version in Cargo.toml's [workspace.package]" >&2
  exit 1
fi
if [[ "$tag" != "v$version" ]]; then
  echo "release-guard: the tag is $tag but the workspace's version is $version: tag v$version, or bump Cargo.toml, manifests/ and deploy/published first" >&2
  exit 1
fi
if [[ "$prefix" != "${prefix,,}" ]]; then
  echo "release-guard: image prefix $prefix is not lower case (registries refuse it)" >&2
  exit 1
fi

want="$(printf '%s\n' "$prefix/log-output:$version" "$prefix/pingpong:$version")"
got="$(kubectl kustomize deploy/published | sed -n 's/^ *image: *//p' | sort -u)"
if [[ "$got" != "$want" ]]; then
  echo "release-guard: deploy/published names" >&2
  while read -r line; do echo "  $line"; done <<<"$got" >&2
  echo "but this release pushes" >&2
  while read -r line; do echo "  $line"; done <<<"$want" >&2
  echo "set newName and newTag in deploy/published/kustomization.yaml" >&2
  exit 1
fi

echo "version=$version"
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
  echo "version=$version" >>"$GITHUB_OUTPUT"
fi
