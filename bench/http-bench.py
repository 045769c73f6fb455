#!/usr/bin/env python3
"""HTTP benchmark: the services against the HTTP ceiling, side by side in one run.

    python3 bench/http-bench.py [--runs 5] [--seconds 5] [--connections 1,64]

Builds the release binaries, starts on loopback with RUST_LOG=warn (no per-request log line, the
same for every server):
  ceiling   service-kit/examples/ceiling.rs: the same HTTP stack answering a constant, no I/O
  pingpong  durable increments through group commit
  one-write pingpong/examples/one_write_per_request.rs: one durable write per request
  reader    log-reader serving output.log (log-writer running with LOG_INTERVAL=1s)
then, for each run and each connection count, runs wrk against each in turn (so a noisy
neighbour hurts all of them alike) and prints medians, the ratio of each median to the
ceiling's, and peak RSS (VmHWM) of each server. The data directory is a temp dir under
BENCH_DIR (default: the system temp dir); put it on the disk you care about.
Needs wrk (Debian package `wrk`; installed if missing when run as root).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")


def ensure_wrk():
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is missing: apt-get install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "pingpong", "-p", "log-output",
         "--bins", "--example", "one_write_per_request"],
        cwd=ROOT, check=True)
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "service-kit", "--example", "ceiling"],
        cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port, data_dir, **env):
    full_env = dict(os.environ, PORT=str(port), DATA_DIR=data_dir, RUST_LOG="warn", **env)
    return subprocess.Popen([binary], env=full_env, stdout=subprocess.DEVNULL)


def wait_ready(port, path, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"port {port}{path} never answered 200")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def cpu_seconds(proc):
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, path, connections, seconds):
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"errors under load on {path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, float(value) * UNITS[unit], requests


def peak_rss_mib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        kib = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    return kib / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="1,64")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    connection_counts = [int(c) for c in args.connections.split(",")]

    ensure_wrk()
    if not args.no_build:
        build()
    base = os.environ.get("BENCH_DIR", tempfile.gettempdir())
    data = tempfile.mkdtemp(prefix="pingpong-bench-", dir=base)
    servers = {}
    try:
        targets = {
            "ceiling": (os.path.join(RELEASE, "examples", "ceiling"), "/pingpong", {}),
            "pingpong": (os.path.join(RELEASE, "pingpong"), "/pingpong", {}),
            "one-write": (os.path.join(RELEASE, "examples", "one_write_per_request"),
                          "/pingpong", {}),
            "reader": (os.path.join(RELEASE, "log-reader"), "/", {}),
        }
        ports = {}
        for name, (binary, path, env) in targets.items():
            ports[name] = free_port()
            # one-write gets a volume of its own so the counters do not mix.
            d = os.path.join(data, "one-write") if name == "one-write" else data
            servers[name] = start(binary, ports[name], d, **env)
        servers["log-writer"] = start(os.path.join(RELEASE, "log-writer"), 0, data,
                                      LOG_INTERVAL="1s")
        for name, (_, path, _) in targets.items():
            wait_ready(ports[name], path)

        results = {(n, c): [] for n in targets for c in connection_counts}
        for run in range(args.runs):
            for c in connection_counts:
                for name, (_, path, _) in targets.items():
                    before = cpu_seconds(servers[name])
                    rps, p99, requests = wrk(ports[name], path, c, args.seconds)
                    cpu_us = (cpu_seconds(servers[name]) - before) / requests * 1e6
                    results[(name, c)].append((rps, p99, cpu_us))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

        print(f"{args.runs} runs of {args.seconds} s, medians; wrk on loopback; data in {data}")
        print()
        print("| server | connections | requests/s | ratio to ceiling | p99 latency (ms)"
              " | server CPU per request (µs) |")
        print("|---|---:|---:|---:|---:|---:|")
        for c in connection_counts:
            ceiling = [rps for rps, _, _ in results[("ceiling", c)]]
            for name in targets:
                rows = results[(name, c)]
                rps = statistics.median(r for r, _, _ in rows)
                ratio = statistics.median(r / cl for (r, _, _), cl in zip(rows, ceiling))
                p99 = statistics.median(p for _, p, _ in rows)
                cpu = statistics.median(u for _, _, u in rows)
                print(f"| {name} | {c} | {rps:.0f} | {ratio:.2f}x | {p99:.2f} | {cpu:.1f} |")
        print()
        print("| server | peak RSS (MiB) |")
        print("|---|---:|")
        for name in list(targets) + ["log-writer"]:
            print(f"| {name} | {peak_rss_mib(servers[name]):.1f} |")
    finally:
        for proc in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc in servers.values():
            proc.wait(timeout=15)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
