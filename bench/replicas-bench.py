#!/usr/bin/env python3
"""Replicas benchmark: one against two (or more) pingpong replicas on one volume behind HAProxy.

    python3 bench/replicas-bench.py [--runs 3] [--seconds 5] [--connections 64] [--no-build]
                                    [--leader] [--replicas 2,4] [--mounts M1 M2]
    python3 bench/replicas-bench.py --report bench/data/replicas-<stamp>.json

Starts, on loopback with RUST_LOG=warn, two pingpong processes sharing one DATA_DIR (the
flock of SPEC §3 serialises their durable writes; with --leader, leader mode: one keeps the
lock and the other forwards its batches to it) and two HAProxy instances configured as
test/haproxy.sh does (round-robin, GET /readyz checks every second, no retries): one over
replica A alone, one over A and B. In every run, wrk (-t2) measures in turn:
  direct    replica A without HAProxy (what HAProxy itself costs)
  1 replica HAProxy over A
  2 replicas HAProxy over A and B
With --replicas 2,4, also an HAProxy over the first 4 replicas ("4 replicas"). With --mounts,
the replicas alternate over two client mounts of one network volume (test/rwx/: a subdirectory
made through M1 and seen through M2), replica A on M1: the leader design's throughput on the
real filesystem, measured by wrk rather than multinode.py's Python client, which shares the
two cores and records every answer.
and /metrics of both replicas before and after gives, for each measurement, the durable writes
(pingpong_batch_size_count), the mean batch (increments per durable write) and the mean
durable-write time. Prints medians and the release's target (two replicas at least 1.0x one),
and writes every measurement to a data file (default bench/data/replicas-<UTC stamp>.json),
which bench/plots.py and --report read. Needs wrk and haproxy (Debian packages; installed if
missing when run as root). The data directory is a temp dir under BENCH_DIR (default: the
system temp dir).
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from lib import (arguments, build, ensure, free_port, get, load_average,
                 record_arguments, record_header, release_dir, reported, save, start,
                 wait_ready, wrk)


def haproxy_config(frontend, servers, stats):
    lines = [
        "global", "  maxconn 4096", "",
        "defaults", "  mode http", "  timeout connect 2s", "  timeout client 30s",
        "  timeout server 30s", "  timeout check 2s", "  retries 0", "",
        "frontend pingpong", f"  bind 127.0.0.1:{frontend}", "  default_backend pingpong", "",
        "backend pingpong", "  balance roundrobin", "  option httpchk GET /readyz",
        "  http-check expect status 200", "  default-server inter 1s fall 2 rise 1",
    ]
    lines += [f"  server r{i + 1} 127.0.0.1:{p} check" for i, p in enumerate(servers)]
    lines += ["", "listen stats", f"  bind 127.0.0.1:{stats}", "  stats enable", "  stats uri /"]
    return "\n".join(lines) + "\n"


def haproxy_all_up(stats, n):
    _, csv = get(stats, "/;csv")
    states = [row.split(",")[17] for row in csv.splitlines()
              if row.startswith("pingpong,r")]
    return len(states) == n and all(s == "UP" for s in states)


def metrics(port):
    """(durable writes, increments in them, seconds spent in durable writes) so far."""
    _, text = get(port, "/metrics")

    def value(name):
        return float(re.search(rf"^{name} ([\d.e+-]+)$", text, re.M).group(1))

    return (value("pingpong_batch_size_count"), value("pingpong_batch_size_sum"),
            value("pingpong_durable_write_seconds_sum"))


FIELDS = ("rps", "p99_ms", "durable_writes_per_s", "mean_batch", "mean_durable_write_ms")


def print_report(record):
    rows = {}
    for m in sorted(record["measurements"], key=lambda m: m["run"]):
        rows.setdefault(m["target"], []).append(m)
    loads = [la[0] for la in record["load_average"]]
    print(f"{record['date']}, commit {record['commit']}: {record['runs']} runs of"
          f" {record['seconds']} s at {record['connections']} connections, medians;"
          f" wrk -t2 on loopback; load average (1 min) {min(loads):.1f}-{max(loads):.1f}")
    print()
    print("| target | requests/s | ratio to 1 replica | p99 (ms) | durable writes/s"
          " | mean batch | mean durable write (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    one = {m["run"]: m["rps"] for m in rows["1 replica"]}
    ratios = {}
    for name, ms in rows.items():
        med = [statistics.median(m[f] for m in ms) for f in FIELDS]
        ratios[name] = statistics.median(m["rps"] / one[m["run"]] for m in ms)
        print(f"| {name} | {med[0]:.0f} | {ratios[name]:.2f}x | {med[1]:.2f} | {med[2]:.0f}"
              f" | {med[3]:.1f} | {med[4]:.2f} |")
    if record.get("mounts"):
        print()
        print(f"replicas alternating over {record['mounts'][0]} and {record['mounts'][1]}")
        print()
        print("| target (issue 23) | figure | |")
        print("|---|---|---|")
        for name in (n for n in ratios if n.endswith(" replicas")):
            print(f"| {name} at least 0.8x one | {ratios[name]:.2f}x |"
                  f" {'met' if ratios[name] >= 0.8 else '**not met**'} |")
        return
    r = ratios["2 replicas"]
    print()
    print("| target (issue 17) | figure | |")
    print("|---|---|---|")
    print(f"| two replicas at least 1.0x one replica | {r:.2f}x |"
          f" {'met' if r >= 1.0 else '**not met**'} |")


def main():
    parser = arguments(__doc__, runs=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bin-dir", default=release_dir())
    parser.add_argument("--leader", action="store_true",
                        help="leader mode (ADVERTISE_ADDR=127.0.0.1, an INTERNAL_PORT each): "
                             "one replica writes, the other forwards its batches to it")
    parser.add_argument("--replicas", default="2",
                        help="the replica counts behind HAProxy besides 1, e.g. 2,4")
    parser.add_argument("--mounts", nargs=2, metavar=("M1", "M2"),
                        help="two client mounts of one volume: the replicas alternate over them")
    record_arguments(parser, "replicas")
    args = parser.parse_args()
    if reported(args, print_report):
        return

    ensure("wrk")
    ensure("haproxy")
    if not args.no_build:
        build("--bin", "pingpong")
    counts = sorted({int(c) for c in args.replicas.split(",")} - {1})
    if args.mounts:
        data = tempfile.mkdtemp(prefix="pingpong-replicas-", dir=args.mounts[0])
        dirs = [data, os.path.join(args.mounts[1], os.path.basename(data))]
        if not os.path.isdir(dirs[1]):
            sys.exit(f"{dirs[1]}: not there; {args.mounts[1]} is not a mount of the same volume")
    else:
        base = os.environ.get("BENCH_DIR", tempfile.gettempdir())
        data = tempfile.mkdtemp(prefix="pingpong-replicas-", dir=base)
        dirs = [data, data]
    procs = []
    record = {
        **record_header("replicas", "replicas-bench.py", {"cpus": os.cpu_count()}),
        "runs": args.runs,
        "seconds": args.seconds,
        "connections": args.connections,
        "leader_mode": args.leader,
        "replica_counts": [1, *counts],
        "mounts": args.mounts,
        "load_average": [],
        "measurements": [],
    }
    try:
        ports = [free_port() for _ in range(max(counts))]
        for i, port in enumerate(ports):
            env = ({"ADVERTISE_ADDR": "127.0.0.1", "INTERNAL_PORT": str(free_port()),
                    "LISTEN_ADDRESS": "127.0.0.1"} if args.leader else None)
            procs.append(start(os.path.join(args.bin_dir, "pingpong"), port, dirs[i % 2],
                               env=env))
        for port in ports:
            wait_ready(port)
        a = ports[0]
        fronts = {}
        for name, servers in (("1 replica", [a]),
                              *((f"{n} replicas", ports[:n]) for n in counts)):
            front, stats = free_port(), free_port()
            cfg = os.path.join(data, f"haproxy-{len(servers)}.cfg")
            with open(cfg, "w") as f:
                f.write(haproxy_config(front, servers, stats))
            procs.append(subprocess.Popen(["haproxy", "-db", "-f", cfg],
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            end = time.time() + 30
            while True:
                try:
                    if haproxy_all_up(stats, len(servers)):
                        break
                except OSError:
                    pass
                if time.time() > end:
                    sys.exit(f"HAProxy {cfg}: not all servers UP within 30 s")
                time.sleep(0.1)
            fronts[name] = front
        targets = {"direct": a, **fronts}

        for run in range(args.runs):
            record["load_average"].append(load_average())
            for name, port in targets.items():
                before = [metrics(p) for p in ports]
                load = wrk(port, "/pingpong", args.connections, args.seconds, latency=True,
                           strict=True)
                rps, p99 = load["rps"], load["p99_ms"]
                after = [metrics(p) for p in ports]
                writes = sum(x[0] - y[0] for x, y in zip(after, before))
                incs = sum(x[1] - y[1] for x, y in zip(after, before))
                secs = sum(x[2] - y[2] for x, y in zip(after, before))
                values = (rps, p99, writes / args.seconds, incs / writes, secs / writes * 1e3)
                record["measurements"].append(dict(zip(FIELDS, values), run=run, target=name))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
        record["load_average"].append(load_average())
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)
    save(record, args.out, print_report)


if __name__ == "__main__":
    main()
