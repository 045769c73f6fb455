#!/usr/bin/env python3
"""Several nodes: requests/s of pingpong replicas over two mounts of GlusterFS and CephFS beside
a local directory, and failed requests while one replica's mount is stopped; medians of runs.

    python3 bench/rwx-bench.py [--runs 3] [--figures FILE]   (root; RWX_BIN etc. as for .ci/rwx.sh)

Runs `bash .ci/rwx.sh` --runs times with RWX_FIGURES set, then prints, per scenario, the median
of each figure over the runs as a Markdown table (BENCHMARKS.md, "Several nodes"). The runs'
figures stay in bench/data/rwx-<UTC start>.jsonl, one JSON object per scenario and run. With
--figures, only prints the table of an earlier FILE.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--figures", help="print the table of this file instead of running")
    a = p.parse_args()
    path = a.figures
    if not path:
        path = os.path.join(DATA, time.strftime("rwx-%Y%m%dT%H%M%SZ.jsonl", time.gmtime()))
        for run in range(a.runs):
            print("run %d of %d (figures in %s)" % (run + 1, a.runs, path), file=sys.stderr, flush=True)
            subprocess.run(["bash", ".ci/rwx.sh"], cwd=ROOT, env={**os.environ, "RWX_FIGURES": path},
                           stdout=subprocess.DEVNULL)
    runs = {}
    for line in open(path):
        f = json.loads(line)
        runs.setdefault(f["label"], []).append(f)
    print("| scenario | runs | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for label, fs in runs.items():
        cells = []
        for key, _ in COLUMNS:
            values = [f[key] for f in fs if isinstance(f.get(key), (int, float))]
            cells.append("%g" % statistics.median(values) if values else "–")
        print("| %s | %d | %s |" % (label, len(fs), " | ".join(cells)))


if __name__ == "__main__":
    main()
