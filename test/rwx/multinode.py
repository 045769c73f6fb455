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

Leader mode (--leader, SPEC §3 "The leader"): every replica of this release gets ADVERTISE_ADDR (its
own 127.0.0.x, 127.0.0.(1+n) for replica n, or 127.0.0.1 with --advertise same: addresses of
lo, none added) and INTERNAL_PORT (port base + 20 + n); the leader is the replica whose
/metrics says `pingpong_leader 1`. A thread scrapes every replica's /metrics every 0.25 s, so a
replica killed with kill -9 still counts with its last scrape. --scenario picks what happens
under the load (default `load`: nothing):

- kill-leader: kill -9 of the leader; the longest time without a 200 after the kill must stay
  under --max-gap (5 s: a request's timeout; the 1 s target is a figure, gap_after_fault_s, that
  bench/rwx-bench.py records), the time until another replica says it leads is reported;
- term-leader: SIGTERM of the leader (SHUTDOWN_DELAY --shutdown-delay for every replica);
  HAProxy's /readyz check alone takes it out: 0 failed requests expected;
- freeze-leader: SIGSTOP of the leader for --fault-seconds, then SIGCONT; every follower's
  /readyz is polled directly and must turn 503 meanwhile; the outage is reported;
- cut-follower: nftables drops a follower's packets to the leader's internal port for
  --fault-seconds (matched by the follower's cgroup, one per replica from its start, so that
  the connection it keeps to the leader is matched too; and by the address pair in case the
  follower's connection leaves from its ADVERTISE_ADDR: Linux sends from 127.0.0.1 to any
  127.0.0.x unless the socket is bound); that follower's /readyz must turn 503 with a reason,
  and failed requests stay within the load's connections (the requests it had in flight);
- hostile: no load; garbage, a wrong token, n=0, n=1025, a huge Content-Length, an old epoch,
  other paths and methods, and a slowloris, sent to the leader's internal port: each refused
  with the status SPEC §4 gives it, and /pings of every replica the same before and after;
- rolling: --replicas replicas of --old-bin (a previous release, turns at the lock) serve,
  then one by one a leader-mode replica of --bin starts beside an old one on its mount,
  HAProxy takes it in, and the old one is taken out (disabled in HAProxy, then SIGTERM):
  every number once, 0 failed requests.

The count after a kill -9 or a forward whose outcome is unknown: a number the killed process
made durable without answering, and the n of a forward a follower gave up on (counted in its
pingpong_abandoned_total whether or not the leader wrote it), make the final count differ from
answered + abandoned. Where a replica was killed, frozen or cut off, the check is therefore
answered <= final <= answered + abandoned + failed requests (a failed request took at most one
number), and the difference final - (answered + abandoned) is reported; everywhere else the
count must be exact.

