"""What the benchmark scripts share: building, starting and waiting for a server, wrk, and what a
data file records about the machine and the commit.

The scripts run as `python3 bench/<script>.py`, so this file is on their path as `lib`.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench", "data")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


# --- the command line ---------------------------------------------------------------------


def arguments(doc, runs):
    """The parser a measuring script starts from: --runs (RUNS by default) and --seconds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--seconds", type=int, default=5)
    return parser


def record_arguments(parser, kind):
    """--no-build, --out and --report, for a script that writes bench/data/KIND-<stamp>.json."""
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", help=f"the data file (default bench/data/{kind}-<stamp>.json)")
    parser.add_argument("--report", metavar="FILE",
                        help="print the tables of a recorded data file; measure nothing")


def reported(args, report):
    """With --report FILE: prints REPORT of that recorded data file and says so."""
    if not args.report:
        return False
    with open(args.report) as f:
        report(json.load(f))
    return True


# --- tools and builds ----------------------------------------------------------------------


def ensure(tool, package=None):
    """Installs the Debian package that provides `tool` when it is missing (as root only)."""
    if shutil.which(tool):
        return
    package = package or tool
    if os.geteuid() != 0:
        sys.exit(f"{tool} is missing: apt-get install {package}")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)


def release_dir():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release")


def build(*args):
    """`cargo build --release --locked` with ARGS (which packages, binaries, examples)."""
    subprocess.run(["cargo", "build", "--release", "--locked", *args], cwd=ROOT, check=True)


# --- servers -------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, port, data_dir=None, env=None, **popen):
    """Starts BINARY on PORT (and DATA_DIR) with RUST_LOG=warn unless ENV says otherwise; its
    stdout is discarded, POPEN goes to subprocess.Popen (stderr, preexec_fn)."""
    full_env = {**os.environ, "PORT": str(port), "RUST_LOG": "warn", **(env or {})}
    if data_dir is not None:
        full_env["DATA_DIR"] = data_dir
    return subprocess.Popen([binary], env=full_env, stdout=subprocess.DEVNULL, **popen)


def get(port, path, timeout=2):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_ready(port, path="/readyz", deadline=30, failure=None):
    """Polls PORT's PATH until it answers 200; exits with FAILURE after DEADLINE seconds."""
    end = time.time() + deadline
    while time.time() < end:
        try:
            if get(port, path, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(failure or f"port {port}{path} never answered 200")


def wait_listening(port, what, deadline=60.0):
    """Waits for PORT to accept a connection (a server under valgrind answers nothing sooner)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on port {port} within {deadline:.0f} s")


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load ----------------------------------------------------------------------------------


def wrk(port, path, connections, seconds, threads=None, latency=False, strict=False):
    """Runs wrk against PORT's PATH. Returns rps, requests, non2xx, socket_errors, errors (their
    sum) and wrk's output `out`; with LATENCY also p50_ms and p99_ms. THREADS defaults to one a
    connection up to two. STRICT exits on any failed request."""
    threads = threads or min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
         *(["--latency"] if latency else []), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    non2xx = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        non2xx = int(m.group(1))
    socket_errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out):
        socket_errors = sum(int(g) for g in m.groups())
    if strict and (non2xx or socket_errors):
        sys.exit(f"wrk saw failures on port {port}:\n{out}")
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "errors": non2xx + socket_errors,
        "out": out,
    }
    if latency:
        for pct in (50, 99):
            value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
            result[f"p{pct}_ms"] = float(value) * UNITS[unit]
    return result


# --- what a data file records --------------------------------------------------------------


def load_average():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def git_commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    commit = git("rev-parse", "--short=12", "HEAD")
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def record_header(kind, script, machine):
    """What every data file opens with: which bench, when, at which commit, by which command,
    on which MACHINE."""
    return {
        "bench": kind,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "command": " ".join(["python3", f"bench/{script}"] + sys.argv[1:]),
        "machine": machine,
    }


def data_file(kind, date):
    """bench/data/KIND-<DATE as a compact stamp>.json"""
    return os.path.join(DATA, f"{kind}-" + date.replace(":", "").replace("-", "") + ".json")


def save(record, out, report):
    """Writes RECORD to OUT (by default bench/data/<its bench>-<its date>.json) as the data files
    are written (indented, a final newline), then prints its REPORT and where the data went."""
    out = out or data_file(record["bench"], record["date"])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    report(record)
    print()
    print(f"data: {os.path.relpath(out, ROOT)}")
