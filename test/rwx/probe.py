#!/usr/bin/env python3
"""Probes of what a distributed filesystem does to locks and caches across two client mounts.

Each subcommand prints what it saw, one fact per line, and the figures FACTS.md quotes. Nothing
here asserts: the facts are what they are; the harness (multinode.py) asserts the guarantees.

  probe.py partition M1 M2 --stop-pid PID [--limit S] [--cut CMD --heal CMD]
      A holder on M1 takes flock on a file and writes through that descriptor; the FUSE client
      of M1 (PID) is stopped (and CMD run, e.g. to drop its packets); a waiter on M2 asks for
      the lock for up to S seconds and, when it gets it, writes; then M1 resumes and the holder
      writes, fdatasyncs, reads and unlocks through its old descriptor; then writes through a
      descriptor of a second file it holds no lock on, and replaces a third by rename. Every
      step's result and time is printed.
  probe.py caches M1 M2
      Writes on M1 and reads on M2 in the ways a counter could be read: a fresh open, pread on
      a descriptor opened before the write, O_DIRECT, a file larger than quick-read's 64 KiB,
      under a flock, after a rename over the file.
  probe.py fdatasync M1 BACKING
      Writes and fdatasyncs on M1 and reads the bytes from BACKING (a brick file, or a command
      that prints the object) to show whether fdatasync reached the server.
"""

import argparse
import errno
import fcntl
import mmap
import os
import select
import signal
import subprocess
import sys
import time

HOLDER = r"""
import errno, fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
# A second file beside the lock file, opened without any lock on it (a record kept apart).
fd2 = os.open(sys.argv[1] + ".record", os.O_RDWR | os.O_CREAT, 0o644)
def out(*a):
    print(*a, flush=True)
fcntl.flock(fd, fcntl.LOCK_EX)
out("locked")
for line in sys.stdin:
    words = line.split()
    cmd, arg = words[0], (words[1] if len(words) > 1 else "")
    t = time.monotonic()
    try:
        if cmd == "pwrite":
            r = os.pwrite(fd, (arg + "\n").encode(), 0)
        elif cmd == "fdatasync":
            os.fdatasync(fd); r = "ok"
        elif cmd == "pread":
            r = os.pread(fd, 64, 0)
        elif cmd == "unlock":
            fcntl.flock(fd, fcntl.LOCK_UN); r = "ok"
        elif cmd == "trylock":
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); r = "ok"
        elif cmd == "fstat":
            r = os.fstat(fd).st_size
        elif cmd == "pwrite-record":
            r = os.pwrite(fd2, (arg + "\n").encode(), 0)
        elif cmd == "fdatasync-record":
            os.fdatasync(fd2); r = "ok"
        elif cmd == "rename-record":
            tmp = sys.argv[1] + ".tmp"
            tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(tfd, (arg + "\n").encode()); os.fsync(tfd); os.close(tfd)
            os.rename(tmp, sys.argv[1] + ".renamed"); r = "ok"
        else:
            r = "unknown command"
        out("%s -> %r (%.3fs)" % (cmd, r, time.monotonic() - t))
    except OSError as e:
        out("%s -> %s %s (%.3fs)" % (cmd, errno.errorcode.get(e.errno, e.errno), e.strerror,
                                     time.monotonic() - t))
"""