Python 3 standard library only.
"""

import argparse
import http.client
import json
import os
import re
import random
import signal
import socket
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
        self.replicas = []
        self.stopped_dir = None  # the partition's stopped mount, once it has been stopped
        self.uncertain = False  # a replica killed, frozen or cut off: the count is a range
        self.fault_window = None  # (start, end) of the scenario's fault, relative to t0
        self.fault_figures = {}
        self.fault_error = None
        self.extra_checks = []  # (name, good, detail) found by a scenario's fault

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

    def internal_port(self, n):
        return self.args.port_base + 20 + n

    def advertise_addr(self, n):
        return "127.0.0.1" if self.args.advertise == "same" else "127.0.0.%d" % (1 + n)

    def spawn_replica(self, n, mount, binary, leader):
        """Replica n (its port is port(n)) on mount index MOUNT; LEADER: leader mode's variables."""
        env = {
            "PORT": str(self.port(n)),
            "DATA_DIR": self.dirs[mount],
            "RUST_LOG": "info" if leader else "warn",
            "SHUTDOWN_DELAY": self.args.shutdown_delay,
        }
        if leader:
            env["ADVERTISE_ADDR"] = self.advertise_addr(n)
            env["INTERNAL_PORT"] = str(self.internal_port(n))
        p = self.spawn("pingpong-%d" % n, [os.path.join(binary, "pingpong")], env)
        cgroup = None
        if self.args.scenario == "cut-follower":
            # A cgroup of its own from the start: a socket belongs to the cgroup its process was
            # in when it was made, and a follower keeps its connection to the leader from
            # batch to batch, so a cgroup joined at the cut would not match that connection.
            cgroup = os.path.join(cgroup2_mount(), "rwxcut%d-%d" % (os.getpid(), n))
            os.makedirs(cgroup, exist_ok=True)
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
        r = {"n": n, "port": self.port(n), "mount": mount, "proc": p, "leader_mode": leader,
             "addr": env.get("ADVERTISE_ADDR"), "internal": self.internal_port(n) if leader else None,
             "dead": False, "cgroup": cgroup}
        self.replicas.append(r)
        return r

    def start_replicas(self):
        os.makedirs(self.dirs[0], exist_ok=True)
        self.replicas = []
        on = self.args.pingpong_on or list(range(len(self.dirs)))
        rolling = self.args.scenario == "rolling"
        for i in range(self.args.replicas):
            # Rolling: the previous release's replicas first; the new ones start under load.
            self.spawn_replica(i + 1, on[i % len(on)], self.args.old_bin if rolling else self.args.bin,
                               self.args.leader and not rolling)
        # The counter's reader reads through a mount no replica uses, else the last one.
        used = {r["mount"] for r in self.replicas}
        free = [k for k in range(len(self.dirs)) if k not in used]
        self.reader_dir = self.dirs[free[0] if free else -1]
        for r in self.replicas:
            self.wait_ok(r["port"], "/readyz", 30, "replica %d" % r["n"])
        # In rolling, HAProxy knows the new replicas' ports from the start (disabled).
        self.servers = self.args.replicas * (2 if rolling else 1)

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
        self.stats_port = self.port(self.servers + 1)
        # test/haproxy.sh's configuration, the Service's stand-in in the other tests.
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cfg = subprocess.run(
            ["bash", "-c", '. test/haproxy.sh && haproxy_config "$@"', "haproxy_config",
             str(self.lb_port), str(self.stats_port)] + [str(self.port(n + 1)) for n in range(self.servers)],
            cwd=repo, capture_output=True, text=True, check=True).stdout
        # The runtime API (rolling: servers taken in and out as a Service's endpoints are).
        self.haproxy_socket = os.path.join(self.work, "haproxy.sock")
        cfg = cfg.replace("global\n", "global\n  stats socket %s level admin\n" % self.haproxy_socket, 1)
        for n in range(len(self.replicas) + 1, self.servers + 1):
            cfg = re.sub(r"(?m)^(  server r%d .*)$" % n, r"\1 disabled", cfg)
        path = os.path.join(self.work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.spawn("haproxy", ["haproxy", "-db", "-f", path], {})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = self.haproxy_states()
            up = [s for s in states.values() if s == "UP"]
            if len(states) == self.servers and len(up) == len(self.replicas):
                return
            time.sleep(0.2)
        raise SystemExit("HAProxy: servers not all UP within 15 s: %s" % self.haproxy_states())

    def haproxy_command(self, command):
        """One command of HAProxy's runtime API, e.g. `disable server pingpong/r1`."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as so:
            so.settimeout(5)
            so.connect(self.haproxy_socket)
            so.sendall(command.encode() + b"\n")
            out = b""
            while True:
                chunk = so.recv(4096)
                if not chunk:
                    break
                out += chunk
        return out.decode(errors="replace").strip()

    def haproxy_wait(self, n, want, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.haproxy_states().get("r%d" % n) == want:
                return True
            time.sleep(0.1)
        return False

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
        for r in getattr(self, "replicas", []):
            if r.get("cgroup"):
                try:
                    os.rmdir(r["cgroup"])
                except OSError:
                    pass

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
                if last >= 0 and self.stopped_dir == self.reader_dir:
                    # CephFS: the mount whose client was stopped is evicted, and its opens
                    # fail (ENOENT, ESHUTDOWN): the mount is dead, the file did not vanish.
                    self.note("counter reader: ENOENT on the stopped mount")
                elif last >= 0:
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
            if a.leader:
                # Leader mode: the leader holds the lock, and /metrics says which replica leads.
                leader = self.find_leader()
                victim = leader["mount"]
            others = [r for r in self.replicas if r["mount"] != victim]
            before = [self.increments(r) for r in others]
            self.stopped_dir = self.dirs[victim]
            os.kill(pids[victim], signal.SIGSTOP)
            t_stop = self.now()
            if a.leader:
                holds = True
                how = "its replica %d leads (pingpong_leader 1)" % leader["n"]
                # Forwards to it end unknown, its own fenced write fails: the count is a range.
                self.uncertain = True
            elif a.holder_cmd:
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
                self.stop.wait(max(0, a.stop_seconds - 1 - (self.now() - t_stop)))
                for r in others:
                    self.describe(r, "1 s before SIGCONT")
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

    def describe(self, r, when):
        """What a replica says of itself (its own /readyz) and where its threads wait (wchan),
        for the diagnosis of a replica that does not take over."""
        status, body = Http(r["port"], timeout=2).get("/readyz")
        waits = {}
        try:
            for tid in os.listdir("/proc/%d/task" % r["proc"].pid):
                with open("/proc/%d/task/%s/wchan" % (r["proc"].pid, tid)) as f:
                    w = f.read().strip() or "running"
                waits[w] = waits.get(w, 0) + 1
        except OSError:
            pass
        say("partition: %s, replica %d (mount %d): /readyz %s %s; threads waiting in %s"
            % (when, r["n"], r["mount"] + 1, status, (body or "").strip()[:200], waits))

    def shell(self, template, victim):
        cmd = template.replace("{mount}", "m%d" % (victim + 1))
        status, out = self.shell_cmds.run(cmd)
        say("partition: %s -> %d %s" % (cmd, status, out.strip()[-200:]))

    # --- leader mode: metrics, the leader, the faults -----------------------------------------

    def scrape(self, r, timeout=1):
        """The replica's /metrics as {name: value} for the gauges and counters used here, also
        kept as its last scrape (what is known of it once it is killed)."""
        status, body = Http(r["port"], timeout=timeout).get("/metrics")
        if status != 200:
            return None
        m = {k: metric(body, k) for k in ("pingpong_leader", "pingpong_leader_epoch",
                                          "pingpong_abandoned_total", "pingpong_forwarded_total",
                                          "pingpong_increments_total",
                                          "pingpong_forward_unknown_total")}
        with self.lock:
            r["metrics"] = m
            r["scraped_at"] = self.now() if self.t0 else 0.0
        return m

    def metrics_scraper(self):
        while not self.stop.is_set():
            for r in list(self.replicas):
                if not r["dead"]:
                    self.scrape(r)
            self.stop.wait(0.25)

    def leaders(self):
        """The live replicas saying `pingpong_leader 1`, scraped now."""
        out = []
        for r in self.replicas:
            if not r["dead"] and r["proc"].poll() is None:
                m = self.scrape(r)
                if m and m["pingpong_leader"] == 1:
                    out.append(r)
        return out

    def find_leader(self, seconds=15):
        deadline = time.monotonic() + seconds
        seen = []
        while time.monotonic() < deadline:
            seen = self.leaders()
            if len(seen) == 1:
                return seen[0]
            if len(seen) > 1:
                self.problem("%d replicas say they lead: %s" % (len(seen), [r["n"] for r in seen]))
            time.sleep(0.05)
        raise RuntimeError("no single leader within %ss (%s)" % (seconds, [r["n"] for r in seen]))

    def watch_readyz(self, rs, until):
        """Polls each replica's own /readyz every 0.1 s until the event UNTIL is set: per
        replica, the (time, status, body) of every change."""
        seen = {r["n"]: [] for r in rs}
        conns = {r["n"]: Http(r["port"], timeout=1) for r in rs}
        # Not bounded by the load's end: the fault ends the watch once the replicas are ready
        # again (or after its own deadline).
        while not until.is_set():
            for r in rs:
                status, body = conns[r["n"]].get("/readyz")
                log = seen[r["n"]]
                if not log or log[-1][1] != status:
                    log.append((round(self.now(), 2), status, (body or "").strip()[:160]))
            time.sleep(0.1)
        return seen

    def fault(self):
        """The scenario's fault, --fault-after seconds into the load."""
        a = self.args
        if self.stop.wait(a.fault_after):
            return
        try:
            getattr(self, "fault_" + a.scenario.replace("-", "_"))()
        except Exception as e:  # the verdict says the fault did not happen, and why
            self.fault_error = "%s: %s" % (type(e).__name__, e)
            say("fault: %s" % self.fault_error)

    def fault_kill_leader(self):
        leader = self.find_leader()
        self.scrape(leader)  # its abandoned count as close to its death as can be had
        leader["proc"].kill()
        t = self.now()
        leader["dead"] = True
        self.uncertain = True
        say("fault: kill -9 of the leader, replica %d (epoch %d) at %.2fs"
            % (leader["n"], leader["metrics"]["pingpong_leader_epoch"], t))
        new = self.find_leader(10)
        self.fault_figures = {"killed": leader["n"], "new_leader": new["n"],
                              "new_leader_after_s": round(self.now() - t, 2),
                              "new_epoch": new["metrics"]["pingpong_leader_epoch"]}
        self.fault_window = (t, t)
        say("fault: replica %d leads (epoch %d) %.2fs after the kill"
            % (new["n"], new["metrics"]["pingpong_leader_epoch"], self.now() - t))

    def fault_term_leader(self):
        leader = self.find_leader()
        leader["proc"].terminate()
        t = self.now()
        say("fault: SIGTERM of the leader, replica %d, at %.2fs (SHUTDOWN_DELAY %s)"
            % (leader["n"], t, self.args.shutdown_delay))
        rest = [r for r in self.replicas if r is not leader]
        deadline = time.monotonic() + 30
        new = None
        while time.monotonic() < deadline and new is None:
            led = [r for r in rest if (self.scrape(r) or {}).get("pingpong_leader") == 1]
            new = led[0] if led else None
            if new is None:
                time.sleep(0.05)
        try:
            code = leader["proc"].wait(30)
        except subprocess.TimeoutExpired:
            code = None
        leader["dead"] = True
        self.fault_window = (t, self.now())
        self.fault_figures = {"terminated": leader["n"], "exit_status": code,
                              "new_leader": new and new["n"],
                              "new_leader_after_s": round(self.now() - t, 2) if new else None}
        say("fault: the old leader exited %s at %.2fs; new leader %s"
            % (code, self.now(), new and new["n"]))
        if code != 0:
            self.problem("the terminated leader exited with status %s, not 0" % code)

    def fault_freeze_leader(self):
        leader = self.find_leader()
        followers = [r for r in self.replicas if r is not leader]
        done = threading.Event()
        box = {}
        watcher = threading.Thread(target=lambda: box.update(self.watch_readyz(followers, done)))
        watcher.start()
        leader["proc"].send_signal(signal.SIGSTOP)
        t = self.now()
        self.uncertain = True
        say("fault: SIGSTOP of the leader, replica %d, at %.2fs" % (leader["n"], t))
        try:
            self.stop.wait(self.args.fault_seconds)
        finally:
            leader["proc"].send_signal(signal.SIGCONT)
        t_cont = self.now()
        say("fault: SIGCONT at %.2fs" % t_cont)
        # Readiness back on every follower (or 10 s) before the watch ends.
        for r in followers:
            self.wait_ok_quiet(r["port"], "/readyz", 10)
        done.set()
        watcher.join()
        self.fault_window = (t, t_cont)
        self.readyz_seen = box
        unready = {}
        for r in followers:
            log = box.get(r["n"], [])
            first = next((x for x in log if x[1] == 503 and t <= x[0] <= t_cont + 0.5), None)
            unready[r["n"]] = round(first[0] - t, 2) if first else None
            say("fault: follower %d's /readyz: %s" % (r["n"], log))
            self.check_later("follower %d turned unready while the leader was frozen" % r["n"],
                             first is not None, "its /readyz: %s" % log)
        now_leader = self.leaders()
        self.fault_figures = {"frozen": leader["n"], "frozen_s": round(t_cont - t, 2),
                              "followers_unready_after_s": unready,
                              "leader_after": [r["n"] for r in now_leader]}

    def fault_cut_follower(self):
        leader = self.find_leader()
        others = [r for r in self.replicas if r is not leader]
        # The follower on the other mount than the leader's if there is one: a node of its own.
        follower = next((r for r in others if r["mount"] != leader["mount"]), others[0])
        table = "rwxcut%d" % os.getpid()
        cg_path = follower["cgroup"]
        rules = [
            "add table inet %s" % table,
            "add chain inet %s out { type filter hook output priority 0 ; policy accept ; }" % table,
            'add rule inet %s out socket cgroupv2 level 1 "%s" ip daddr %s tcp dport %d counter drop'
            % (table, os.path.relpath(cg_path, "/sys/fs/cgroup"), leader["addr"], leader["internal"]),
        ]
        if follower["addr"] != leader["addr"]:
            rules.append("add rule inet %s out ip saddr %s ip daddr %s tcp dport %d counter drop"
                         % (table, follower["addr"], leader["addr"], leader["internal"]))
        done = threading.Event()
        box = {}
        watcher = threading.Thread(target=lambda: box.update(self.watch_readyz([follower], done)))
        watcher.start()
        self.uncertain = True
        for rule in rules:
            status, out = self.shell_cmds.run("nft '%s'" % rule)
            if status:
                raise RuntimeError("nft %s: %s" % (rule, out))
        t = self.now()
        say("fault: follower %d (%s, mount %d) cut off from the leader %d's internal port %s:%d at %.2fs"
            % (follower["n"], follower["addr"], follower["mount"] + 1, leader["n"], leader["addr"],
               leader["internal"], t))
        try:
            self.stop.wait(self.args.fault_seconds)
        finally:
            counters = self.shell_cmds.run("nft list table inet %s" % table)[1]
            self.shell_cmds.run("nft delete table inet %s" % table)
        t_heal = self.now()
        dropped = [int(x) for x in re.findall(r"counter packets (\d+)", counters)]
        say("fault: healed at %.2fs; packets dropped by rule: %s" % (t_heal, dropped))
        back = self.wait_ok_quiet(follower["port"], "/readyz", 15)
        done.set()
        watcher.join()
        log = box.get(follower["n"], [])
        say("fault: follower %d's /readyz: %s" % (follower["n"], log))
        first = next((x for x in log if x[1] == 503 and t <= x[0] <= t_heal + 0.5), None)
        self.fault_window = (t, t_heal)
        self.fault_figures = {"cut": follower["n"], "leader": leader["n"], "dropped_packets": dropped,
                              "unready_after_s": round(first[0] - t, 2) if first else None,
                              "unready_reason": first[2] if first else None,
                              "ready_again_after_heal_s": round(back - t_heal, 2) if back else None}
        self.check_later("the cut follower's /readyz turned 503 with a reason",
                         first is not None and bool(first[2]), "its /readyz: %s" % log)
        self.check_later("the cut follower is ready again after the heal", back is not None)

    def wait_ok_quiet(self, port, path, seconds):
        """When (self.now()) PATH answered 200, or None after SECONDS."""
        h = Http(port, timeout=1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if h.get(path)[0] == 200:
                return self.now()
            time.sleep(0.05)
        return None

    def fault_rolling(self):
        """Each old replica in turn: a new leader-mode one on its mount, taken in by HAProxy, then
        the old one taken out (disabled in HAProxy: its endpoint removed) and sent SIGTERM."""
        a = self.args
        steps = []
        for old in list(self.replicas[:a.replicas]):
            n = old["n"] + a.replicas
            new = self.spawn_replica(n, old["mount"], a.bin, True)
            if self.wait_ok_quiet(new["port"], "/readyz", 30) is None:
                raise RuntimeError("new replica %d not ready within 30 s" % n)
            self.haproxy_command("enable server pingpong/r%d" % n)
            if not self.haproxy_wait(n, "UP", 10):
                raise RuntimeError("HAProxy: r%d not UP: %s" % (n, self.haproxy_states()))
            self.stop.wait(a.fault_seconds)
            self.haproxy_command("disable server pingpong/r%d" % old["n"])
            self.scrape(old)
            old["proc"].terminate()
            code = old["proc"].wait(30)
            old["dead"] = True
            steps.append("r%d in, r%d out (exit %s) at %.1fs" % (n, old["n"], code, self.now()))
            say("rolling: " + steps[-1])
            if code != 0:
                self.problem("old replica %d exited with status %s" % (old["n"], code))
            self.stop.wait(a.fault_seconds)
        leader = self.find_leader(10)
        self.fault_figures = {"steps": steps, "leader": leader["n"]}
        self.fault_window = None

    def check_later(self, name, good, detail=""):
        with self.lock:
            self.extra_checks.append((name, good, detail))

    # --- hostile internal requests -------------------------------------------------------------

    HOSTILE_EXPECTED = [
        # (case, expected statuses; None: the connection closed without an answer)
        ("garbage bytes", {400, None}),
        ("wrong token", {403}),
        ("n=0", {400}),
        ("n=1025", {400}),
        ("n not a number", {400}),
        ("huge Content-Length", {413}),
        ("no Content-Length", {400, 411}),
        ("old epoch", {421}),
        ("other path", {404}),
        ("GET", {405}),
    ]

    def raw(self, addr, port, data, timeout=5):
        """Sends DATA on a fresh connection: (status or None, the answer's first bytes)."""
        with socket.create_connection((addr, port), timeout=timeout) as so:
            so.sendall(data)
            try:
                so.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            out = b""
            try:
                while len(out) < 65536:
                    chunk = so.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            except OSError as e:
                out += ("<%s>" % e).encode()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", out)
        return (int(m.group(1)) if m else None), out[:300].decode(errors="replace")

    def slowloris(self, addr, port, box):
        """A request head one byte every 0.2 s: when the server closes the connection."""
        head = (b"POST /internal/increments HTTP/1.1\r\nHost: x\r\nx-pingpong-epoch: 1\r\n"
                + b"x-pingpong-padding: " + b"a" * 400 + b"\r\n")
        t = time.monotonic()
        sent = 0
        try:
            with socket.create_connection((addr, port), timeout=30) as so:
                so.settimeout(0.2)
                while time.monotonic() - t < 30:
                    so.send(head[sent % len(head):sent % len(head) + 1])
                    sent += 1
                    try:
                        got = so.recv(4096)
                        box["answer"] = got[:120].decode(errors="replace")
                        break  # an answer or the close
                    except socket.timeout:
                        continue
        except OSError as e:
            box["answer"] = "<%s>" % e
        box["closed_after_s"] = round(time.monotonic() - t, 1)
        box["bytes_sent"] = sent

    def run_hostile(self):
        # A replica leads once it has written: a few requests through HAProxy first, recorded.
        h = Http(self.lb_port)
        for _ in range(20):
            t = self.now()
            status, body = h.get("/pingpong")
            self.answers.append((t, self.now(), status, body))
        h.close()
        leader = self.find_leader()
        m = self.scrape(leader)
        epoch = m["pingpong_leader_epoch"]
        addr, port = leader["addr"], leader["internal"]
        before = {r["n"]: Http(r["port"]).get("/pings") for r in self.replicas}
        slow = {}
        slow_thread = threading.Thread(target=self.slowloris, args=(addr, port, slow))
        slow_thread.start()
        wrong = "%032x" % random.getrandbits(128)
        # The current token, read from the volume as a follower reads it: the cases below then
        # fail for the one thing each gets wrong, and a control request with it must succeed.
        try:
            block = read_leader_block(self.dirs[leader["mount"]])
        except OSError as e:
            block = None
            say("hostile: the leader block is unreadable: %s" % e)
        good = block["token"] if block and block["epoch"] == epoch else None
        token = good or wrong
        say("hostile: leader %d at %s:%d, epoch %d, block %s" % (
            leader["n"], addr, port, epoch,
            {k: v for k, v in (block or {}).items() if k != "token"} or None))

        def post(n_body, epoch_=epoch, token_=token, extra=b"", length=None, path="/internal/increments",
                 method="POST"):
            body = n_body.encode()
            head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\nx-pingpong-epoch: %s\r\nx-pingpong-token: %s\r\n" % (
                method, path, addr, port, epoch_, token_)
            if length != "none":
                head += "Content-Length: %s\r\n" % (len(body) if length is None else length)
            return head.encode() + extra + b"Connection: close\r\n\r\n" + body

        requests = {
            "garbage bytes": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
            "wrong token": post("1", token_=wrong),
            "n=0": post("0"),
            "n=1025": post("1025"),
            "n not a number": post("one"),
            "huge Content-Length": post("1", length=10 ** 12),
            "no Content-Length": post("1", length="none"),
            "old epoch": post("1", epoch_=max(epoch - 1, 0)),
            "other path": post("1", path="/internal/other"),
            "GET": post("", method="GET"),
        }
        results = {}
        for case, expected in self.HOSTILE_EXPECTED:
            try:
                status, answer = self.raw(addr, port, requests[case])
            except OSError as e:
                status, answer = None, "<%s>" % e
            results[case] = (status, answer.split("\r\n")[0] + " | " + answer.split("\r\n\r\n", 1)[-1][:100])
            self.check_later("hostile %s: refused with %s" % (case, "/".join(str(x) for x in sorted(
                expected, key=str))), status in expected, "got %s: %r" % (status, answer[:200]))
        slow_thread.join(40)
        time.sleep(1.2)  # /pings' caches live 1 s
        middle = {r["n"]: Http(r["port"]).get("/pings") for r in self.replicas}
        self.check_later("hostile: /pings of every replica the same before and after",
                         before == middle, "before %s, after %s" % (before, middle))
        if good:
            # The control: the same request with the right epoch and token is served.
            status, answer = self.raw(addr, port, post("1"))
            first = answer.split("\r\n\r\n", 1)[-1].strip()
            self.check_later("hostile control: the right epoch and token get 200 and a number",
                             status == 200 and first.isdigit(), "got %s: %r" % (status, answer[:200]))
            if status == 200 and first.isdigit():
                with self.lock:
                    self.answers.append((self.now(), self.now(), 200, "internal %s" % first))
        else:
            self.check_later("hostile: the leader block names the leader's epoch", False,
                             "block %s, metrics epoch %d" % (block and block["epoch"], epoch))
        self.check_later("hostile slowloris: the connection closed within 12 s, no answer but a 408",
                         slow.get("closed_after_s", 99) <= 12 and
                         (slow.get("answer", "") in ("", None) or "408" in slow.get("answer", "")
                          or slow.get("answer", "").startswith("<")),
                         "%s" % slow)
        still = self.find_leader(5)
        self.check_later("hostile: the same leader, still leading", still is leader,
                         "replica %d leads now" % still["n"])
        self.fault_figures = {"leader": leader["n"], "epoch": epoch,
                              "statuses": {k: v[0] for k, v in results.items()},
                              "slowloris": slow, "pings_before": {k: v[1] for k, v in before.items()}}
        for k, v in results.items():
            say("hostile: %-20s -> %s" % (k, v[1][:150]))
        say("hostile: slowloris -> %s" % slow)

    # --- the run -----------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.shell_cmds = Shell(os.getcwd())
        try:
            self.start_replicas()
            self.start_haproxy()
            if a.scenario == "hostile":
                self.t0 = time.monotonic()
                self.run_hostile()
                self.elapsed = self.now()
                return self.verdict()
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
            scraper = threading.Thread(target=self.metrics_scraper, daemon=True)
            scraper.start()
            fault = None
            if a.scenario != "load":
                fault = threading.Thread(target=self.fault, daemon=True)
                fault.start()
            if budget is None:
                # The fault's steps take what they take (rolling): the load outlives them.
                self.stop.wait(a.duration)
                if fault:
                    fault.join()
                    if a.scenario == "rolling":
                        time.sleep(1)
                self.stop.set()
            for t in loaders:
                t.join()
            self.elapsed = self.now()
            self.stop.set()
            if part:
                part.join()
            if fault:
                fault.join()
            scraper.join(10)
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
            p = subprocess.Popen([os.path.join(self.args.bin, "pingpong"), "counter", "get"],
                                 env={**os.environ, "DATA_DIR": d, "RUST_LOG": "error"},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                # A mount whose client was evicted (CephFS after a partition) can leave a
                # lookup hanging in the kernel for good: the child cannot even be killed, so
                # it is left behind (the teardown's unmount ends it), never waited for.
                p.kill()
                counts.append("error: counter get did not return within 60 s (the mount does "
                              "not answer)")
                continue
            counts.append(int(out.strip()) if p.returncode == 0 else "error: " + err.strip()[-200:])
        return counts

    def verdict(self):
        a = self.args
        # After the count settles: a number whose answer could not be written is counted
        # abandoned as its connection ends, a moment after its client has gone.
        counts = self.final_count()
        abandoned = []
        for r in self.replicas:
            # A live replica now; a dead one as last scraped (what is known after a kill -9).
            m = None if r["dead"] else self.scrape(r, timeout=5)
            if m is None:
                m = r.get("metrics")
            abandoned.append(m["pingpong_abandoned_total"] if m else None)
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
        if self.fault_window:
            s_, c_ = self.fault_window
            # From the fault on: the first answer after its start, then every gap until the end.
            after = [e for e in ends if e >= s_]
            f["gap_after_fault_s"] = round(max(b - a_ for a_, b in zip([s_] + after, after + [self.elapsed])), 2)
            f["failed_during_fault"] = sum(1 for x in failed if x[1] >= s_ and x[0] <= c_ + 0.5)
            f["fault_window_s"] = [round(s_, 2), round(c_, 2)]
        if final is not None and None not in abandoned:
            # What the count holds beyond the answers and the abandoned (a kill -9's unanswered
            # numbers), or short of them (forwards counted abandoned that were never written).
            f["unaccounted"] = final - len(ok) - f["abandoned"]
        if self.fault_figures:
            f["fault"] = self.fault_figures
        if a.leader:
            f["replica_metrics"] = {r["n"]: {k.replace("pingpong_", ""): v for k, v in
                                             (r.get("metrics") or {}).items()} for r in self.replicas}
        f["scenario"] = a.scenario
        f["leader_mode"] = bool(a.leader)
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
        if self.uncertain:
            # A kill -9, a freeze or a cut: numbers made durable but never answered, and forwards
            # counted abandoned that the leader never wrote: a range (see the module's doc).
            within = (final is not None and None not in abandoned
                      and len(ok) <= final <= len(ok) + f["abandoned"] + len(failed))
            check("count accounted (answered <= final <= answered + abandoned + failed)", within,
                  "final %s, answered %d, abandoned %s, failed %d"
                  % (final, len(ok), abandoned, len(failed)))
        else:
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
        if a.scenario != "load":
            check("the scenario's fault happened", self.fault_error is None and
                  (self.fault_figures or a.scenario == "hostile"), self.fault_error or "")
        if a.scenario in ("load", "term-leader", "rolling") and self.partition_window is None \
                and not a.fuse_pids:
            check("no 5xx", fivexx == 0, "%d of %d" % (fivexx, len(self.answers)))
            check("no failed request", len(failed) == 0, "%d of %d" % (len(failed), len(self.answers)))
        if a.scenario == "kill-leader" and self.fault_window:
            check("answers again within %g s of the kill (longest gap after it)" % a.max_gap,
                  f["gap_after_fault_s"] < a.max_gap, "%s s" % f["gap_after_fault_s"])
        if a.scenario == "cut-follower":
            # Until the load balancer drops the cut follower (its readiness turns 503 after 1 s,
            # HAProxy's checks need 2 more), each of the load's connections can land there with
            # a request that waits out its budget, and once more with the one it sends right after
            # a quick 503 (an unanswered forward): at most twice the connections.
            check("failed requests within twice the load's %d connections" % a.concurrency,
                  len(failed) <= 2 * a.concurrency,
                  "%d failed: %s" % (len(failed), f["failures_by_kind"]))
        checks.extend(self.extra_checks)
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


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def read_leader_block(data_dir):
    """The leader block of DATA_DIR's lock file (shared-fs/src/leader_block.rs: two 128-byte
    checksummed slots at 8 and 12 KiB; the latest valid one by (epoch, heartbeat)), read with
    O_DIRECT past the client's caches: {epoch, heartbeat, address, token, stepped_down} or None."""
    import mmap
    fd = os.open(os.path.join(data_dir, "pingpong_counter.txt.lock"), os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, 8192)
        n = os.preadv(fd, [buf], 8192)
        region = bytes(buf[:n])
    finally:
        os.close(fd)
    best = None
    for start in (0, 4096):
        slot = region[start:start + 128]
        if len(slot) < 128 or slot[:8] != b"ppleader":
            continue
        if int.from_bytes(slot[106:110], "little") != crc32c(slot[:106]):
            continue
        b = {"epoch": int.from_bytes(slot[8:16], "little"),
             "heartbeat": int.from_bytes(slot[16:24], "little"),
             "stepped_down": slot[24] == 2,
             "address": slot[26:26 + min(slot[25], 64)].decode(errors="replace"),
             "token": slot[90:106].hex()}
        if best is None or (b["epoch"], b["heartbeat"]) > (best["epoch"], best["heartbeat"]):
            best = b
    return best


def cgroup2_mount():
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    hybrid machine): a follower is cut off by its cgroup, whatever its source address."""
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, path, kind = line.split()[:3]
            if kind == "cgroup2" and path.startswith("/sys/fs/cgroup"):
                return path
    raise RuntimeError("no cgroup2 hierarchy under /sys/fs/cgroup")


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
    p.add_argument("--leader", action="store_true",
                   help="leader mode: ADVERTISE_ADDR and INTERNAL_PORT for every replica of --bin")
    p.add_argument("--advertise", choices=["distinct", "same"], default="distinct",
                   help="ADVERTISE_ADDR: 127.0.0.(1+n) for replica n, or 127.0.0.1 for all")
    p.add_argument("--scenario", default="load",
                   choices=["load", "kill-leader", "term-leader", "freeze-leader", "cut-follower",
                            "hostile", "rolling"])
    p.add_argument("--fault-after", type=float, default=2,
                   help="seconds of load before the fault (rolling: before the first step)")
    p.add_argument("--fault-seconds", type=float, default=3,
                   help="freeze-leader, cut-follower: how long; rolling: the load between steps")
    p.add_argument("--max-gap", type=float, default=5.0,
                   help="kill-leader: the longest time without an answer after the kill that "
                        "passes (a bound, not the 1 s target: that is a figure, bench/rwx-bench.py)")
    p.add_argument("--shutdown-delay", default="0s", help="SHUTDOWN_DELAY of every replica")
    p.add_argument("--old-bin", help="rolling: the directory of the previous release's pingpong")
    args = p.parse_args()
    args.bin = os.path.abspath(args.bin)  # the replicas run in --work
    args.old_bin = args.old_bin and os.path.abspath(args.old_bin)
    if args.scenario not in ("load", "rolling") and not args.leader:
        p.error("--scenario %s needs --leader" % args.scenario)
    if args.scenario == "rolling" and not (args.old_bin and args.leader):
        p.error("--scenario rolling needs --old-bin and --leader")
    if args.leader and args.replicas > 9:
        p.error("at most 9 replicas in leader mode (internal ports port base + 21 ..)")
    sys.exit(Run(args).run())


if __name__ == "__main__":
    main()
