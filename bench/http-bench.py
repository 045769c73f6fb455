#!/usr/bin/env python3
"""HTTP benchmark: pingpong against its yardsticks, side by side in every run.

    python3 bench/http-bench.py [--runs 5] [--seconds 5] [--connections 1,64 | --sweep]
    python3 bench/http-bench.py --report bench/data/http-<stamp>.json   # tables of a recorded run

Builds the release binaries (CARGO_TARGET_DIR honoured; --bin-dir to use others) and starts,
all at once on loopback with RUST_LOG=warn (no per-request log line, the same for every one):
  bare           yardsticks/examples/bare.rs: axum::serve answering a constant, nothing else
  ceiling        yardsticks/examples/ceiling.rs: service-kit's whole stack, a constant answer
  pingpong       the service: durable increments through group commit
  one-write      yardsticks/examples/one_write_per_request.rs: one locked durable write a request
  careless       yardsticks/examples/careless.rs: count in memory, file rewritten, no fsync, no lock
  durable-floor  yardsticks/examples/durable_floor.rs: one pwrite + fdatasync a request, measured
                 at 1 connection only (the least a durable answer can cost)
  reader         log-reader serving output.log (log-writer running, LOG_INTERVAL=1s)
Every server but reader has a data directory of its own (reader and log-writer share
pingpong's), all under one temp dir in BENCH_DIR (default: the system temp dir): put it on the
disk you care about. Then, for each run and each connection count, wrk measures each server in
turn (the order rotates from run to run), so a noisy neighbour hurts all of them alike. Each
run also times 1000 bare `pwrite` + `fdatasync` of a 32-byte record in the data directory.

Prints one Markdown table (medians over runs; ratios are medians of the per-run ratios, i.e.
measured side by side) and the release's throughput targets, met or not. Writes every measurement to a
data file (default bench/data/http-<UTC stamp>.json), which bench/plots.py and --report read.
Needs wrk (Debian package; installed with apt-get if missing when run as root).
"""

import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from lib import (arguments, build, cpu_seconds, ensure, free_port, load_average,
                 record_arguments, record_header, release_dir, reported, save, start,
                 wait_ready, wrk)

SWEEP = [1, 4, 16, 64, 256]

# name: (binary under the release dir, path, the only connection counts it runs at or None)
SERVERS = {
    "bare": ("examples/bare", "/pingpong", None),
    "ceiling": ("examples/ceiling", "/pingpong", None),
    "pingpong": ("pingpong", "/pingpong", None),
    # One replica in leader mode (SPEC §2 ADVERTISE_ADDR), as deploy/rwx runs it: it leads, with
    # nobody to forward to; its heartbeats and courtesy turns are what it costs.
    "pingpong-leader": ("pingpong", "/pingpong", None),
    # --before DIR: the pingpong binary of an earlier commit, side by side.
    "pingpong-before": ("pingpong", "/pingpong", None),
    "one-write": ("examples/one_write_per_request", "/pingpong", None),
    "careless": ("examples/careless", "/pingpong", None),
    # One write per request with no batching: above one connection it measures nothing
    # pingpong could be held to.
    "durable-floor": ("examples/durable_floor", "/pingpong", {1}),
    "reader": ("log-reader", "/", None),
}
# The servers that count, for which "ratio to careless" means something.
COUNTERS = ("pingpong", "pingpong-leader", "pingpong-before", "one-write", "careless",
            "durable-floor")
# The environment of a server beyond PORT, DATA_DIR and RUST_LOG.
SERVER_ENV = {
    "pingpong-leader": {"ADVERTISE_ADDR": "127.0.0.1", "INTERNAL_PORT": "0",
                        "LISTEN_ADDRESS": "127.0.0.1"},
}
# What a measurement keeps of wrk's answer.
WRK_FIELDS = ("rps", "p50_ms", "p99_ms", "requests", "errors")


def build_servers():
    build("-p", "pingpong", "-p", "log-output", "--bins")
    build("-p", "yardsticks", "--examples")


def reset_peak_rss(proc):
    """Resets VmHWM to the current RSS, so the next reading is the peak of one measurement."""
    try:
        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        kib = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    return kib / 1024


