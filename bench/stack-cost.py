#!/usr/bin/env python3
"""What service-kit's HTTP stack costs per request: the ceiling example against a bare axum one.

    python3 bench/stack-cost.py instructions [--workers 1] [--rounds 3] [NAME=BINARY ...]
    python3 bench/stack-cost.py side-by-side [--rounds 5] [--seconds 5] [--connections 64]
                                             [NAME=BINARY ...]

Without NAME=BINARY arguments, builds the yardsticks examples `bare` (axum::serve, nothing else)
and `ceiling` (service-kit's whole stack) in release and measures those two. Every server runs
with RUST_LOG=warn on a free loopback port and answers GET /pingpong with `pong 0`.

instructions: each server in turn under valgrind's callgrind, with TOKIO_WORKER_THREADS=--workers
(1 by default: the count is then the same to within about 1 % from run to run, where throughput
on this shared machine swings by ±30 %). 64 keep-alive connections send N requests in all, then
2N; the server's instructions during the second batch minus those during the first, divided by N,
is what one request costs in user space (start-up, connection set-up and idle time cancel out).
Prints the median of the rounds. Needs valgrind (Debian `valgrind`).

side-by-side: every server running at once; in each round wrk (`-t2 -c64 -dSECONDSs`, or `-t1`
at one connection) runs against each in turn, so a noisy neighbour hurts all of them alike.
Prints, per server, the median requests/s, the median of its per-round ratios to the first
server, and the median server CPU time (user + system) per request. Needs wrk (Debian `wrk`).

Missing tools are installed with apt-get when run as root.
"""

import argparse
import asyncio
import glob
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from lib import (build, cpu_seconds, ensure, free_port, release_dir, start, wait_listening,
                 wrk)

CONNECTIONS = 64
REQUEST = b"GET /pingpong HTTP/1.1\r\nHost: bench\r\n\r\n"


def servers(specs):
    if specs:
        return [tuple(spec.split("=", 1)) for spec in specs]
    build("-p", "yardsticks", "--example", "bare", "--example", "ceiling")
    examples = os.path.join(release_dir(), "examples")
    return [("bare", os.path.join(examples, "bare")),
            ("ceiling", os.path.join(examples, "ceiling"))]


# --- instructions --------------------------------------------------------------------------


async def one_connection(port, requests):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(requests):
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            sys.exit(f"unexpected answer: {head!r}")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)))
    writer.close()
    await writer.wait_closed()


def batch(port, per_connection):
    async def all_connections():
        await asyncio.gather(*(one_connection(port, per_connection)
                               for _ in range(CONNECTIONS)))
    asyncio.run(all_connections())


def dump_total(pid, out_dir):
    """Has callgrind write what it counted since the last dump; returns that total."""
    time.sleep(1.0)  # let connection tasks finish closing, so that they count in this batch
    before = set(glob.glob(os.path.join(out_dir, "callgrind.out.*")))
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        new = set(glob.glob(os.path.join(out_dir, "callgrind.out.*"))) - before
        if new:
            time.sleep(0.3)  # written in one go, but let it finish
            with open(new.pop()) as dump:
                for line in dump:
                    if line.startswith(("summary:", "totals:")):
                        return int(line.split()[1])
        time.sleep(0.1)
    sys.exit("callgrind wrote no dump within 60 s")


def instructions(name, binary, workers, rounds, per_connection):
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="stack-cost-") as out_dir:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind",
             f"--callgrind-out-file={os.path.join(out_dir, 'callgrind.out.%p')}", binary],
            env=dict(os.environ, PORT=str(port), RUST_LOG="warn",
                     TOKIO_WORKER_THREADS=str(workers)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(port, name, deadline=120)
            batch(port, 5)  # warm-up: buffers, the date cache, the counters' label sets
            dump_total(server.pid, out_dir)
            per_request = []
            for _ in range(rounds):
                batch(port, per_connection)
                single = dump_total(server.pid, out_dir)
                batch(port, 2 * per_connection)
                double = dump_total(server.pid, out_dir)
                per_request.append((double - single) / (CONNECTIONS * per_connection))
            print(f"  {name}: " + ", ".join(f"{r:.0f}" for r in per_request), flush=True)
            return statistics.median(per_request)
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()


# --- side by side --------------------------------------------------------------------------


def side_by_side(named, rounds, seconds, connections):
    running = []
    try:
        for name, binary in named:
            port = free_port()
            running.append((name, port, start(binary, port, stderr=subprocess.DEVNULL)))
        for name, port, _ in running:
            wait_listening(port, name)
            wrk(port, "/pingpong", connections, 1, strict=True)  # warm-up
        rates = {name: [] for name, _, _ in running}
        cpu = {name: [] for name, _, _ in running}
        for round_ in range(1, rounds + 1):
            for name, port, process in running:
                before = cpu_seconds(process.pid)
                load = wrk(port, "/pingpong", connections, seconds, strict=True)
                rate, requests = load["rps"], load["requests"]
                cpu[name].append((cpu_seconds(process.pid) - before) / requests * 1e6)
                rates[name].append(rate)
            print(f"  round {round_}: "
                  + "  ".join(f"{name} {rates[name][-1]:.0f}/s" for name in rates), flush=True)
        first = running[0][0]
        print(f"\n| server | requests/s (median) | ratio to {first} (median of rounds)"
              " | server CPU per request (µs) |")
        print("|---|---:|---:|---:|")
        for name in rates:
            ratios = [a / b for a, b in zip(rates[name], rates[first])]
            print(f"| {name} | {statistics.median(rates[name]):.0f}"
                  f" | {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                  f" | {statistics.median(cpu[name]):.2f} |")
    finally:
        for _, _, process in running:
            process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    ins = sub.add_parser("instructions")
    ins.add_argument("--workers", type=int, default=1)
    ins.add_argument("--rounds", type=int, default=3)
    ins.add_argument("--per-connection", type=int, default=100,
                     help="requests per connection in the first batch (N = 64 × this)")
    ins.add_argument("servers", nargs="*", metavar="NAME=BINARY")
    sbs = sub.add_parser("side-by-side")
    sbs.add_argument("--rounds", type=int, default=5)
    sbs.add_argument("--seconds", type=int, default=5)
    sbs.add_argument("--connections", type=int, default=64)
    sbs.add_argument("servers", nargs="*", metavar="NAME=BINARY")
    args = parser.parse_args()

    named = servers(args.servers)
    if args.mode == "instructions":
        ensure("valgrind")
        medians = {name: instructions(name, binary, args.workers, args.rounds,
                                      args.per_connection)
                   for name, binary in named}
        first = named[0][0]
        print(f"\n| server | instructions per request (median of {args.rounds})"
              f" | more than {first} |")
        print("|---|---:|---:|")
        for name, median in medians.items():
            print(f"| {name} | {median:.0f} | {median - medians[first]:+.0f} |")
    else:
        ensure("wrk")
        side_by_side(named, args.rounds, args.seconds, args.connections)


if __name__ == "__main__":
    main()