class Holder:
    """A process that holds flock on PATH and runs commands on its descriptor, one a line; a
    command stuck on a stopped FUSE client does not stop the probe."""

    def __init__(self, path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        first = self.expect(10)
        if first != "locked":
            raise SystemExit("holder on %s did not lock: %r" % (path, first))

    def expect(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().rstrip("\n")

    def run(self, cmd, timeout=30):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.expect(timeout)
        return line if line is not None else "%s -> no answer within %ss" % (cmd, timeout)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def say(*args):
    print(*args, flush=True)


class Timeout(Exception):
    pass


def timed(seconds, fn, *args):
    """fn(*args) with a SIGALRM deadline: (seconds taken, result or exception)."""

    def alarm(*_):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t = time.monotonic()
    try:
        result = fn(*args)
    except (Timeout, OSError) as e:
        result = e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return time.monotonic() - t, result


def describe(result):
    if isinstance(result, Timeout):
        return "timed out"
    if isinstance(result, OSError):
        return "%s %s" % (errno.errorcode.get(result.errno, result.errno), result.strerror)
    return repr(result)


def partition(args):
    name = "probe-partition-%d" % os.getpid()
    holder = Holder(os.path.join(args.m1, name))
    say("holder on m1 holds flock on", name)
    say("holder:", holder.run("pwrite holder-1"))
    say("holder:", holder.run("fdatasync"))
    say("holder:", holder.run("pwrite holder-2-unsynced"))
    say("holder:", holder.run("pwrite-record holder-record-1"))
    say("holder:", holder.run("fdatasync-record"))
    early = os.open(os.path.join(args.m2, name), os.O_RDWR) if args.open_first else None
    t0 = time.monotonic()
    os.kill(args.stop_pid, signal.SIGSTOP)
    say("SIGSTOP m1's client (pid %d)" % args.stop_pid)
    if args.cut:
        say("cut:", subprocess.run(args.cut, shell=True, capture_output=True, text=True).returncode)
    if early is None:
        waited, fd = timed(args.limit, os.open, os.path.join(args.m2, name), os.O_RDWR)
        say("waiter open on m2: %s after %.1fs" % (describe(fd), waited))
    else:
        fd = early
        say("waiter on m2 uses a descriptor opened before the stop")
    got = False
    if isinstance(fd, int):
        left = max(1, args.limit - (time.monotonic() - t0))
        waited, r = timed(left, fcntl.flock, fd, fcntl.LOCK_EX)
        got = r is None
        say("waiter flock on m2: %s after %.1fs (%.1fs after SIGSTOP)"
            % ("granted" if got else describe(r), waited, time.monotonic() - t0))
        if got:
            say("waiter pread: %s" % describe(timed(10, os.pread, fd, 64, 0)[1]))
            say("waiter pwrite: %s" % describe(timed(10, os.pwrite, fd, b"waiter\n", 0)[1]))
            say("waiter fdatasync: %s" % describe(timed(10, os.fdatasync, fd)[1]))
    if args.heal:
        say("heal:", subprocess.run(args.heal, shell=True, capture_output=True, text=True).returncode)
    os.kill(args.stop_pid, signal.SIGCONT)
    say("SIGCONT m1's client after %.1fs" % (time.monotonic() - t0))
    for cmd in ["fdatasync", "fstat", "pread", "pwrite holder-3-after-resume", "fdatasync",
                "pread", "pwrite-record holder-record-after-resume", "fdatasync-record",
                "rename-record holder-renamed-after-resume", "trylock", "unlock"]:
        say("holder:", holder.run(cmd))
    if got:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    time.sleep(args.settle)
    say("%.0fs later (the client has had time to reconnect):" % args.settle)
    for cmd in ["pwrite holder-4-late", "fdatasync", "pwrite-record holder-record-late",
                "fdatasync-record", "rename-record holder-renamed-late"]:
        say("holder:", holder.run(cmd))
    for m in (args.m1, args.m2):
        for suffix in ("", ".record", ".renamed"):
            _, r = timed(10, read_fresh, os.path.join(m, name + suffix))
            say("fresh read of %s%s on %s after %.0fs: %s" % (name, suffix, m, args.settle, describe(r)))
    holder.close()


def read_fresh(path):
    with open(path, "rb") as f:
        return f.read(64)


def fallocate_keep_size(fd):
    """fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096): changes nothing a reader sees."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, 1, 0, 4096) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def aligned_read(path, size=4096):
    """A read with O_DIRECT into an aligned buffer (an mmap is page-aligned)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, size)
        n = os.readv(fd, [buf])
        return bytes(buf[:n]).split(b"\0")[0]
    finally:
        os.close(fd)


def caches(args):
    """Each case: write on m1, then read on m2 at once, 20 times; count stale reads."""
    m1, m2 = args.m1, args.m2
    rounds = args.rounds

    def case(title, setup, write, read):
        stale = errors = 0
        examples = set()
        setup()
        for i in range(rounds):
            want = ("%d-%d" % (os.getpid(), i)).encode()
            write(want)
            try:
                got = read()
                if not got.startswith(want):
                    stale += 1
            except OSError as e:
                errors += 1
                examples.add(errno.errorcode.get(e.errno, str(e.errno)))
        say("%-62s stale %3d/%d, errors %d %s" % (title, stale, rounds, errors, sorted(examples)))

    pid = os.getpid()
    small = "probe-small-%d" % pid

    def write_small(data, name=small):
        fd = os.open(os.path.join(m1, name), os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, data + b"\n" + b" " * 8, 0)
        os.fsync(fd)
        os.close(fd)

    def write_locked(data, name=small):
        """The writer's side of a lock handoff: flock, pwrite, fdatasync, unlock."""
        fd = os.open(os.path.join(m1, name), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, data + b"\n" + b" " * 8, 0)
        os.fdatasync(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def read_open(name=small, flags=0):
        fd = os.open(os.path.join(m2, name), os.O_RDONLY | flags)
        try:
            return os.pread(fd, 64, 0)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass  # GlusterFS: close can fail with ESTALE after a rename over the file

    def warm(name=small):
        write_small(b"warm", name)
        try:
            read_open(name)
        except OSError:
            pass

    case("small file, write+fsync on m1, fresh open+read on m2", lambda: warm(), write_small,
         lambda: read_open())
    case("same, read again on m2 after a fresh open (cache warm)", lambda: warm(), write_small,
         lambda: (read_open(), read_open())[1])
    case("small file, O_DIRECT read on m2", lambda: warm(), write_small,
         lambda: aligned_read(os.path.join(m2, small)))

    held = {}

    def open_before():
        warm()
        held["fd"] = os.open(os.path.join(m2, small), os.O_RDONLY)
        os.pread(held["fd"], 64, 0)

    case("small file, pread on m2 through a descriptor opened before", open_before,
         write_small, lambda: os.pread(held["fd"], 64, 0))
    os.close(held["fd"])

    def open_before_locked():
        warm()
        held["fd"] = os.open(os.path.join(m2, small), os.O_RDWR)

    def read_locked():
        fcntl.flock(held["fd"], fcntl.LOCK_EX)
        try:
            return os.pread(held["fd"], 64, 0)
        finally:
            fcntl.flock(held["fd"], fcntl.LOCK_UN)

    case("small file, pread on m2 under flock of that descriptor (writer locks too)",
         open_before_locked, write_locked, read_locked)
    os.close(held["fd"])

    def open_before_direct():
        warm()
        held["fd"] = os.open(os.path.join(m2, small), os.O_RDWR | os.O_DIRECT)

    def read_locked_direct(keep_size_fallocate=False):
        fd = held["fd"]
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if keep_size_fallocate:
                fallocate_keep_size(fd)
            buf = mmap.mmap(-1, 4096)
            n = os.preadv(fd, [buf], 0)
            return bytes(buf[:n]).split(b"\0")[0]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    case("small file, O_DIRECT descriptor opened before, pread under flock", open_before_direct,
         write_locked, read_locked_direct)
    os.close(held["fd"])
    case("same + fallocate(KEEP_SIZE) under the flock before the pread", open_before_direct,
         write_locked, lambda: read_locked_direct(True))
    os.close(held["fd"])

    big = "probe-big-%d" % pid

    def make_big():
        fd = os.open(os.path.join(m1, big), os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, 1 << 20)  # sparse: 1 MiB, past quick-read's max-file-size (64 KiB)
        os.close(fd)
        warm(big)

    case("1 MiB sparse file, write at 0 on m1, fresh open+read on m2", make_big,
         lambda d: write_small(d, big), lambda: read_open(big))

    def open_before_big():
        make_big()
        held["fd"] = os.open(os.path.join(m2, big), os.O_RDONLY)
        os.pread(held["fd"], 64, 0)

    case("1 MiB sparse file, pread on m2 through a descriptor opened before", open_before_big,
         lambda d: write_small(d, big), lambda: os.pread(held["fd"], 64, 0))
    os.close(held["fd"])

    def open_before_big_locked():
        make_big()
        held["fd"] = os.open(os.path.join(m2, big), os.O_RDWR)
        os.pread(held["fd"], 64, 0)

    case("1 MiB sparse file, pread on m2 under flock of that descriptor", open_before_big_locked,
         lambda d: write_locked(d, big), read_locked)
    os.close(held["fd"])

    renamed = "probe-renamed-%d" % pid

    def replace(data):
        tmp = os.path.join(m1, ".%s.tmp" % renamed)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data + b"\n")
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(m1, renamed))

    def warm_renamed():
        replace(b"warm")
        try:
            read_open(renamed)
        except OSError:
            pass

    case("rename over on m1, fresh open+read on m2", warm_renamed, replace,
         lambda: read_open(renamed))
    case("rename over on m1, stat then open+read on m2", warm_renamed, replace,
         lambda: (os.stat(os.path.join(m2, renamed)), read_open(renamed))[1])


