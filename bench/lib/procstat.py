"""Small /proc readers shared by the bench helpers (python3 stdlib only).

CPU times come from /proc/PID/stat: for a thread-group leader, utime and
stime there already sum every thread of the process.
"""

import os
import socket
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    f = _stat_fields(pid)
    # after ')' the fields start at 'state' (field 3): utime is field 14, stime 15
    return (int(f[11]) + int(f[12])) / CLK_TCK


def children(pid):
    """Direct children of pid (every thread's children file)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def tree(pid):
    """pid and all its descendants that are alive now."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children(p))
    return seen


def tree_cpu_seconds(pid):
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def box_cpu():
    """(busy, steal, total) jiffies from the first line of /proc/stat.

    busy counts everything but idle and iowait; steal is counted as busy too
    (the core was not available to us)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts]
    vals += [0] * (10 - len(vals))
    user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
    # guest/guest_nice are already included in user/nice
    busy = user + nice + system + irq + softirq + steal
    total = busy + idle + iowait
    return busy, steal, total


def mem_kib(pid):
    """{'rss': KiB, 'pss': KiB or None} from status and smaps_rollup."""
    out = {"rss": None, "pss": None}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def socket_fds(pid):
    """Number of socket file descriptors the process holds."""
    n = 0
    d = f"/proc/{pid}/fd"
    for fd in os.listdir(d):
        try:
            if os.readlink(f"{d}/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def established(local_ports):
    """Count ESTABLISHED IPv4/IPv6 TCP sockets whose local port is in local_ports."""
    ports = set(int(p) for p in local_ports)
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[3] != "01":
                        continue
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    if port in ports:
                        n += 1
        except OSError:
            pass
    return n


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rindex(")") + 2] != "Z"
    except OSError:
        return False


def http_get_status(host, port, timeout=1.0, path="/"):
    """One HTTP/1.1 GET with Connection: close; returns the status code or raises."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in buf and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise RuntimeError(f"bad HTTP status line: {line!r}")
    return int(parts[1])
