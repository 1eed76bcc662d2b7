#!/usr/bin/env python3
"""Memory per idle connection of a freshly started load balancer.

Reads the LB's VmRSS (and Pss) after --idle seconds, opens --conns TCP
connections to its frontend from this process, checks that all are open,
optionally (--request) sends one keep-alive `GET / HTTP/1.1` on each and reads
the reply, then waits until the LB holds them (its socket fds reached
idle + conns and stopped changing, and at least --settle seconds passed;
at most --max-wait), reads RSS again, closes everything and reads RSS once
more after 2 s. Appends one JSON object to --out.

bytes per connection = (RSS_with - RSS_idle) / conns.
"""

import argparse
import errno
import json
import resource
import socket
import sys
import time

import procstat


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        sys.exit(f"RLIMIT_NOFILE {soft} is below the {need} descriptors needed")
    return soft


def open_conns(port, n, timeout):
    socks, failed = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    return socks, failed


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed before the end of the body")
        body += chunk
    return status


def one_request_each(socks):
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    ok = bad = 0
    for s in socks:
        try:
            s.sendall(req)
        except OSError:
            pass
    for s in socks:
        try:
            if read_response(s) == 200:
                ok += 1
            else:
                bad += 1
        except (OSError, ValueError, IndexError):
            bad += 1
    return ok, bad


def count_open(socks):
    n = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if data:
                n += 1  # unexpected bytes, but the connection is open
        except BlockingIOError:
            n += 1
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, action="append", default=[])
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--request", action="store_true")
    ap.add_argument("--idle", type=float, default=1.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--max-wait", type=float, default=15.0)
    ap.add_argument("--rep", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    raise_nofile(a.conns + 64)
    time.sleep(a.idle)
    if not procstat.alive(a.pid):
        sys.exit(f"{a.target} (pid {a.pid}) is not running")
    idle = procstat.mem_kib(a.pid)
    idle_fds = procstat.socket_fds(a.pid)

    t_open = time.monotonic()
    socks, failed = open_conns(a.port, a.conns, 5.0)
    req_ok = req_bad = None
    if a.request:
        req_ok, req_bad = one_request_each(socks)
    time.sleep(0.2)
    open_after_connect = count_open(socks)

    # wait until the LB holds them: its socket count reached idle + conns and
    # is stable, and --settle seconds passed since the first connect.
    deadline = t_open + a.max_wait
    last = -1
    lb_reported = False
    while True:
        now = time.monotonic()
        fds = procstat.socket_fds(a.pid)
        if fds >= idle_fds + len(socks) and fds == last:
            lb_reported = True
            if now - t_open >= a.settle:
                break
        if now >= deadline:
            break
        last = fds
        time.sleep(0.5)

    if not procstat.alive(a.pid):
        sys.exit(f"{a.target} (pid {a.pid}) died while holding connections")
    withc = procstat.mem_kib(a.pid)
    lb_fds = procstat.socket_fds(a.pid)
    fe_est = procstat.established([a.port])
    be_est = procstat.established(a.backend_port) if a.backend_port else None
    open_held = count_open(socks)

    for s in socks:
        s.close()
    time.sleep(2.0)
    after = procstat.mem_kib(a.pid) if procstat.alive(a.pid) else {"rss": None, "pss": None}

    def per_conn(key):
        if withc[key] is None or idle[key] is None:
            return None
        return round((withc[key] - idle[key]) * 1024 / a.conns)

    rec = {
        "kind": "memory",
        "target": a.target,
        "variant": "request" if a.request else "idle",
        "rep": a.rep,
        "threads": a.threads,
        "conns": a.conns,
        "connect_failed": failed,
        "client_open": open_held,
        "client_open_after_connect": open_after_connect,
        "requests_ok": req_ok,
        "requests_bad": req_bad,
        "lb_socket_fds_idle": idle_fds,
        "lb_socket_fds_with": lb_fds,
        "lb_reported": lb_reported,
        "frontend_established": fe_est,
        "backend_established": be_est,
        "rss_idle_kib": idle["rss"],
        "rss_with_kib": withc["rss"],
        "rss_after_close_kib": after["rss"],
        "pss_idle_kib": idle["pss"],
        "pss_with_kib": withc["pss"],
        "rss_per_conn_bytes": per_conn("rss"),
        "pss_per_conn_bytes": per_conn("pss"),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"  mem {a.target:8s} {rec['variant']:7s} rep{a.rep}: open {open_held}/{a.conns} "
          f"(LB sockets {idle_fds}->{lb_fds}, backend conns {be_est}) "
          f"RSS {idle['rss']} -> {withc['rss']} KiB (after close {after['rss']}) "
          f"= {rec['rss_per_conn_bytes']} B/conn", flush=True)
    problems = []
    if open_held < a.conns:
        problems.append(f"only {open_held} of {a.conns} connections were open while measuring")
    if a.request and req_bad:
        problems.append(f"{req_bad} of the {a.conns} requests failed")
    if not lb_reported:
        problems.append("the LB's socket count did not reach idle + conns within "
                        f"{a.max_wait}s (measured anyway)")
    for p in problems:
        print(f"  warning: {a.target}: {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
