#!/usr/bin/env python3
"""The benchmark figures in docs/, drawn from the data files the benches recorded in bench/data/.

    python3 bench/plots.py            # (re)writes the SVGs in docs/
    python3 bench/plots.py --check    # exit 1 if an SVG is not what the data files give

The first run creates bench/.venv (gitignored) with the pinned packages of
bench/plots-requirements.txt from PyPI (python3-venv is installed with apt-get if missing, when
run as root), and every run re-executes itself in it, so the SVGs are byte-identical wherever
they are made. Figures, each from the newest data file of its kind (by the UTC stamp in the
file name) unless one is named:

  docs/http-throughput.svg  requests/s against connections   newest bench/data/http-*.json
  docs/http-p99.svg         p99 latency against connections   with at least 3 connection counts
                            (`bench/http-bench.py --sweep`); --http FILE
  docs/downtime.svg         failed requests in a graceful deletion, a rolling update and a
                            kill -9, with and without SHUTDOWN_DELAY: the newest
                            bench/data/downtime-*.json per engine and delay
                            (bench/downtime-bench.sh); --downtime FILE...
  docs/power-loss.svg       every crash point of the power-loss proofs, and the random cuts:
                            newest bench/data/power-loss-*.jsonl (POWER_LOSS_REPORT);
                            --power-loss FILE

Plots are only ever made by this script: never edit an SVG by hand.
"""

import argparse
import filecmp
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from lib import DATA, ROOT

DOCS = os.path.join(ROOT, "docs")
VENV = os.path.join(ROOT, "bench", ".venv")
REQUIREMENTS = os.path.join(ROOT, "bench", "plots-requirements.txt")


