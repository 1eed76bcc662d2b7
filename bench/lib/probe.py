#!/usr/bin/env python3
"""Port and readiness helpers for the bench scripts.

  probe.py free-port                      print a free 127.0.0.1 TCP port
  probe.py check-free PORT...             exit 1 naming every port that is in use
  probe.py wait-ready --port P --pid PID [--timeout S] [--name N] [--log FILE]
        poll until 127.0.0.1:P accepts a TCP connection and a GET / through it
        answers 200; fail early if PID dies; fail at the deadline.
"""

import argparse
import socket
import sys
import time

import procstat


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port):
    # SO_REUSEADDR like the servers use: TIME_WAIT leftovers do not count,
    # a listening socket does.
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"(cannot read {path}: {e})"


def wait_ready(port, pid, timeout, name, log):
    deadline = time.monotonic() + timeout
    last = "no attempt yet"
    delay = 0.02
    while True:
        if pid and not procstat.alive(pid):
            msg = f"{name} (pid {pid}) exited before it was ready"
            if log:
                msg += f"; last lines of {log}:\n{tail(log)}"
            sys.exit(msg)
        try:
            status = procstat.http_get_status("127.0.0.1", port, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP status {status}"
        except (OSError, RuntimeError) as e:
            last = str(e) or type(e).__name__
        if time.monotonic() >= deadline:
            msg = f"{name} not ready on 127.0.0.1:{port} after {timeout}s (last: {last})"
            if log:
                msg += f"; last lines of {log}:\n{tail(log)}"
            sys.exit(msg)
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    cf = sub.add_parser("check-free")
    cf.add_argument("ports", nargs="+", type=int)
    wr = sub.add_parser("wait-ready")
    wr.add_argument("--port", type=int, required=True)
    wr.add_argument("--pid", type=int, default=0)
    wr.add_argument("--timeout", type=float, default=30.0)
    wr.add_argument("--name", default="server")
    wr.add_argument("--log", default="")
    a = ap.parse_args()
    if a.cmd == "free-port":
        print(free_port())
    elif a.cmd == "check-free":
        busy = [p for p in a.ports if port_in_use(p)]
        if busy:
            sys.exit("port(s) already in use on 127.0.0.1: "
                     + ", ".join(map(str, busy))
                     + " (stop whatever listens there or choose other ports via env)")
    elif a.cmd == "wait-ready":
        wait_ready(a.port, a.pid, a.timeout, a.name, a.log)


if __name__ == "__main__":
    main()