def record_write_us(directory, count=1000):
    """Median wall time of one 32-byte pwrite at offset 0 plus fdatasync, in microseconds."""
    path = os.path.join(directory, "record-write.probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, bytes(32), 0)
        os.fsync(fd)
        times = []
        for i in range(count):
            t = time.perf_counter()
            os.pwrite(fd, i.to_bytes(8, "little") + bytes(24), 0)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e6
    finally:
        os.close(fd)
        os.unlink(path)


def filesystem_of(path):
    out = subprocess.run(["df", "--output=fstype", path], capture_output=True, text=True).stdout
    return out.split()[-1] if out.split() else "unknown"


def measure(args, connection_counts, bin_dir):
    base = os.environ.get("BENCH_DIR", tempfile.gettempdir())
    data = tempfile.mkdtemp(prefix="pingpong-bench-", dir=base)
    procs = {}
    ports = {}
    record = {
        **record_header("http", "http-bench.py",
                        {"cpus": os.cpu_count(), "kernel": platform.release(),
                         "data_fs": filesystem_of(data)}),
        "runs": args.runs,
        "seconds": args.seconds,
        "connections": connection_counts,
        "servers": list(args.servers),
        "load_average": [],
        "record_write_us": [],
        "measurements": [],
    }
    try:
        for name in args.servers:
            binary, path, _ = SERVERS[name]
            ports[name] = free_port()
            own = name not in ("pingpong", "reader")
            d = os.path.join(data, name) if own else data
            where = args.before if name == "pingpong-before" else bin_dir
            procs[name] = start(os.path.join(where, binary), ports[name], d,
                                env=SERVER_ENV.get(name))
        if "reader" in args.servers:
            procs["log-writer"] = start(os.path.join(bin_dir, "log-writer"), 0, data,
                                        env={"LOG_INTERVAL": "1s"})
        for name in args.servers:
            wait_ready(ports[name], SERVERS[name][1])

        for run in range(args.runs):
            record["load_average"].append(load_average())
            record["record_write_us"].append(record_write_us(data))
            for c in connection_counts:
                names = [n for n in args.servers
                         if SERVERS[n][2] is None or c in SERVERS[n][2]]
                shift = run % len(names)
                for name in names[shift:] + names[:shift]:
                    proc = procs[name]
                    per_measurement = reset_peak_rss(proc)
                    before = cpu_seconds(proc.pid)
                    answer = wrk(ports[name], SERVERS[name][1], c, args.seconds, latency=True)
                    m = {field: answer[field] for field in WRK_FIELDS}
                    m["cpu_us_per_request"] = ((cpu_seconds(proc.pid) - before)
                                               / max(m["requests"], 1) * 1e6)
                    m["peak_rss_mib"] = peak_rss_mib(proc)
                    m["peak_rss_scope"] = "measurement" if per_measurement else "process"
                    m.update(run=run, server=name, connections=c)
                    record["measurements"].append(m)
                    if m["errors"]:
                        print(f"run {run + 1}: {name} at {c} connections: {m['errors']} errors",
                              file=sys.stderr)
            print(f"run {run + 1}/{args.runs} done, load average"
                  f" {' '.join(map(str, load_average()))}", file=sys.stderr)
        record["load_average"].append(load_average())
        if "log-writer" in procs:
            record["log_writer_peak_rss_mib"] = peak_rss_mib(procs["log-writer"])
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=15)
        shutil.rmtree(data, ignore_errors=True)
    return record


def cells(record):
    """{(server, connections): [measurement of each run, in run order]}"""
    out = {}
    for m in sorted(record["measurements"], key=lambda m: m["run"]):
        out.setdefault((m["server"], m["connections"]), []).append(m)
    return out


def ratio(cell, a, b):
    """Median over runs of a's requests/s over b's in the same run, or None."""
    if a not in cell or b not in cell:
        return None
    theirs = {m["run"]: m["rps"] for m in cell[b]}
    per_run = [m["rps"] / theirs[m["run"]] for m in cell[a] if m["run"] in theirs]
    return statistics.median(per_run) if per_run else None


def median(cell, key, field):
    return statistics.median(m[field] for m in cell[key])


def fmt_ratio(r):
    return "" if r is None else f"{r:.2f}x"


