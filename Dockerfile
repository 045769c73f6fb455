# One Dockerfile, two images, two ways to get the binaries.
#
#   docker buildx build --load --target pingpong   -t pingpong:0.1.0   .
#   docker buildx build --load --target log-output -t log-output:0.1.0 .
#
# Needs BuildKit (buildx): it runs only the stages the target needs, where the legacy builder
# would run every stage and fail on `prebuilt`. No `# syntax=` line: the built-in frontend
# covers everything here, so nothing is fetched from a registry for it. `--load` puts the image
# into `docker image ls` whatever the builder's driver.
#
# By default the binaries are compiled in the `builder` stage (needs the rust image from a
# registry). Offline, deploy/build-images.sh compiles them on the host and passes
# `--build-arg BINARIES=prebuilt`, so the same final stages pack the host's binaries instead;
# the builder stage is then never run.
#
# With podman/buildah pass `--build-arg BINARIES=builder` explicitly: buildah decides which
# stages to skip before it applies ARG defaults, so it skips `builder` and then cannot find it.
#
# Both images are FROM scratch: one static binary each (two for log-output), no shell, no libc,
# a numeric non-root user. Kubernetes can check `runAsNonRoot` only against a numeric UID.

# `builder` or `prebuilt`: which stage provides /out/{pingpong,log-writer,log-reader}.
ARG BINARIES=builder

# rust:1.95 pinned by the digest of its multi-platform index (amd64 and arm64 alike), so that a
# rebuild of the tag upstream changes nothing here until the digest is bumped on purpose
# (Dependabot's docker updates propose it; `FROM` stays literal so that it can). scratch is no
# image and has no digest.
FROM rust:1.95@sha256:a9cfb755b33f5bb872610cbdb25da61f527416b28fc9c052bbce4bef93e7799a AS builder
WORKDIR /src
COPY . .
# The commit build_info reports: .git is not copied in, so without
# `--build-arg BUILD_COMMIT="$(git rev-parse HEAD)"` it is `unknown`.
ARG BUILD_COMMIT=
# crt-static links glibc statically (static-pie), so the binaries run on scratch. The target is
# named explicitly because RUSTFLAGS then does not reach build scripts and proc macros.
RUN target="$(rustc -vV | sed -n 's/^host: //p')" \
 && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" \
      --bin pingpong --bin log-writer --bin log-reader \
 && mkdir -p /out \
 && cp "target/$target/release/pingpong" \
       "target/$target/release/log-writer" \
       "target/$target/release/log-reader" /out/

# Binaries built on the host (deploy/build-images.sh passes PREBUILT_DIR for the host's
# architecture); .dockerignore lets only these three out of target/, for x86_64 and aarch64.
FROM scratch AS prebuilt
ARG PREBUILT_DIR=target/x86_64-unknown-linux-gnu/release
COPY ${PREBUILT_DIR}/pingpong ${PREBUILT_DIR}/log-writer ${PREBUILT_DIR}/log-reader /out/

# The extra instruction gives this stage an image of its own: podman 4.3.1 with --layers=false
# otherwise deletes the same intermediate image twice and fails the build.
FROM ${BINARIES} AS binaries
WORKDIR /out

# What both images share. DATA_DIR matches the manifests' mountPath (SPEC §2). The data
# directory is created after USER, so it belongs to 10001: a fresh named volume mounted there
# by docker or podman takes that owner. On Kubernetes fsGroup (or the PV's owner) does that.
FROM scratch AS runtime
WORKDIR /usr/src/app
USER 10001:10001
WORKDIR /usr/src/app/files
WORKDIR /usr/src/app
ENV PATH=/usr/local/bin \
    DATA_DIR=/usr/src/app/files \
    RUST_LOG=info
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

FROM runtime AS log-output
COPY --from=binaries /out/log-writer /out/log-reader /usr/local/bin/
ENV PORT=3001
EXPOSE 3001
LABEL org.opencontainers.image.title="log-output" \
      org.opencontainers.image.description="log-writer and log-reader; pick one with the container's command"
# The Deployment chooses the binary with `command`; the default serves the log.
CMD ["/usr/local/bin/log-reader"]

FROM runtime AS pingpong
COPY --from=binaries /out/pingpong /usr/local/bin/
ENV PORT=3000
EXPOSE 3000
LABEL org.opencontainers.image.title="pingpong" \
      org.opencontainers.image.description="GET /pingpong answers pong N from a durable counter"
ENTRYPOINT ["/usr/local/bin/pingpong"]
