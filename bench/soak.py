#!/usr/bin/env python3
"""Soak under attack: pingpong at 64 connections for 10 minutes while a background of
idle and slowloris connections tries to hold every slot.

    python3 bench/soak.py [--minutes 10] [--connections 64] [--idle 600] [--slow 50]

Builds the release pingpong, starts it on loopback with RUST_LOG=warn and the container's
open-file limit (nofile=1024, as podman runs it), then at once:
  idle   --idle connections that never send a byte; each one the server closes (evicted, or at
         the header timeout) is opened again at once, so the flood never lets up
  slow   --slow slowloris connections sending one header byte a second, never ending the head;
         reopened as soon as the server closes them
  load   wrk -c --connections on GET /pingpong, one 60 s run per minute
and prints, per minute: requests/s, wrk errors (non-2xx and socket errors: must be 0), the
server's RSS and open descriptors, and how many idle and slow connections the server closed.
RSS and descriptors must stay flat. The data directory is a temp dir under BENCH_DIR
(default: the system temp dir); SOAK_RUST_LOG overrides the server's RUST_LOG=warn. Needs wrk
(Debian package `wrk`).
"""

import argparse
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

from lib import ROOT, build, free_port, start, wait_ready, wrk

PINGPONG = os.path.join(ROOT, "target", "release", "pingpong")
CONTAINER_NOFILE = 1024


def container_limits():
    resource.setrlimit(resource.RLIMIT_NOFILE, (CONTAINER_NOFILE, CONTAINER_NOFILE))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Attackers:
    """Keeps `idle` silent and `slow` slowloris connections open, reopening each one the server
    closes, and counts the closes."""

    HEAD = b"GET /pingpong HTTP/1.1\r\nHost: localhost\r\nX-Slow: "

    def __init__(self, port, idle, slow):
        self.port, self.idle, self.slow = port, idle, slow
        self.closed = {"idle": 0, "slow": 0}
        self.stop = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.slow_sent = {}

    def open(self, kind):
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.setblocking(False)
                self.selector.register(s, selectors.EVENT_READ, kind)
                if kind == "slow":
                    self.slow_sent[s] = 0
                return
            except OSError:
                time.sleep(0.05)

    def close(self, s, kind):
        self.selector.unregister(s)
        self.slow_sent.pop(s, None)
        s.close()
        self.closed[kind] += 1
        self.open(kind)

    def run(self):
        for _ in range(self.idle):
            self.open("idle")
        for _ in range(self.slow):
            self.open("slow")
        next_byte = time.time() + 1
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.close(key.fileobj, key.data)
            if time.time() >= next_byte:
                next_byte += 1
                for s in list(self.slow_sent):
                    n = self.slow_sent[s]
                    byte = self.HEAD[n:n + 1] or b"a"
                    try:
                        s.send(byte)
                        self.slow_sent[s] = n + 1
                    except OSError:
                        self.close(s, "slow")
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--idle", type=int, default=600)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--seconds-per-minute", type=int, default=60,
                        help="shorter for a quick trial of the tool itself")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not args.no_build:
        build("-p", "pingpong", "--bin", "pingpong")

    data = tempfile.mkdtemp(prefix="pingpong-soak-",
                            dir=os.environ.get("BENCH_DIR", tempfile.gettempdir()))
    port = free_port()
    # A file, not a pipe: a chatty server must never block on a full pipe.
    log = tempfile.TemporaryFile(dir=data)
    server = start(PINGPONG, port, data,
                   env={"RUST_LOG": os.environ.get("SOAK_RUST_LOG", "warn")},
                   stderr=log, preexec_fn=container_limits)
    attackers = Attackers(port, args.idle, args.slow)
    background = threading.Thread(target=attackers.run, daemon=True)
    try:
        wait_ready(port, failure="pingpong never became ready")
        start_rss, start_fds = rss_mib(server.pid), open_fds(server.pid)
        background.start()
        time.sleep(2)
        print(f"pingpong nofile={CONTAINER_NOFILE}; wrk -t2 -c{args.connections} on /pingpong; "
              f"background {args.idle} idle + {args.slow} slowloris connections, reopened as "
              f"the server closes them; data in {data}")
        print(f"before the attack: RSS {start_rss:.1f} MiB, {start_fds} open descriptors")
        print()
        print("| minute | requests/s | failed (non-2xx + socket errors) | RSS (MiB) "
              "| open fds | idle closed by server | slow closed by server |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        total_requests = total_failed = 0
        for minute in range(1, args.minutes + 1):
            load = wrk(port, "/pingpong", args.connections, args.seconds_per_minute, threads=2)
            requests, rps, non2xx, socket_errors, out = (
                load[k] for k in ("requests", "rps", "non2xx", "socket_errors", "out"))
            total_requests += requests
            total_failed += non2xx + socket_errors
            if non2xx + socket_errors:
                print(out, file=sys.stderr)
            print(f"| {minute} | {rps:.0f} | {non2xx + socket_errors} | "
                  f"{rss_mib(server.pid):.1f} | {open_fds(server.pid)} | "
                  f"{attackers.closed['idle']} | {attackers.closed['slow']} |", flush=True)
        attackers.stop.set()
        background.join(timeout=10)
        # The attack is over: the server closes what is left within the header timeout.
        deadline = time.time() + 20
        while open_fds(server.pid) != start_fds and time.time() < deadline:
            time.sleep(0.1)
        counter = open(os.path.join(data, "pingpong_counter.txt")).read().strip()
        print()
        print(f"after the attack: RSS {rss_mib(server.pid):.1f} MiB, "
              f"{open_fds(server.pid)} open descriptors (before: {start_fds}); "
              f"{total_requests} requests, {total_failed} failed; counter file {counter}")
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=20)
        log.seek(0)
        warnings = log.read().decode(errors="replace").splitlines()
        print(f"pingpong exited {status}; {len(warnings)} warning lines, e.g. "
              f"{warnings[:3]}")
    finally:
        attackers.stop.set()
        if server.poll() is None:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
