#!/usr/bin/env python3
"""Several nodes: requests/s of pingpong replicas over two mounts of GlusterFS and CephFS beside
a local directory, and failed requests while one replica's mount is stopped; medians of runs.

    python3 bench/rwx-bench.py [--runs 3] [--leader] [--figures FILE]
                                             (root; RWX_BIN etc. as for .ci/rwx.sh)

Runs `bash .ci/rwx.sh` --runs times with RWX_FIGURES set, then prints, per scenario, the median
of each figure over the runs as a Markdown table (BENCHMARKS.md, "Several nodes"). The runs'
figures stay in bench/data/rwx-<UTC start>.jsonl (rwx-leader-... with --leader), one JSON
object per scenario and run. --leader: only the leader-mode scenarios (RWX_MODES=leader: CephFS
at its default MDS tick), and the failover columns. With --figures, only prints the table of an
earlier FILE.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from lib import DATA, ROOT

COLUMNS = [
    ("req_per_s", "requests/s"),
    ("answered", "answered"),
    ("duplicates", "duplicates"),
    ("5xx", "5xx"),
    ("failed_during_partition", "failed during the partition"),
    ("failed_after_partition", "failed after it"),
    ("longest_gap_s", "longest gap (s)"),
]
LEADER_COLUMNS = [
    ("req_per_s", "requests/s"),
    ("answered", "answered"),
    ("duplicates", "duplicates"),
    ("failed", "failed"),
    ("failed_during_fault", "failed during the fault"),
    ("gap_after_fault_s", "longest gap from the fault on (s)"),
    ("new_leader_after_s", "new leader after (s)"),
    ("failed_during_partition", "failed during the partition"),
    ("longest_gap_s", "longest gap (s)"),
]


def value(f, key):
    """A figure, also from the fault's own figures (new_leader_after_s)."""
    v = f.get(key, (f.get("fault") or {}).get(key))
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--leader", action="store_true", help="the leader-mode scenarios only")
    p.add_argument("--figures", help="print the table of this file instead of running")
    a = p.parse_args()
    path = a.figures
    columns = LEADER_COLUMNS if a.leader else COLUMNS
    if not path:
        name = "rwx-leader-%Y%m%dT%H%M%SZ.jsonl" if a.leader else "rwx-%Y%m%dT%H%M%SZ.jsonl"
        path = os.path.join(DATA, time.strftime(name, time.gmtime()))
        env = {**os.environ, "RWX_FIGURES": path}
        if a.leader:
            env["RWX_MODES"] = "leader"
        for run in range(a.runs):
            print("run %d of %d (figures in %s)" % (run + 1, a.runs, path), file=sys.stderr, flush=True)
            subprocess.run(["bash", ".ci/rwx.sh"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    runs = {}
    for line in open(path):
        f = json.loads(line)
        runs.setdefault(f["label"], []).append(f)
    print("| scenario | runs | " + " | ".join(title for _, title in columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for label, fs in runs.items():
        cells = []
        for key, _ in columns:
            values = [v for v in (value(f, key) for f in fs) if v is not None]
            cells.append("%g" % statistics.median(values) if values else "–")
        print("| %s | %d | %s |" % (label, len(fs), " | ".join(cells)))


if __name__ == "__main__":
    main()