def in_venv():
    """Runs this script in bench/.venv with the pinned packages, creating or updating it first."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, "plots-requirements.txt")
    if not os.path.exists(python):
        if subprocess.run([sys.executable, "-m", "venv", VENV]).returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            if os.geteuid() != 0:
                sys.exit("python3 -m venv failed: apt-get install python3-venv")
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "python3-venv"], check=True)
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if not (os.path.exists(stamp) and filecmp.cmp(stamp, REQUIREMENTS, shallow=False)):
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", REQUIREMENTS], check=True)
        shutil.copyfile(REQUIREMENTS, stamp)
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def newest(pattern, keep=lambda path: True):
    paths = [p for p in sorted(glob.glob(os.path.join(DATA, pattern))) if keep(p)]
    return paths[-1] if paths else None


def load(path):
    with open(path) as f:
        return json.load(f)


def rel(path):
    return os.path.relpath(path, ROOT)


# ---------------------------------------------------------------------------------------------
# HTTP: throughput and p99 against connections

STYLE = {
    "pingpong": dict(color="#1f77b4", marker="o", linewidth=2.5, label="pingpong (durable)"),
    "ceiling": dict(color="#ff7f0e", marker="s", label="ceiling (the stack, constant answer)"),
    "bare": dict(color="#7f7f7f", marker="^", linestyle="--", label="bare axum"),
    "careless": dict(color="#d62728", marker="x", linestyle=":",
                     label="careless (std::fs::write, no fsync)"),
    "one-write": dict(color="#2ca02c", marker="D", label="one durable write per request"),
    "durable-floor": dict(color="#9467bd", marker="*", markersize=14, linestyle="none",
                          label="durable floor (1 pwrite + fdatasync)"),
}


def http_series(record, field):
    """{server: (connections, medians, lows, highs)} of one field over the runs."""
    by = {}
    for m in record["measurements"]:
        by.setdefault(m["server"], {}).setdefault(m["connections"], []).append(m[field])
    out = {}
    for server, cells in by.items():
        cs = sorted(cells)
        values = [sorted(cells[c]) for c in cs]
        out[server] = (cs, [median(v) for v in values], [v[0] for v in values],
                       [v[-1] for v in values])
    return out


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def http_figure(plt, record, path, field, ylabel, title):
    fig, ax = plt.subplots(figsize=(8, 5))
    series = http_series(record, field)
    for server, style in STYLE.items():
        if server not in series:
            continue
        cs, med, lo, hi = series[server]
        ax.errorbar(cs, med, yerr=[[m - low for m, low in zip(med, lo)],
                                   [high - m for m, high in zip(med, hi)]],
                    capsize=3, **style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    counts = sorted({m["connections"] for m in record["measurements"]})
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("concurrent connections (wrk, loopback)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    loads = [la[0] for la in record["load_average"]]
    ax.set_title(f"{title}\nmedians of {record['runs']} runs of {record['seconds']} s (bars: min to"
                 f" max), {record['machine']['cpus']} cores, load {min(loads):.0f}-{max(loads):.0f};"
                 f" {record['date'][:10]}, commit {record['commit']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.text(0.01, -0.02, f"data: {rel(record['_path'])}", fontsize=7, color="#555555")
    save(plt, fig, path)


# ---------------------------------------------------------------------------------------------
# Zero downtime: failed requests per step

STEPS = ["graceful deletion", "rolling update", "kill -9"]


def downtime_figure(plt, records, path):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = sorted(records, key=lambda r: (r["_engine"], r["shutdown_delay"] == "0s"))
    width = 0.8 / max(len(groups), 1)
    colors = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a"]
    top = 1
    for i, record in enumerate(groups):
        xs, meds, lows, highs, totals = [], [], [], [], []
        for j, step in enumerate(STEPS):
            rows = [r for r in record["results"]
                    if r["engine"] == record["_engine"] and r["step"] == step]
            if not rows:
                continue
            failed = sorted(r["failed"] for r in rows)
            xs.append(j - 0.4 + width * (i + 0.5))
            meds.append(median(failed))
            lows.append(failed[0])
            highs.append(failed[-1])
            totals.append(median(r["requests"] for r in rows))
        top = max([top] + highs)
        label = f"{record['_engine']}, SHUTDOWN_DELAY={record['shutdown_delay']}"
        ax.bar(xs, meds, width, color=colors[i % len(colors)], label=label,
               yerr=[[m - low for m, low in zip(meds, lows)],
                     [high - m for m, high in zip(meds, highs)]], capsize=3)
        # Above the whisker, so that a 0 bar still says 0.
        for x, m, high, t in zip(xs, meds, highs, totals):
            ax.annotate(f"{m:g}\nof {t:g}", (x, high), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.3 + 1)
    ax.set_xticks(range(len(STEPS)), STEPS)
    ax.set_ylabel("failed requests (median; bars: min to max)")
    runs = sorted({r["runs"] for r in records})
    ax.set_title("Requests failed while one of two replicas goes away\n(HAProxy, /readyz every"
                 f" 1 s, no retries; {'/'.join(map(str, runs))} runs each;"
                 f" {max(r['date'] for r in records)[:10]})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.01, -0.02, "data: " + ", ".join(rel(r["_path"]) for r in groups), fontsize=6,
             color="#555555")
    save(plt, fig, path)


# ---------------------------------------------------------------------------------------------
# Power loss: every crash point, and the random cuts

def power_loss_figure(plt, cuts, source, path):
    points = [c for c in cuts if c["of"] is not None]
    rows = sorted({(c["test"], c["model"]) for c in points})
    fig = plt.figure(figsize=(9, 2.2 + 0.45 * len(rows) + 3.2))
    grid = fig.add_gridspec(2, 2, height_ratios=[0.45 * len(rows) + 0.9, 3.0], hspace=0.55)
    ax = fig.add_subplot(grid[0, :])
    width = max(c["of"] for c in points) + 2 if points else 1
    colour = {"old": "#d9d9d9", "new": "#8fd19e", "old/new": "#ffe699"}
    wrong = 0
    for y, (test, model) in enumerate(rows):
        cells = {}
        for c in points:
            if (c["test"], c["model"]) == (test, model):
                cells.setdefault(c["after"], []).append(c)
        for k, cs in cells.items():
            found = "/".join(sorted({c["found"] for c in cs}, reverse=True))
            # "old or new": either is right (a write pending at the cut, torn every way).
            bad = any(c["found"] not in c["expected"].split(" or ") for c in cs)
            wrong += bad
            ax.add_patch(plt.Rectangle((k - 0.45, y - 0.4), 0.9, 0.8,
                                       facecolor=colour.get(found, "#ff9896"),
                                       edgecolor="#d62728" if bad else "white",
                                       linewidth=2 if bad else 1))
            if len(cs) == 1:
                text = found
            else:
                counts = {f: sum(c["found"] == f for c in cs) for f in found.split("/")}
                text = "\n".join(f"{f} ×{n}" for f, n in counts.items())
            if any(c["acknowledged"] for c in cs):
                text += "\nanswered"
            ax.text(k, y, text + (" ✗" if bad else ""), ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)), [f"{t} ({m})" for t, m in rows], fontsize=8)
    ax.set_xticks(range(width))
    ax.set_xlabel("the power fails after k mutating operations of one write"
                  " (the last: after all of them)", fontsize=8)
    ax.set_title(f"Every crash point, {len(points)} cuts: what the count is after the cut (grey:"
                 " the old value, green: the new, yellow: either, by how a pending write tore;"
                 f"\n×n: cuts of that crash point; {'no' if not wrong else wrong}"
                 f" cell{'s' * (wrong != 1)} against the proof's expectation)", fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)

    def random_panel(position, test, margin, ylabel, what):
        ax = fig.add_subplot(position)
        rounds = [c for c in cuts if c["test"] == test]
        for model, style in (("Strict", dict(color="#1f77b4", marker="o")),
                             ("NamesDurable", dict(color="#ff7f0e", marker="s"))):
            counts = {}
            for c in rounds:
                if c["model"] == model:
                    key = (c["after"], margin(c))
                    counts[key] = counts.get(key, 0) + 1
            if counts:
                keys = sorted(counts)
                ax.scatter([k for k, _ in keys], [m for _, m in keys],
                           s=[12 * counts[k] for k in keys], alpha=0.6, label=model, **style)
        lost = sum(margin(c) < 0 for c in rounds)
        ax.axhspan(-10 ** 9, 0, color="#ff9896", alpha=0.25, lw=0)
        ax.axhline(0, color="#d62728", linewidth=0.8)
        values = [margin(c) for c in rounds] or [0]
        pad = max(values) * 0.06 + 0.6
        ax.set_ylim(min(values) - pad, max(values) + 2 * pad)
        ax.set_xlabel("cut after k mutating operations (random)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        acked = sum(c["acknowledged"] for c in rounds)
        ax.set_title(f"{test}: {len(rounds)} cuts,\n{acked} {what} before them, {lost} lost"
                     " (below the red line)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")

    def ms(stamp):
        # 2026-12-01T05:05:40.759Z: milliseconds of the day are enough within one run.
        h, m, s = stamp.split("T")[1].rstrip("Z").split(":")
        return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)

    random_panel(grid[1, 0], "pingpong random instants",
                 lambda c: int(c["found"]) - int(re.search(r"\d+", c["expected"]).group()),
                 "count minus (last answered + 1)", "answers")
    random_panel(grid[1, 1], "log-writer random instants",
                 lambda c: ms(c["found"]) - ms(c["expected"].split()[-1]),
                 "entry on file minus last printed (ms)", "entries printed")
    fig.suptitle("Power-loss proof on crashfs (guarantee 6)", fontsize=11)
    fig.text(0.01, 0.005, f"data: {rel(source)}", fontsize=7, color="#555555")
    save(plt, fig, path)


# ---------------------------------------------------------------------------------------------

def save(plt, fig, path):
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None},
                bbox_inches="tight")
    plt.close(fig)


def draw(args, out_dir):
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    # Fixed ids in the SVG, so that the same data gives the same bytes.
    matplotlib.rcParams["svg.hashsalt"] = "pingpong-bench"
    # Text as text: about half the size, searchable, and drawn in the reader's sans-serif.
    matplotlib.rcParams["svg.fonttype"] = "none"
    written = []

    def is_sweep(path):
        return len(load(path)["connections"]) >= 3

    http = args.http or newest("http-*.json", is_sweep)
    if http:
        record = load(http)
        record["_path"] = http
        for name, field, ylabel, title in (
                ("http-throughput.svg", "rps", "requests/s (log)",
                 "GET /pingpong: requests/s against connections"),
                ("http-p99.svg", "p99_ms", "p99 latency (ms, log)",
                 "GET /pingpong: p99 latency against connections")):
            http_figure(plt, record, os.path.join(out_dir, name), field, ylabel, title)
            written.append(name)

    downtime = args.downtime or sorted(glob.glob(os.path.join(DATA, "downtime-*.json")))
    latest = {}
    for path in downtime:
        record = load(path)
        record["_path"] = path
        for engine in sorted({r["engine"] for r in record["results"]}):
            # Later files (by name) replace earlier ones of the same engine and delay.
            latest[(engine, record["shutdown_delay"])] = dict(record, _engine=engine)
    if latest:
        downtime_figure(plt, list(latest.values()), os.path.join(out_dir, "downtime.svg"))
        written.append("downtime.svg")

    power = args.power_loss or newest("power-loss-*.jsonl")
    if power:
        with open(power) as f:
            cuts = [json.loads(line) for line in f if line.strip()]
        power_loss_figure(plt, cuts, power, os.path.join(out_dir, "power-loss.svg"))
        written.append("power-loss.svg")
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare docs/*.svg with what the data gives; write nothing")
    parser.add_argument("--http", help="an http-bench data file (default: the newest sweep)")
    parser.add_argument("--downtime", nargs="+", help="downtime-bench data files")
    parser.add_argument("--power-loss", help="a POWER_LOSS_REPORT file")
    args = parser.parse_args()
    in_venv()

    if not args.check:
        os.makedirs(DOCS, exist_ok=True)
        for name in draw(args, DOCS):
            print(f"wrote docs/{name}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        stale = [name for name in draw(args, tmp)
                 if not (os.path.exists(os.path.join(DOCS, name))
                         and filecmp.cmp(os.path.join(tmp, name), os.path.join(DOCS, name),
                                         shallow=False))]
    if stale:
        sys.exit("not what the data gives (run python3 bench/plots.py): "
                 + ", ".join(f"docs/{n}" for n in stale))
    print("docs/*.svg are what the data files give")


if __name__ == "__main__":
    main()
