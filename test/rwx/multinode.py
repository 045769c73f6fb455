#!/usr/bin/env python3
"""pingpong replicas on two client mounts of one volume, behind HAProxy, under load: the facts.

Runs N replicas alternating over MOUNT1 and MOUNT2 as DATA_DIR (a fresh subdirectory, the same
one seen through both mounts), HAProxy in front configured as test/haproxy.sh configures it for
the Service (round robin, GET /readyz checked every second, down after 2 failures, retries 0, no
redispatch), and around them:

- a load client: C connections for T seconds (or K requests), every answer recorded;
- pollers through HAProxy on /pings (each asserts its values never decrease) and /readyz;
- a reader that reads pingpong_counter.txt in a loop through a mount no replica uses, else
  the last mount (always parseable, never decreasing);
- optionally log-writer on MOUNT1 (LOG_INTERVAL=100ms) and a reader of output.log on MOUNT2
  whose counts must never go backwards (with --pingpong-on 1: pingpong only on MOUNT2);
- optionally a partition: the FUSE client of the mount whose replicas hold the counter's lock
  is stopped (SIGSTOP) for S seconds, then resumed.

Checks: no number handed out twice; the count exact (final count = acknowledged answers + the
sum of pingpong_abandoned_total over the replicas, read from /metrics before they stop); no
5xx (outside a partition); pollers and readers never see the count go backwards. It prints its
figures, one `figure NAME VALUE` line each, then `ok`/`FAILED` per check, and exits 1 when a
check fails. With --expect-hazard the verdict is inverted: the run passes when it shows
duplicates or 5xx (a negative test: the hazard a design must remove is there).

Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

REQUEST_TIMEOUT = 30  # HAProxy's `timeout server`; pingpong answers every request within 5 s


def say(*args):
    print(*args, flush=True)


class Http:
    """One keep-alive connection; reconnects after any failure."""

    def __init__(self, port, timeout=REQUEST_TIMEOUT):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def get(self, path):
        """(status, body) or (None, error text): a failure to connect or read is recorded too."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read().decode(errors="replace")
            if r.getheader("connection", "").lower() == "close":
                self.close()
            return r.status, body
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return None, "%s: %s" % (type(e).__name__, e)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Shell:
    """Runs shell commands for the partition (cut, heal, who holds the lock) from a bash started
    before any thread opens a file on the mounts. A process forked later inherits the reader's
    open files: while a mount's client is stopped, closing them (close_fds, or close-on-exec)
    blocks in a FUSE flush, the child never execs, and the harness never resumes the client."""

    SCRIPT = r'''
while IFS= read -r cmd; do
  out="$(bash -c "$cmd" 2>&1)"
  status=$?
  printf '%s\n__rwx_done__ %d\n' "$out" "$status"
done
'''

    def __init__(self, cwd):
        self.proc = subprocess.Popen(["bash", "-c", self.SCRIPT], cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def run(self, cmd):
        """(exit status, output)."""
        self.proc.stdin.write(cmd.replace("\n", " ") + "\n")
        self.proc.stdin.flush()
        lines = []
        for line in self.proc.stdout:
            if line.startswith("__rwx_done__ "):
                return int(line.split()[1]), "".join(lines)
            lines.append(line)
        return -1, "".join(lines)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class Run:
    def __init__(self, args):
        self.args = args
        self.work = os.path.realpath(args.work)
        os.makedirs(self.work, exist_ok=True)
        self.sub = args.subdir or "pingpong-%d-%d" % (os.getpid(), int(time.time()))
        self.dirs = [os.path.join(m, self.sub) for m in args.mounts]
        self.procs = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = []  # (t_start, t_end, status, body)
        self.problems = []  # what a poller or reader saw that breaks a guarantee
        self.notes = {}  # counters of things worth reporting that break nothing by themselves
        self.t0 = None
        self.partition_window = None  # (t_stop, t_cont) relative to t0

    # --- processes ---------------------------------------------------------------------------

    def port(self, i):
        return self.args.port_base + i

    def spawn(self, name, cmd, env, stdout=None):
        log = open(os.path.join(self.work, name + ".log"), "ab")
        p = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=stdout or log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=self.work,
        )
        self.procs.append((name, p))
        return p

    def start_replicas(self):
        os.makedirs(self.dirs[0], exist_ok=True)
        self.replicas = []
        on = self.args.pingpong_on or list(range(len(self.dirs)))
        for i in range(self.args.replicas):
            mount = on[i % len(on)]
            data_dir = self.dirs[mount]
            env = {
                "PORT": str(self.port(i + 1)),
                "DATA_DIR": data_dir,
                "RUST_LOG": "warn",
                "SHUTDOWN_DELAY": "0s",
            }
            p = self.spawn("pingpong-%d" % (i + 1), [os.path.join(self.args.bin, "pingpong")], env)
            self.replicas.append({"n": i + 1, "port": self.port(i + 1), "mount": mount, "proc": p})
        # The counter's reader reads through a mount no replica uses, else the last one.
        used = {r["mount"] for r in self.replicas}
        free = [k for k in range(len(self.dirs)) if k not in used]
        self.reader_dir = self.dirs[free[0] if free else -1]
        for r in self.replicas:
            self.wait_ok(r["port"], "/readyz", 30, "replica %d" % r["n"])

    def wait_ok(self, port, path, seconds, what):
        h = Http(port, timeout=2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, body = h.get(path)
            if status == 200:
                h.close()
                return
            time.sleep(0.1)
        raise SystemExit("%s: %s not 200 within %ss (last: %s %s)" % (what, path, seconds, status, body))

    def start_haproxy(self):
        self.lb_port = self.port(0)
        self.stats_port = self.port(self.args.replicas + 1)
        # test/haproxy.sh's configuration, the Service's stand-in in the other tests.
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cfg = subprocess.run(
            ["bash", "-c", '. test/haproxy.sh && haproxy_config "$@"', "haproxy_config",
             str(self.lb_port), str(self.stats_port)] + [str(r["port"]) for r in self.replicas],
            cwd=repo, capture_output=True, text=True, check=True).stdout
        path = os.path.join(self.work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.spawn("haproxy", ["haproxy", "-db", "-f", path], {})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = self.haproxy_states()
            if len(states) == len(self.replicas) and all(s == "UP" for s in states.values()):
                return
            time.sleep(0.2)
        raise SystemExit("HAProxy: servers not all UP within 15 s: %s" % self.haproxy_states())

    def haproxy_states(self):
        status, body = Http(self.stats_port, timeout=2).get("/;csv")
        states = {}
        for line in (body or "").splitlines() if status == 200 else []:
            f = line.split(",")
            if len(f) > 17 and f[0] == "pingpong" and f[1].startswith("r"):
                states[f[1]] = f[17]
        return states

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 15
        for name, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # --- load, pollers, readers --------------------------------------------------------------

    def now(self):
        return time.monotonic() - self.t0

    def load_worker(self, budget):
        h = Http(self.lb_port)
        mine = []
        while not self.stop.is_set():
            if budget is not None:
                with self.lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
            t = self.now()
            status, body = h.get("/pingpong")
            mine.append((t, self.now(), status, body))
        h.close()
        with self.lock:
            self.answers.extend(mine)

    def pings_poller(self, k):
        h = Http(self.lb_port)
        last = -1
        while not self.stop.is_set():
            status, body = h.get("/pings")
            if status == 200:
                v = int(body.strip())
                if v < last:
                    self.problem("poller %d: /pings went from %d to %d at %.2fs" % (k, last, v, self.now()))
                last = max(last, v)
            else:
                self.note("pings poller non-200 (%s)" % (status,))
            time.sleep(0.01)

    def readyz_poller(self):
        h = Http(self.lb_port)
        while not self.stop.is_set():
            status, _ = h.get("/readyz")
            if status != 200:
                self.note("readyz poller non-200 (%s)" % (status,))
            time.sleep(0.05)

    def counter_reader(self):
        path = os.path.join(self.reader_dir, "pingpong_counter.txt")
        last = -1
        while not self.stop.is_set():
            try:
                with open(path, "rb") as f:
                    data = f.read(128)
            except FileNotFoundError:
                if last >= 0:
                    self.problem("reader: %s vanished after holding %d" % (path, last))
                time.sleep(0.005)
                continue
            except OSError as e:
                self.note("counter reader %s" % (os.strerror(e.errno),))
                time.sleep(0.005)
                continue
            text = data.decode(errors="replace").strip()
            if not re.fullmatch(r"[0-9]+", text):
                self.problem("reader: unparseable counter %r at %.2fs" % (data[:64], self.now()))
            else:
                v = int(text)
                if v < last:
                    self.problem("reader: counter went from %d to %d at %.2fs" % (last, v, self.now()))
                    self.note("counter reader backwards")
                last = max(last, v)
            time.sleep(0.005)
        self.reader_last = last

    def log_reader(self):
        path = os.path.join(self.dirs[1 % len(self.dirs)], "output.log")
        last = -1
        entries = 0
        while not self.stop.is_set():
            try:
                with open(path, "rb") as f:
                    data = f.read(4096).decode(errors="replace")
            except FileNotFoundError:
                time.sleep(0.01)
                continue
            except OSError as e:
                self.note("output.log reader %s" % (os.strerror(e.errno),))
                time.sleep(0.01)
                continue
            m = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z: [0-9a-f-]{36}\.\nPing / Pongs: (\d+)", data)
            if not m:
                self.problem("output.log reader: not an entry: %r" % data[:120])
            else:
                entries += 1
                v = int(m.group(1))
                if v < last:
                    self.problem("output.log reader: count went from %d to %d at %.2fs" % (last, v, self.now()))
                last = max(last, v)
            time.sleep(0.01)
        self.log_last = last
        self.log_reads = entries

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 20:
                self.problems.append(text)
            self.notes["problems"] = self.notes.get("problems", 0) + 1

    def note(self, key):
        with self.lock:
            self.notes[key] = self.notes.get(key, 0) + 1

    # --- partition ---------------------------------------------------------------------------

    def increments(self, r):
        status, body = Http(r["port"], timeout=2).get("/metrics")
        if status != 200:
            return None
        return metric(body, "pingpong_increments_total")

    def partition(self):
        """Stops the FUSE client of the mount whose replica holds the lock, for --stop-seconds.
        Which one holds it: with --holder-cmd, asked of the filesystem once the client is
        stopped (GlusterFS: a statedump of the brick); else inferred: if the other mount's
        replicas still make progress within 2 s, the lock was not there. Either way, when the
        stopped client does not hold it, it is resumed and the other mount is tried."""
        a = self.args
        time.sleep(a.partition_after)
        pids = [int(p) for p in a.fuse_pids.split(",")]
        for attempt in range(12):
            if self.stop.is_set():
                return
            victim = attempt % 2
            others = [r for r in self.replicas if r["mount"] != victim]
            before = [self.increments(r) for r in others]
            os.kill(pids[victim], signal.SIGSTOP)
            t_stop = self.now()
            if a.holder_cmd:
                time.sleep(0.2)
                out = self.shell_cmds.run(a.holder_cmd)[1]
                holders = [line.split()[0] for line in out.splitlines() if line.split()]
                holds = str(pids[victim]) in holders
                how = "the filesystem says its client holds the lock (%s)" % " ".join(holders)
                if not holds:
                    say("partition: attempt %d: mount %d's client does not hold the lock (holders: %s)"
                        % (attempt + 1, victim + 1, " ".join(holders) or "none"))
            else:
                time.sleep(2)
                holds = [self.increments(r) for r in others] == before
                how = "the other mount's replicas made no progress in 2 s"
            if holds:
                if a.cut_cmd:
                    self.shell(a.cut_cmd, victim)
                say("partition: SIGSTOP the client of mount %d (pid %d) at %.1fs: %s (attempt %d)"
                    % (victim + 1, pids[victim], t_stop, how, attempt + 1))
                self.stop.wait(max(0, a.stop_seconds - (self.now() - t_stop)))
                if a.heal_cmd:
                    self.shell(a.heal_cmd, victim)
                os.kill(pids[victim], signal.SIGCONT)
                self.partition_window = (t_stop, self.now())
                say("partition: SIGCONT at %.1fs" % self.now())
                return
            os.kill(pids[victim], signal.SIGCONT)
            time.sleep(1)
        say("partition: no mount was found holding the lock in 12 attempts")
        self.partition_window = None

    def shell(self, template, victim):
        cmd = template.replace("{mount}", "m%d" % (victim + 1))
        status, out = self.shell_cmds.run(cmd)
        say("partition: %s -> %d %s" % (cmd, status, out.strip()[-200:]))

    # --- the run -----------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.shell_cmds = Shell(os.getcwd())
        try:
            self.start_replicas()
            self.start_haproxy()
            if a.log_writer:
                self.writer_out = open(os.path.join(self.work, "log-writer.stdout"), "wb")
                self.spawn("log-writer", [os.path.join(a.bin, "log-writer")],
                           {"DATA_DIR": self.dirs[0], "LOG_INTERVAL": "100ms", "RUST_LOG": "warn"},
                           stdout=self.writer_out)
            self.t0 = time.monotonic()
            threads = [threading.Thread(target=self.pings_poller, args=(k,), daemon=True)
                       for k in range(a.pollers)]
            if a.pollers:
                threads.append(threading.Thread(target=self.readyz_poller, daemon=True))
            if not a.no_reader:
                threads.append(threading.Thread(target=self.counter_reader, daemon=True))
            if a.log_writer:
                threads.append(threading.Thread(target=self.log_reader, daemon=True))
            for t in threads:
                t.start()
            budget = [a.requests] if a.requests else None
            loaders = [threading.Thread(target=self.load_worker, args=(budget,), daemon=True)
                       for _ in range(a.concurrency)]
            for t in loaders:
                t.start()
            part = None
            if a.fuse_pids:
                part = threading.Thread(target=self.partition, daemon=True)
                part.start()
            if budget is None:
                self.stop.wait(a.duration)
                self.stop.set()
            for t in loaders:
                t.join()
            self.elapsed = self.now()
            self.stop.set()
            if part:
                part.join()
            for t in threads:
                t.join(10)
            return self.verdict()
        finally:
            self.stop.set()
            for pid in (a.fuse_pids or "").split(","):
                if pid:
                    os.kill(int(pid), signal.SIGCONT)  # never leave a client stopped
            self.stop_all()
            self.shell_cmds.close()

    def final_count(self):
        """The count once every replica is idle: `pingpong counter get` through each mount,
        after the caches' 1 s lifetime; the mounts must agree."""
        time.sleep(2)
        counts = []
        for d in self.dirs:
            r = subprocess.run([os.path.join(self.args.bin, "pingpong"), "counter", "get"],
                               env={**os.environ, "DATA_DIR": d, "RUST_LOG": "error"},
                               capture_output=True, text=True, timeout=60)
            counts.append(int(r.stdout.strip()) if r.returncode == 0 else "error: " + r.stderr.strip()[-200:])
        return counts

    def verdict(self):
        a = self.args
        # After the count settles: a number whose answer could not be written is counted
        # abandoned as its connection ends, a moment after its client has gone.
        counts = self.final_count()
        abandoned = []
        for r in self.replicas:
            status, body = Http(r["port"], timeout=5).get("/metrics")
            abandoned.append(metric(body, "pingpong_abandoned_total") if status == 200 else None)
        readable = [c for c in counts if isinstance(c, int)]
        final = readable[0] if readable else None
        ok = [x for x in self.answers if x[2] == 200]
        numbers = [int(x[3].split()[1]) for x in ok]
        distinct = len(set(numbers))
        dups = len(numbers) - distinct
        fivexx = sum(1 for x in self.answers if x[2] is not None and x[2] >= 500)
        failed = [x for x in self.answers if x[2] != 200]
        f = {
            "label": a.label,
            "replicas": a.replicas,
            "requests": len(self.answers),
            "answered": len(ok),
            "duplicates": dups,
            "5xx": fivexx,
            "failed": len(failed),
            "req_per_s": round(len(ok) / self.elapsed, 1) if self.elapsed else 0,
            "seconds": round(self.elapsed, 1),
            "abandoned": sum(x for x in abandoned if x is not None),
            "final_count": final,
            "final_count_by_mount": counts,
            "max_number": max(numbers) if numbers else -1,
            "notes": self.notes,
        }
        if self.partition_window:
            s, c = self.partition_window
            # By when the answer came: a request in flight at the stop fails during it.
            f["failed_before_partition"] = sum(1 for x in failed if x[1] < s)
            f["failed_during_partition"] = sum(1 for x in failed if s <= x[1] < c)
            f["failed_after_partition"] = sum(1 for x in failed if x[1] >= c)
            f["partition_seconds"] = round(c - s, 1)
            f["answered_during_partition"] = sum(1 for x in ok if s <= x[1] < c)
        if a.log_writer:
            f["output_log_reads"] = getattr(self, "log_reads", 0)
            f["output_log_last"] = getattr(self, "log_last", -1)
            self.writer_out.close()
            with open(os.path.join(self.work, "log-writer.stdout"), "rb") as fh:
                printed = [int(x) for x in re.findall(rb"Ping / Pongs: (\d+)", fh.read())]
            f["log_writer_entries"] = len(printed)
            back = sum(1 for x, y in zip(printed, printed[1:]) if y < x)
            if back:
                self.problem("log-writer's own entries went backwards %d times" % back)
            with open(os.path.join(self.work, "log-writer.log"), "rb") as fh:
                f["log_writer_log_lines"] = len(fh.read().splitlines())
        # The longest time without a single 200: what a user of the service sees as an outage.
        ends = sorted(x[1] for x in ok)
        edges = [0.0] + ends + [self.elapsed]
        f["longest_gap_s"] = round(max(b - a_ for a_, b in zip(edges, edges[1:])), 2)
        f["no_server_503"] = sum(1 for x in failed if x[2] == 503 and "No server is available" in x[3])
        statuses = {}
        for x in failed:
            key = str(x[2]) + " " + (x[3].strip()[:70] if x[2] else x[3][:40])
            statuses[key] = statuses.get(key, 0) + 1
        f["failures_by_kind"] = dict(sorted(statuses.items(), key=lambda kv: -kv[1])[:6])
        for k, v in f.items():
            say("figure %s %s" % (k, json.dumps(v) if isinstance(v, (dict, list)) else v))
        say("FIGURES " + json.dumps(f))
        for p in self.problems:
            say("problem:", p)

        checks = []

        def check(name, good, detail=""):
            checks.append((name, good, detail))

        check("no number handed out twice", dups == 0, "%d duplicates" % dups)
        exact = final is not None and final == len(ok) + f["abandoned"] and None not in abandoned
        check("count exact (final = answered + abandoned)", exact,
              "final %s, answered %d, abandoned %s" % (final, len(ok), abandoned))
        if a.fuse_pids:
            # A mount the filesystem evicted stays dead (CephFS): the others must agree.
            check("the readable mounts agree on the final count",
                  readable and len(set(readable)) == 1, "%s" % counts)
        else:
            check("both mounts agree on the final count",
                  len(readable) == len(counts) and len(set(readable)) == 1, "%s" % counts)
        check("every number below the final count",
              not numbers or (final is not None and max(numbers) < final),
              "max %s, final %s" % (f["max_number"], final))
        if self.partition_window is None and not a.fuse_pids:
            check("no 5xx", fivexx == 0, "%d of %d" % (fivexx, len(self.answers)))
            check("no failed request", len(failed) == 0, "%d of %d" % (len(failed), len(self.answers)))
        if a.fuse_pids:
            check("the partition happened", self.partition_window is not None)
            # The point of several nodes: the filesystem gives the stopped client's lock away
            # and the replicas on the other mount go on before it comes back.
            check("the other mount's replicas answered during the partition",
                  self.partition_window is not None and f.get("answered_during_partition", 0) > 0,
                  "%s answered while the lock holder's mount was stopped"
                  % f.get("answered_during_partition"))
        check("no reader or poller saw the count go backwards or unparseable",
              not self.problems, "%d problems" % self.notes.get("problems", 0))
        if a.log_writer:
            check("output.log was read", f["output_log_reads"] > 0, "%d reads" % f["output_log_reads"])

        if a.expect_hazard:
            shown = dups > 0 or fivexx > 0
            say("%s the hazard is shown (%d duplicates, %d 5xx of %d)"
                % ("ok    " if shown else "FAILED", dups, fivexx, len(self.answers)))
            return 0 if shown else 1
        bad = 0
        for name, good, detail in checks:
            say("%s %s%s" % ("ok    " if good else "FAILED", name, "" if good else " (%s)" % detail))
            bad += not good
        return 1 if bad else 0


def metric(text, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.e+]+)$" % re.escape(name), text or "", re.M)
    return int(float(m.group(1))) if m else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin", required=True, help="directory holding pingpong and log-writer")
    p.add_argument("--mounts", nargs="+", required=True, help="the mounts (or directories)")
    p.add_argument("--work", required=True, help="logs and the HAProxy config go here")
    p.add_argument("--subdir", help="DATA_DIR below each mount (default: a fresh name)")
    p.add_argument("--label", default="run")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--requests", type=int, help="stop after K requests instead of --duration")
    p.add_argument("--port-base", type=int, default=19000)
    p.add_argument("--pingpong-on", type=int, nargs="+",
                   help="indexes of the mounts the replicas alternate over (default: all)")
    p.add_argument("--log-writer", action="store_true",
                   help="log-writer on the first mount, output.log read on the second")
    p.add_argument("--fuse-pids", help="PID1,PID2: the FUSE clients of the two mounts (partition)")
    p.add_argument("--cut-cmd", help="run once the client is stopped ({mount}: m1 or m2), "
                   "e.g. to drop its packets so that the servers' timeouts fire")
    p.add_argument("--heal-cmd", help="run before SIGCONT ({mount}: m1 or m2)")
    p.add_argument("--holder-cmd", help="prints the PIDs of the FUSE clients holding the "
                   "counter's lock, one a line (first word)")
    p.add_argument("--partition-after", type=float, default=3)
    p.add_argument("--stop-seconds", type=float, default=20)
    p.add_argument("--expect-hazard", action="store_true")
    p.add_argument("--pollers", type=int, default=2,
                   help="/pings pollers (0: none, and no /readyz poller either)")
    p.add_argument("--no-reader", action="store_true",
                   help="no reader of pingpong_counter.txt (to measure what readers cost)")
    args = p.parse_args()
    sys.exit(Run(args).run())


if __name__ == "__main__":
    main()
