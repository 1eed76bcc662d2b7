#!/usr/bin/env python3
"""Summarise a bench/l4 run: medians over rounds, raftlb/haproxy ratios.

Reads the JSON lines written by wrkrun.py and memtest.py, prints a markdown
report to stdout, writes RUN/results.json, and with --write-results FILE
replaces (or appends) the section `## L4 (bench/l4)` in FILE.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess

SECTION = "## L4 (bench/l4)"
BASE, CAND = "haproxy", "raftlb"


def sh(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=10, check=False)
        lines = p.stdout.strip().splitlines()
        return lines[0].strip() if lines else "?"
    except (OSError, subprocess.SubprocessError):
        return "not found"


def machine(args):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = "?"
    try:
        with open("/proc/meminfo") as f:
            mem_gib = f"{int(f.readline().split()[1]) / 1048576:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    wrk = sh([args.wrk, "-v"])
    wrk = wrk.split(" Copyright")[0]
    git = "?"
    if args.repo:
        rev = sh(["git", "-C", args.repo, "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", args.repo, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        git = rev + (" (+ uncommitted changes)" if dirty else "")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory": mem_gib,
        "kernel": platform.release(),
        "haproxy": sh([args.haproxy, "-v"]) if BASE in args.targets else "not run",
        "nginx": sh([args.nginx, "-v"]),
        "wrk": wrk,
        "raftlb_git": git if CAND in args.targets else "not run",
        "raftlb_bin": args.raftlb_bin if CAND in args.targets else "not run",
        "raftlb_version": (sh([args.raftlb_bin, "--version"])
                           if CAND in args.targets and args.raftlb_bin else "not run"),
    }


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def f(v, spec=",.0f", none="–"):
    return none if v is None else format(v, spec)


def summarise(runs, mems):
    tp = {}
    for r in runs:
        tp.setdefault((r["target"], r["mode"], r["conns"]), []).append(r)
    rows = []
    for (target, mode, conns), rs in tp.items():
        rps = [r["rps"] for r in rs if r["rps"] is not None]
        rows.append({
            "target": target, "mode": mode, "conns": conns, "n": len(rs),
            "rps_median": med(rps),
            "rps_min": min(rps) if rps else None,
            "rps_max": max(rps) if rps else None,
            "p50_ms_median": med([r["p50_ms"] for r in rs]),
            "p99_ms_median": med([r["p99_ms"] for r in rs]),
            "lb_cpu_pct_median": med([r["lb_cpu_pct"] for r in rs]),
            "lb_cpu_s_per_100k_median": med([r["lb_cpu_s_per_100k"] for r in rs]),
            "socket_errors_sum": sum(r["socket_errors"] for r in rs),
            "non_2xx_3xx_sum": sum(r["non_2xx_3xx"] for r in rs),
            "other_cpu_pct_median": med([r["other_cpu_pct"] for r in rs]),
            "box_busy_pct_median": med([r["box_busy_pct"] for r in rs]),
        })
    order = {"keepalive": 0, "close": 1}
    rows.sort(key=lambda x: (order.get(x["mode"], 9), x["conns"], x["target"] != BASE, x["target"]))

    by = {(r["target"], r["mode"], r["conns"]): r for r in rows}
    ratios = []
    for (target, mode, conns), c in sorted(by.items(), key=lambda kv: (order.get(kv[0][1], 9), kv[0][2])):
        if target != CAND or (BASE, mode, conns) not in by:
            continue
        b = by[(BASE, mode, conns)]
        # per-round ratios pair runs taken close together in time
        per_round = []
        base_by_round = {r["round"]: r for r in tp[(BASE, mode, conns)]}
        for r in tp[(CAND, mode, conns)]:
            br = base_by_round.get(r["round"])
            if br and r["rps"] and br["rps"]:
                per_round.append(r["rps"] / br["rps"])
        ratios.append({
            "mode": mode, "conns": conns,
            "rps": ratio(c["rps_median"], b["rps_median"]),
            "rps_per_round_min": min(per_round) if per_round else None,
            "rps_per_round_max": max(per_round) if per_round else None,
            "p50": ratio(c["p50_ms_median"], b["p50_ms_median"]),
            "p99": ratio(c["p99_ms_median"], b["p99_ms_median"]),
            "cpu_per_100k": ratio(c["lb_cpu_s_per_100k_median"], b["lb_cpu_s_per_100k_median"]),
        })

    mg = {}
    for m in mems:
        mg.setdefault((m["target"], m["variant"]), []).append(m)
    mrows = []
    for (target, variant), ms in mg.items():
        mrows.append({
            "target": target, "variant": variant, "n": len(ms), "conns": ms[0]["conns"],
            "client_open_min": min(m["client_open"] for m in ms),
            "lb_sockets_delta_median": med([m["lb_socket_fds_with"] - m["lb_socket_fds_idle"] for m in ms]),
            "backend_established_median": med([m["backend_established"] for m in ms]),
            "rss_idle_kib_median": med([m["rss_idle_kib"] for m in ms]),
            "rss_with_kib_median": med([m["rss_with_kib"] for m in ms]),
            "rss_after_close_kib_median": med([m["rss_after_close_kib"] for m in ms]),
            "rss_per_conn_bytes_median": med([m["rss_per_conn_bytes"] for m in ms]),
            "pss_per_conn_bytes_median": med([m["pss_per_conn_bytes"] for m in ms]),
        })
    mrows.sort(key=lambda x: (x["variant"] != "idle", x["target"] != BASE, x["target"]))
    mby = {(r["target"], r["variant"]): r for r in mrows}
    mratios = []
    for variant in ("idle", "request"):
        if (CAND, variant) in mby and (BASE, variant) in mby:
            c, b = mby[(CAND, variant)], mby[(BASE, variant)]
            mratios.append({
                "variant": variant,
                "rss_per_conn": ratio(c["rss_per_conn_bytes_median"], b["rss_per_conn_bytes_median"]),
                "rss_idle": ratio(c["rss_idle_kib_median"], b["rss_idle_kib_median"]),
            })
    return rows, ratios, mrows, mratios


def markdown(meta, params, rows, ratios, mrows, mratios, warnings, runs=()):
    out = []
    a = out.append
    a(f"Run {meta['date']} by `bench/l4`"
      + (f" (raftlb {meta['raftlb_git']})" if meta["raftlb_git"] not in ("?", "not run") else "") + ".")
    a("")
    a("| machine | |")
    a("|---|---|")
    a(f"| CPUs (nproc) | {meta['nproc']} × {meta['cpu_model']} |")
    a(f"| memory | {meta['memory']} |")
    a(f"| kernel | {meta['kernel']} |")
    a(f"| haproxy | {meta['haproxy']} |")
    a(f"| nginx (backends) | {meta['nginx']} |")
    a(f"| wrk | {meta['wrk']} |")
    if meta["raftlb_version"] != "not run":
        a(f"| raftlb | {meta['raftlb_version']}, commit {meta['raftlb_git']} |")
    a("")
    a(f"Settings: LB threads {params['threads']} (haproxy `nbthread`, raftlb `threads`), "
      f"{params['rounds']} round(s), wrk `-t1 -d{params['duration']}s --latency` after a "
      f"{params['warmup']} s warm-up, connections {', '.join(map(str, params['conns']))}; "
      f"HAProxy `mode tcp` on :{params['haproxy_port']}, raftlb `mode = \"tcp\"` on "
      f":{params['raftlb_port']}, both `roundrobin` over two nginx (`return 200 \"ok\\n\"`, "
      f"1 worker each). LB, backends and wrk share the same {meta['nproc']} CPUs, so only "
      f"the ratios of one run mean anything.")
    a("")
    if rows:
        a(f"#### Throughput and latency (median over rounds; errors summed over rounds)")
        a("")
        a("| target | mode | conns | req/s median | req/s min–max | p50 ms | p99 ms | LB CPU % "
          "| LB CPU s / 100k req | socket errors | non-2xx/3xx | other CPU % |")
        a("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            mode = "keep-alive" if r["mode"] == "keepalive" else "Connection: close"
            a(f"| {r['target']} | {mode} | {r['conns']} | **{f(r['rps_median'])}** | "
              f"{f(r['rps_min'])}–{f(r['rps_max'])} | {f(r['p50_ms_median'], '.2f')} | "
              f"{f(r['p99_ms_median'], '.2f')} | {f(r['lb_cpu_pct_median'], '.0f')} | "
              f"{f(r['lb_cpu_s_per_100k_median'], '.3f')} | {r['socket_errors_sum']} | "
              f"{r['non_2xx_3xx_sum']} | {f(r['other_cpu_pct_median'], '.0f')} |")
        a("")
        a("\"other CPU %\" = box-wide busy (steal counted) minus LB, nginx and wrk: other tenants, "
          "unattributed softirq, hypervisor steal. High values mark noisy runs.")
        a("")
    if ratios:
        a("#### Ratios raftlb / haproxy (of the medians)")
        a("")
        a("| mode | conns | req/s (>1 better) | req/s per round min–max | p50 (<1 better) "
          "| p99 (<1 better) | CPU s / 100k req (<1 better) |")
        a("|---|---|---|---|---|---|---|")
        for r in ratios:
            mode = "keep-alive" if r["mode"] == "keepalive" else "Connection: close"
            a(f"| {mode} | {r['conns']} | **{f(r['rps'], '.2f')}** | "
              f"{f(r['rps_per_round_min'], '.2f')}–{f(r['rps_per_round_max'], '.2f')} | "
              f"{f(r['p50'], '.2f')} | **{f(r['p99'], '.2f')}** | **{f(r['cpu_per_100k'], '.2f')}** |")
        a("")
    elif rows:
        a("(No ratios: this run measured only " + ", ".join(sorted({r["target"] for r in rows})) + ".)")
        a("")
    if runs and len({r["round"] for r in runs}) > 1:
        targets = sorted({r["target"] for r in runs}, key=lambda t: (t != BASE, t))
        a("<details><summary>Every run: req/s (p99 ms)</summary>")
        a("")
        a("| round | mode | conns | " + " | ".join(targets) + " |")
        a("|---|---|---|" + "---|" * len(targets))
        cells = {(r["round"], r["mode"], r["conns"], r["target"]): r for r in runs}
        keys = sorted({(r["round"], r["mode"], r["conns"]) for r in runs},
                      key=lambda k: (k[0], k[1] != "keepalive", k[2]))
        for rnd, mode, conns in keys:
            vals = []
            for t in targets:
                r = cells.get((rnd, mode, conns, t))
                vals.append(f"{f(r['rps'])} ({f(r['p99_ms'], '.2f')})" if r else "–")
            a(f"| {rnd} | {'keep-alive' if mode == 'keepalive' else 'close'} | {conns} | "
              + " | ".join(vals) + " |")
        a("")
        a("</details>")
        a("")
    if mrows:
        a(f"#### Memory: RSS with {mrows[0]['conns']} idle client connections (fresh process each)")
        a("")
        a("| target | connections first carried 1 request? | reps | open conns (client / LB sockets Δ "
          "/ backend) | RSS idle KiB | RSS with conns KiB | RSS after close KiB | ΔRSS per conn (bytes) "
          "| ΔPSS per conn (bytes) |")
        a("|---|---|---|---|---|---|---|---|---|")
        for m in mrows:
            a(f"| {m['target']} | {'yes' if m['variant'] == 'request' else 'no'} | {m['n']} | "
              f"{m['client_open_min']} / {f(m['lb_sockets_delta_median'])} / "
              f"{f(m['backend_established_median'])} | {f(m['rss_idle_kib_median'])} | "
              f"{f(m['rss_with_kib_median'])} | {f(m['rss_after_close_kib_median'])} | "
              f"**{f(m['rss_per_conn_bytes_median'])}** | {f(m['pss_per_conn_bytes_median'])} |")
        a("")
        a("\"LB sockets Δ\" counts the LB's socket fds (client side + server side); \"backend\" counts "
          "established connections on the nginx ports. Kernel socket memory is not in RSS.")
        a("")
    if mratios:
        a("#### Memory ratios raftlb / haproxy (<1 better)")
        a("")
        a("| connections first carried 1 request? | ΔRSS per conn | RSS idle |")
        a("|---|---|---|")
        for m in mratios:
            a(f"| {'yes' if m['variant'] == 'request' else 'no'} | **{f(m['rss_per_conn'], '.2f')}** | "
              f"{f(m['rss_idle'], '.2f')} |")
        a("")
    if warnings:
        a("Warnings:")
        for w in warnings:
            a(f"* {w}")
        a("")
    return "\n".join(out)


def write_section(path, body):
    header = ("# raftlb benchmark results\n\n"
              "Written by the scripts in `bench/` (see `bench/README.md`). Absolute numbers come "
              "from a shared 2-core machine where the load generator, the backends and the load "
              "balancer compete for the same CPUs; compare the ratios within one run.\n")
    text = open(path).read() if os.path.exists(path) else header
    lines = text.splitlines()
    # also replace an older spelling of the heading: "## L4 (`bench/l4`)"
    start = next((i for i, l in enumerate(lines)
                  if l.strip().replace("`", "") == SECTION), None)
    new = [SECTION, ""] + body.rstrip("\n").splitlines() + [""]
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += [""] + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    with open(path, "w") as fh:
        fh.write("\n".join(lines).rstrip("\n") + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="JSON lines from wrkrun.py / memtest.py")
    ap.add_argument("--json-out", required=True)
    ap.add_argument("--write-results", default="")
    ap.add_argument("--targets", default="haproxy raftlb")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="10")
    ap.add_argument("--warmup", default="2")
    ap.add_argument("--conns", default="64 256")
    ap.add_argument("--haproxy-port", default="8080")
    ap.add_argument("--raftlb-port", default="8090")
    ap.add_argument("--haproxy", default="haproxy")
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--raftlb-bin", default="")
    ap.add_argument("--repo", default="")
    ap.add_argument("--rundir", default="")
    a = ap.parse_args()
    a.targets = a.targets.split()

    recs = []
    if os.path.exists(a.runs):
        with open(a.runs) as fh:
            recs = [json.loads(l) for l in fh if l.strip()]
    runs = [r for r in recs if r["kind"] == "throughput"]
    mems = [r for r in recs if r["kind"] == "memory"]
    meta = machine(a)
    params = {"threads": a.threads, "rounds": a.rounds, "duration": a.duration,
              "warmup": a.warmup, "conns": [int(c) for c in a.conns.split()],
              "haproxy_port": a.haproxy_port, "raftlb_port": a.raftlb_port,
              "targets": a.targets, "rundir": a.rundir}
    rows, ratios, mrows, mratios = summarise(runs, mems)

    warnings = []
    for r in runs:
        if r["socket_errors"] or r["non_2xx_3xx"] or r["wrk_rc"] != 0 or r["rps"] is None:
            warnings.append(f"round {r['round']} {r['target']} {r['mode']} c{r['conns']}: "
                            f"socket errors {r['socket_errors']} (connect {r['err_connect']}, read "
                            f"{r['err_read']}, write {r['err_write']}, timeout {r['err_timeout']}), "
                            f"non-2xx/3xx {r['non_2xx_3xx']}, wrk exit {r['wrk_rc']}")
    for m in mems:
        if m["client_open"] < m["conns"] or m["requests_bad"] or not m["lb_reported"]:
            warnings.append(f"memory {m['target']} {m['variant']} rep {m['rep']}: client open "
                            f"{m['client_open']}/{m['conns']}, failed connects {m['connect_failed']}, "
                            f"failed requests {m['requests_bad']}, LB socket count reached: {m['lb_reported']}")

    body = markdown(meta, params, rows, ratios, mrows, mratios, warnings, runs)
    with open(a.json_out, "w") as fh:
        json.dump({"meta": meta, "params": params, "throughput": rows, "ratios": ratios,
                   "memory": mrows, "memory_ratios": mratios, "warnings": warnings,
                   "runs": runs, "memory_runs": mems}, fh, indent=2)
    print(SECTION)
    print()
    print(body)
    if a.write_results:
        write_section(a.write_results, body)


if __name__ == "__main__":
    main()