def fdatasync_reaches(args):
    name = "probe-sync-%d" % os.getpid()
    fd = os.open(os.path.join(args.m1, name), os.O_RDWR | os.O_CREAT, 0o644)
    for i in range(args.rounds):
        data = ("sync-%d\n" % i).encode()
        os.pwrite(fd, data, 0)
        before = backing(args.backing, name)
        os.fdatasync(fd)
        after = backing(args.backing, name)
        say("pwrite %r: on the server before fdatasync %r, after %r" % (data, before, after))
    os.close(fd)


def backing(template, name):
    if "{}" in template:
        r = subprocess.run(template.replace("{}", name), shell=True, capture_output=True)
        return r.stdout[:16]
    try:
        with open(os.path.join(template, name), "rb") as f:
            return f.read(16)
    except OSError as e:
        return describe(e)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("partition")
    a.add_argument("m1")
    a.add_argument("m2")
    a.add_argument("--stop-pid", type=int, required=True)
    a.add_argument("--limit", type=float, default=60)
    a.add_argument("--settle", type=float, default=2)
    a.add_argument("--open-first", action="store_true")
    a.add_argument("--cut")
    a.add_argument("--heal")
    a = sub.add_parser("caches")
    a.add_argument("m1")
    a.add_argument("m2")
    a.add_argument("--rounds", type=int, default=20)
    a = sub.add_parser("fdatasync")
    a.add_argument("m1")
    a.add_argument("backing")
    a.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    {"partition": partition, "caches": caches, "fdatasync": fdatasync_reaches}[args.cmd](args)


if __name__ == "__main__":
    main()
