#!/usr/bin/env python3
"""One throughput measurement: warm-up, then a recorded wrk run.

Runs `wrk -t1 -cC -dW` (warm-up, not recorded), then
`wrk -t1 -cC -dD --latency URL` and appends one JSON object to --out with:
req/s, requests, p50/p99 (ms), socket errors, non-2xx/3xx responses, and CPU
seconds over the recorded run of the LB process (utime+stime, all threads),
of the backends (nginx master+workers), of wrk (rusage), and of the whole box
(/proc/stat, steal counted as busy), plus the LB's CPU seconds per 100k requests.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

import procstat

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown wrk time {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(out):
    r = {"rps": None, "requests": None, "p50_ms": None, "p75_ms": None,
         "p90_ms": None, "p99_ms": None, "err_connect": 0, "err_read": 0,
         "err_write": 0, "err_timeout": 0, "non_2xx_3xx": 0, "elapsed_s": None}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", out, re.M)
    if m:
        r["requests"] = int(m.group(1))
        r["elapsed_s"] = to_ms(m.group(2) + m.group(3)) / 1000.0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", out, re.M)
        if m:
            r[f"p{pct}_ms"] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["err_connect"], r["err_read"], r["err_write"], r["err_timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non_2xx_3xx"] = int(m.group(1))
    r["socket_errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    return r


def wrk_cmd(wrk, conns, secs, url, close, latency):
    cmd = [wrk, "-t1", f"-c{conns}", f"-d{secs}s"]
    if latency:
        cmd.append("--latency")
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(url)
    return cmd


def die_if_dead(pid, name, log):
    if not procstat.alive(pid):
        msg = f"{name} (pid {pid}) died during the benchmark"
        if log:
            try:
                with open(log, errors="replace") as f:
                    msg += f"; last lines of {log}:\n" + "".join(f.readlines()[-20:])
            except OSError:
                pass
        sys.exit(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--pid", type=int, required=True, help="LB process")
    ap.add_argument("--lb-log", default="")
    ap.add_argument("--backend-pid", type=int, action="append", default=[])
    ap.add_argument("--url", required=True)
    ap.add_argument("--conns", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds, 0 = none")
    ap.add_argument("--close", action="store_true", help="send Connection: close")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="LB threads (recorded only)")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--raw", default="", help="file for the raw wrk output")
    ap.add_argument("--out", required=True, help="JSON-lines file to append to")
    a = ap.parse_args()

    dur = int(a.duration) if a.duration == int(a.duration) else a.duration
    if a.warmup > 0:
        w = int(a.warmup) if a.warmup == int(a.warmup) else a.warmup
        subprocess.run(wrk_cmd(a.wrk, a.conns, w, a.url, a.close, False),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=a.warmup + 30, check=False)
        die_if_dead(a.pid, a.target, a.lb_log)

    cmd = wrk_cmd(a.wrk, a.conns, dur, a.url, a.close, True)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    box0 = procstat.box_cpu()
    lb0 = procstat.cpu_seconds(a.pid)
    be0 = sum(procstat.tree_cpu_seconds(p) for p in a.backend_pid)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=a.duration + 30, check=False, text=True)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += "\n(wrk timed out)\n"
        rc = -1
    t1 = time.monotonic()
    die_if_dead(a.pid, a.target, a.lb_log)
    lb1 = procstat.cpu_seconds(a.pid)
    be1 = sum(procstat.tree_cpu_seconds(p) for p in a.backend_pid)
    box1 = procstat.box_cpu()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)

    if a.raw:
        with open(a.raw, "w") as f:
            f.write("$ " + " ".join(repr(c) if " " in c else c for c in cmd) + "\n" + out)

    r = parse_wrk(out)
    wall = t1 - t0
    ncpu = os.cpu_count() or 1
    box_jiffies = max(box1[2] - box0[2], 1)
    lb_cpu = lb1 - lb0
    wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    be_cpu = be1 - be0
    box_busy_pct = 100.0 * ncpu * (box1[0] - box0[0]) / box_jiffies
    steal_pct = 100.0 * ncpu * (box1[1] - box0[1]) / box_jiffies
    rec = {
        "kind": "throughput",
        "target": a.target,
        "mode": "close" if a.close else "keepalive",
        "conns": a.conns,
        "round": a.round,
        "threads": a.threads,
        "duration_s": a.duration,
        "url": a.url,
        "wrk_rc": rc,
        **r,
        "wall_s": round(wall, 3),
        "lb_cpu_s": round(lb_cpu, 3),
        "lb_cpu_pct": round(100.0 * lb_cpu / wall, 1),
        "lb_cpu_s_per_100k": (round(lb_cpu / r["requests"] * 100000, 4)
                              if r["requests"] else None),
        "backend_cpu_pct": round(100.0 * be_cpu / wall, 1),
        "wrk_cpu_pct": round(100.0 * wrk_cpu / wall, 1),
        "box_busy_pct": round(box_busy_pct, 1),
        "steal_pct": round(steal_pct, 1),
        "other_cpu_pct": round(box_busy_pct - 100.0 * (lb_cpu + be_cpu + wrk_cpu) / wall, 1),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    if rc != 0 or r["rps"] is None:
        print(f"warning: wrk rc={rc}, output:\n{out}", file=sys.stderr)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    print(f"  r{a.round} {a.target:8s} {rec['mode']:9s} c{a.conns:<4d} "
          f"{fmt(r['rps'], ',.0f'):>9s} req/s  p50 {fmt(r['p50_ms'], '.2f')} ms  "
          f"p99 {fmt(r['p99_ms'], '.2f')} ms  LB CPU {rec['lb_cpu_pct']:.0f}%  "
          f"{fmt(rec['lb_cpu_s_per_100k'], '.3f')} s/100k  "
          f"errors {r['socket_errors']}  non-2xx/3xx {r['non_2xx_3xx']}  "
          f"other {rec['other_cpu_pct']:.0f}%", flush=True)


if __name__ == "__main__":
    main()