def print_table(record):
    cell = cells(record)
    loads = [la[0] for la in record["load_average"]]
    writes = record["record_write_us"]
    print(f"{record['date']}, commit {record['commit']}: {record['runs']} runs of"
          f" {record['seconds']} s, medians; wrk on loopback; data on {record['machine']['data_fs']};"
          f" load average (1 min) {min(loads):.1f}-{max(loads):.1f}; one 32-byte pwrite +"
          f" fdatasync {statistics.median(writes):.0f} µs (median of the runs' medians)")
    print()
    print("| server | connections | requests/s | ratio to ceiling | ratio to careless"
          " | ratio to bare | p99 (ms) | server CPU per request (µs) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in record["connections"]:
        for name in record["servers"]:
            key = (name, c)
            if key not in cell:
                continue
            at_c = {n: cell[(n, c)] for n in record["servers"] if (n, c) in cell}
            errors = sum(m["errors"] for m in cell[key])
            print(f"| {name} | {c} | {median(cell, key, 'rps'):.0f}"
                  f" | {fmt_ratio(ratio(at_c, name, 'ceiling'))}"
                  f" | {fmt_ratio(ratio(at_c, name, 'careless') if name in COUNTERS else None)}"
                  f" | {fmt_ratio(ratio(at_c, name, 'bare'))}"
                  f" | {median(cell, key, 'p99_ms'):.2f}"
                  f" | {median(cell, key, 'cpu_us_per_request'):.1f}"
                  f" | {max(m['peak_rss_mib'] for m in cell[key]):.1f} |"
                  + (f" {errors} errors" if errors else ""))
    if "log_writer_peak_rss_mib" in record:
        print()
        print(f"log-writer peak RSS: {record['log_writer_peak_rss_mib']:.1f} MiB")


def targets(record):
    """The release's throughput targets: (target, figure, met) for those the record has the data for."""
    cell = cells(record)

    def at(c):
        return {n: cell[(n, c)] for n in record["servers"] if (n, c) in cell}

    rows = []

    def against(a, b, c, floor):
        r = ratio(at(c), a, b)
        if r is not None:
            rows.append((f"{a} at {c} connection{'s' * (c > 1)}: at least {floor}x {b}",
                         f"{r:.2f}x ({median(cell, (a, c), 'rps'):.0f} against"
                         f" {median(cell, (b, c), 'rps'):.0f}/s)", r >= floor))

    against("pingpong", "careless", 1, 1.0)
    against("pingpong", "durable-floor", 1, 0.8)
    against("pingpong", "ceiling", 64, 0.8)
    if ("pingpong", 64) in cell:
        p99 = median(cell, ("pingpong", 64), "p99_ms")
        rows.append(("pingpong at 64 connections: p99 at most 5 ms", f"{p99:.2f} ms", p99 <= 5))
        rss = max(m["peak_rss_mib"] for m in cell[("pingpong", 64)])
        rows.append(("pingpong at 64 connections: peak RSS at most 20 MiB", f"{rss:.1f} MiB",
                     rss <= 20))
    against("ceiling", "bare", 64, 0.9)
    return rows


def print_targets(record):
    rows = targets(record)
    if not rows:
        return
    print()
    print("| target (issue 17) | figure | |")
    print("|---|---|---|")
    for target, figure, met in rows:
        print(f"| {target} | {figure} | {'met' if met else '**not met**'} |")


def report(record):
    print_table(record)
    print_targets(record)


def main():
    parser = arguments(__doc__, runs=5)
    parser.add_argument("--connections", default="1,64",
                        help="comma-separated connection counts (default 1,64)")
    parser.add_argument("--sweep", action="store_true",
                        help=f"connection counts {','.join(map(str, SWEEP))}")
    parser.add_argument("--servers", default=",".join(s for s in SERVERS if s != "pingpong-before"),
                        help="comma-separated subset of the servers, in this order")
    parser.add_argument("--bin-dir", help="where the binaries are (default: the release dir)")
    parser.add_argument("--before", metavar="DIR",
                        help="the directory of an earlier build's pingpong, measured as "
                             "pingpong-before (add it to --servers)")
    record_arguments(parser, "http")
    args = parser.parse_args()

    if reported(args, report):
        return

    args.servers = args.servers.split(",")
    unknown = [s for s in args.servers if s not in SERVERS]
    if unknown:
        sys.exit(f"unknown servers {unknown}; known: {', '.join(SERVERS)}")
    connection_counts = SWEEP if args.sweep else [int(c) for c in args.connections.split(",")]
    ensure("wrk")
    if not args.no_build and not args.bin_dir:
        build_servers()
    record = measure(args, connection_counts, args.bin_dir or release_dir())
    save(record, args.out, report)


if __name__ == "__main__":
    main()
