#!/usr/bin/env python3
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# Load comparison: the reference chat server (wsguard) against the naive room
# server a websocketpp user writes by hand, and against a bare echo server for
# ping-pong. Each server runs pinned to one core, the load client to another;
# the server's CPU time comes from /proc/PID/stat (utime + stime) sampled at
# the client's measure-start / measure-end markers, its resident memory from
# /proc/PID/status (VmRSS). Every scenario is repeated, interleaved (wsguard,
# naive, wsguard, naive, ...), and the table shows medians. Every server runs
# on 127.0.0.1 with a free port, is stopped by its pid, and every run is
# bounded in time. Standard library only.
#
#   python3 benchmarks/load/compare.py --build-dir build            # full run
#   python3 benchmarks/load/compare.py --build-dir build --quick    # smoke, < 1 min
import argparse
import json
import os
import queue
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The figures the issue judges: (label, limit).
TARGETS = {
    "fanout_cpu_ratio": 0.6,  # wsguard CPU per delivery / naive
    "pingpong_cpu_ratio": 1.1,  # wsguard CPU per message / naive
    "idle_kib_per_conn": 6.0,  # wsguard resident KiB per idle connection
    "idle_left_fraction": 0.20,  # of the rise still resident 5 s after close
    "churn_rss_mib": 4.0,  # end RSS minus RSS after the first 10% of cycles
}

PORT_RE = re.compile(r"ready port=(\d+)|ws://127\.0\.0\.1:(\d+)/")


def raise_nofile():
    """preexec_fn: the servers and the client hold thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15.
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class LineReader(threading.Thread):
    """Reads a pipe line by line; `on_line` runs in this thread (markers are
    acted on at once), every line also lands in `lines`."""

    def __init__(self, pipe, on_line=None):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.on_line = on_line
        self.lines = queue.Queue()

    def run(self):
        for line in iter(self.pipe.readline, ""):
            line = line.rstrip("\n")
            if self.on_line:
                self.on_line(line)
            self.lines.put(line)
        self.lines.put(None)


class Server:
    """One server process pinned to a core; stop() by pid, always."""

    def __init__(self, name, argv, core):
        self.name = name
        self.argv = ["taskset", "-c", str(core)] + argv
        self.proc = None
        self.port = None

    def start(self, timeout=15):
        # taskset execs the server: the pid is the server's own.
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=raise_nofile)
        reader = LineReader(self.proc.stdout)
        reader.start()
        deadline = time.monotonic() + timeout
        while self.port is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no listening port within {timeout} s")
            try:
                line = reader.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name}: exited with {self.proc.wait()} before listening")
            m = PORT_RE.search(line)
            if m:
                self.port = int(m.group(1) or m.group(2))
        time.sleep(0.3)  # let start-up allocations settle before the first sample
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read().decode())

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=8)  # chat_server's graceful close has a 5 s grace
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def run_client(args, client_argv, on_marker, timeout):
    """Runs the load client pinned to its core; on_marker(name, fields) runs in
    the stderr reader the moment a `phase=` line arrives. Returns the parsed
    result line (dict, or None) and the client's exit status."""
    argv = ["taskset", "-c", str(args.client_core), args.load_client,
            "--threads", str(args.client_threads)] + client_argv

    def on_line(line):
        if line.startswith("phase="):
            parts = dict(p.split("=", 1) for p in line.split() if "=" in p)
            on_marker(parts["phase"], parts)
        elif line:
            print(f"    client: {line}", file=sys.stderr)

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=raise_nofile)
    err = LineReader(proc.stderr, on_line)
    out = LineReader(proc.stdout)
    err.start()
    out.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        print(f"    client: killed after {timeout:.0f} s", file=sys.stderr)
        return None, -9
    err.join(timeout=5)
    out.join(timeout=5)
    while True:
        line = out.lines.get_nowait() if not out.lines.empty() else None
        if line is None:
            return None, proc.returncode
        if line.startswith("scenario="):
            return dict(p.split("=", 1) for p in line.split()), proc.returncode


# ---- scenarios: each starts a fresh server, drives it, returns one row -------


def traffic_run(args, server, scenario):
    """pingpong or fanout: server CPU over the drained measured window."""
    marks = {}

    def on_marker(phase, _):
        if phase in ("measure-start", "measure-end"):
            marks[phase] = cpu_ticks(server.pid)

    conns = args.pingpong_connections if scenario == "pingpong" else args.fanout_connections
    argv = ["--scenario", scenario, "--port", str(server.port), "--connections", str(conns),
            "--depth", str(args.depth), "--duration-s", str(args.duration_s)]
    if scenario == "fanout":
        argv += ["--content-bytes", str(args.content_bytes)]
    elif args.ping_pad_bytes:
        argv += ["--ping-pad-bytes", str(args.ping_pad_bytes)]
    result, rc = run_client(args, argv, on_marker, timeout=args.duration_s + 240)
    if result is None or len(marks) != 2:
        return {"errors": "failed", "rc": rc}
    count = int(result["deliveries"] if scenario == "fanout" else result["messages"])
    cpu_us = (marks["measure-end"] - marks["measure-start"]) * 1e6 / CLK_TCK
    return {
        "rate": float(result["rate"]),
        "count": count,
        "cpu_us_per": cpu_us / count if count else None,
        "p50_us": int(result["p50_us"]),
        "p99_us": int(result["p99_us"]),
        "errors": int(result["errors"]),
    }


def idle_run(args, server):
    before = rss_kib(server.pid)
    samples = {}

    def on_marker(phase, _):
        if phase == "open":
            time.sleep(args.idle_settle_s)
            samples["open"] = rss_kib(server.pid)
        elif phase == "closed":
            samples["closed_at"] = time.monotonic()

    argv = ["--scenario", "idle", "--port", str(server.port), "--connections",
            str(args.idle_connections), "--hold-s", str(args.idle_settle_s + 1.0)]
    result, rc = run_client(args, argv, on_marker, timeout=240)
    if result is None or "open" not in samples or "closed_at" not in samples:
        return {"errors": "failed", "rc": rc}
    time.sleep(max(0.0, samples["closed_at"] + args.after_close_s - time.monotonic()))
    after = rss_kib(server.pid)
    rise = samples["open"] - before
    n = args.idle_connections
    return {
        "before_kib": before,
        "open_kib": samples["open"],
        "after_kib": after,
        "kib_per_conn": rise / n,
        "rise_kib": rise,
        "given_back_pct": 100.0 * (samples["open"] - after) / rise if rise > 0 else None,
        "left_fraction": (after - before) / rise if rise > 0 else None,
        "errors": int(result["errors"]),
    }


COUNT_KEYS = ("connections", "rooms", "memberships", "queued_bytes")


def churn_run(args, server, has_stats):
    samples = {}
    listeners_before = server.stats()["listeners"] if has_stats else None

    def on_marker(phase, _):
        if phase == "progress":
            samples["tenth"] = rss_kib(server.pid)

    argv = ["--scenario", "churn", "--port", str(server.port), "--cycles", str(args.churn_cycles),
            "--parallel", str(args.churn_parallel)]
    result, rc = run_client(args, argv, on_marker, timeout=args.churn_cycles / 100 + 240)
    if result is None or "tenth" not in samples:
        return {"errors": "failed", "rc": rc}
    counts = None
    if has_stats:
        # The last closes may still be in flight on the server: wait for them.
        deadline = time.monotonic() + 5
        while True:
            stats = server.stats()
            if stats["connections"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        counts = {k: stats[k] for k in COUNT_KEYS}
        counts["listeners"] = f"{listeners_before}->{stats['listeners']}"
    time.sleep(args.churn_settle_s)
    end = rss_kib(server.pid)
    return {
        "cycles": int(result["cycles"]),
        "rate": float(result["rate"]),
        "p99_us": int(result["p99_us"]),
        "tenth_kib": samples["tenth"],
        "end_kib": end,
        "growth_mib": (end - samples["tenth"]) / 1024.0,
        "counts": counts,
        "counts_zero": all(counts[k] == 0 for k in COUNT_KEYS) if counts else None,
        "listeners_steady": (listeners_before == stats["listeners"]) if has_stats else None,
        "errors": int(result["errors"]),
    }


# ---- driver -------------------------------------------------------------------


def server_argv(args, name):
    if name == "wsguard":
        return [args.chat_server, "--port", "0", "--bind", "127.0.0.1",
                "--max-connections", "20000", "--idle-timeout-ms", "0",
                "--ping-interval-ms", "0", "--max-buffered-bytes", "16777216"]
    if name == "naive":
        return [args.naive_server, "--port", "0", "--bind", "127.0.0.1"]
    return [args.bare_server, "--port", "0", "--bind", "127.0.0.1"]


SERVERS = {
    "pingpong": ["wsguard", "naive", "bare"],
    "fanout": ["wsguard", "naive"],
    "idle": ["wsguard", "naive"],
    "churn": ["wsguard", "naive"],
}

LABEL = {"wsguard": "wsguard chat_server", "naive": "naive room server",
         "bare": "bare echo server"}


def one_run(args, scenario, name):
    server = Server(name, server_argv(args, name), args.server_core)
    try:
        server.start()
        if scenario in ("pingpong", "fanout"):
            return traffic_run(args, server, scenario)
        if scenario == "idle":
            return idle_run(args, server)
        return churn_run(args, server, has_stats=name == "wsguard")
    except Exception as e:  # a failed run is a row of errors, not the end of the table
        print(f"    {name}: {e}", file=sys.stderr)
        return {"errors": f"failed: {e}"}
    finally:
        server.stop()


def fmt(v, spec=",.0f", suffix=""):
    return "n/a" if v is None else format(v, spec) + suffix


def errors_cell(rows):
    out = []
    for r in rows:
        out.append(str(r.get("errors", "?")))
    return " ".join(out)


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def med(rows, key):
    return median([r.get(key) for r in rows])


def render(args, results, wall_s):
    out = []
    reps = args.reps
    out.append("# wsguard load comparison")
    out.append("")
    out.append(f"Medians of {reps} interleaved run{'s' if reps > 1 else ''} per server; "
               f"server pinned to core {args.server_core}, load client to core "
               f"{args.client_core}; CPU = server utime+stime over the drained measured "
               f"window ({CLK_TCK} ticks/s). Wall time {wall_s:.0f} s"
               f"{' (quick mode)' if args.quick else ''}.")
    out.append("")
    out.append("chat_server flags: " + " ".join(server_argv(args, "wsguard")[1:]) +
               "; naive_room_server and bare_echo_server: default websocketpp asio config. "
               f"Load average (1 min) at start / end: {args.load_start:.2f} / "
               f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.")
    out.append("")
    targets = []

    if "pingpong" in results:
        r = results["pingpong"]
        pad = f", pings padded to +{args.ping_pad_bytes} bytes" if args.ping_pad_bytes else ""
        out.append(f"## pingpong: {args.pingpong_connections} connections, depth "
                   f"{args.depth}, {args.duration_s:g} s{pad}")
        out.append("")
        out.append("| server | rate (msg/s) | server CPU µs/msg | vs naive | p50 µs | p99 µs "
                   "| errors per run |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        naive = med(r["naive"], "cpu_us_per")
        for name in SERVERS["pingpong"]:
            rows = r[name]
            cpu = med(rows, "cpu_us_per")
            ratio = cpu / naive if cpu and naive else None
            out.append(f"| {LABEL[name]} | {fmt(med(rows, 'rate'))} | {fmt(cpu, '.2f')} "
                       f"| {fmt(ratio, '.2f', 'x')} | {fmt(med(rows, 'p50_us'))} "
                       f"| {fmt(med(rows, 'p99_us'))} | {errors_cell(rows)} |")
        cpu = med(r["wsguard"], "cpu_us_per")
        ratio = cpu / naive if cpu and naive else None
        targets.append(("pingpong server CPU per message vs naive",
                        fmt(ratio, '.2f', 'x'), f"<= {TARGETS['pingpong_cpu_ratio']}x",
                        verdict(None if ratio is None else ratio <= TARGETS["pingpong_cpu_ratio"])))
        out.append("")

    if "fanout" in results:
        r = results["fanout"]
        out.append(f"## fanout: {args.fanout_connections} members of one room, depth "
                   f"{args.depth}, {args.content_bytes}-byte content, {args.duration_s:g} s")
        out.append("")
        out.append("| server | rate (deliveries/s) | server CPU µs/delivery | vs naive "
                   "| p50 µs | p99 µs | errors per run |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        naive = med(r["naive"], "cpu_us_per")
        for name in SERVERS["fanout"]:
            rows = r[name]
            cpu = med(rows, "cpu_us_per")
            ratio = cpu / naive if cpu and naive else None
            out.append(f"| {LABEL[name]} | {fmt(med(rows, 'rate'))} | {fmt(cpu, '.3f')} "
                       f"| {fmt(ratio, '.2f', 'x')} | {fmt(med(rows, 'p50_us'))} "
                       f"| {fmt(med(rows, 'p99_us'))} | {errors_cell(rows)} |")
        cpu = med(r["wsguard"], "cpu_us_per")
        ratio = cpu / naive if cpu and naive else None
        targets.append(("fanout server CPU per delivery vs naive", fmt(ratio, '.2f', 'x'),
                        f"<= {TARGETS['fanout_cpu_ratio']}x",
                        verdict(None if ratio is None else ratio <= TARGETS["fanout_cpu_ratio"])))
        out.append("")

    if "idle" in results:
        r = results["idle"]
        n = args.idle_connections
        out.append(f"## idle: {n} connections held open, then closed (RSS {args.idle_settle_s:g} s "
                   f"after all open; again {args.after_close_s:g} s after all closed)")
        out.append("")
        out.append("| server | RSS before MiB | RSS open MiB | KiB per connection "
                   "| RSS after close MiB | rise MiB | given back | errors per run |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for name in SERVERS["idle"]:
            rows = r[name]
            mib = lambda k: fmt(None if med(rows, k) is None else med(rows, k) / 1024, ".1f")
            out.append(f"| {LABEL[name]} | {mib('before_kib')} | {mib('open_kib')} "
                       f"| {fmt(med(rows, 'kib_per_conn'), '.2f')} | {mib('after_kib')} "
                       f"| {mib('rise_kib')} | {fmt(med(rows, 'given_back_pct'), '.0f', '%')} "
                       f"| {errors_cell(rows)} |")
        per = med(r["wsguard"], "kib_per_conn")
        left = med(r["wsguard"], "left_fraction")
        targets.append((f"idle RSS per connection at {n}", fmt(per, '.2f', ' KiB'),
                        f"<= {TARGETS['idle_kib_per_conn']:g} KiB",
                        verdict(None if per is None else per <= TARGETS["idle_kib_per_conn"])))
        targets.append((f"RSS {args.after_close_s:g} s after {n} closed, share of the rise left",
                        fmt(None if left is None else left * 100, '.0f', '%'),
                        f"<= {TARGETS['idle_left_fraction'] * 100:.0f}%",
                        verdict(None if left is None else left <= TARGETS["idle_left_fraction"])))
        out.append("")

    if "churn" in results:
        r = results["churn"]
        out.append(f"## churn: {args.churn_cycles} connect / join / message / close cycles, "
                   f"{args.churn_parallel} at a time")
        out.append("")
        out.append("| server | cycles | cycles/s | p99 cycle µs | RSS at 10% MiB | RSS end MiB "
                   "| end - 10% MiB | counts after (connections, rooms, memberships, "
                   "queued_bytes; listeners) | errors per run |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
        for name in SERVERS["churn"]:
            rows = r[name]
            counts = [x.get("counts") for x in rows]
            counts_cell = " / ".join(
                "n/a (no /stats)" if c is None else
                f"{c['connections']}, {c['rooms']}, {c['memberships']}, {c['queued_bytes']}; "
                f"{c['listeners']}" for c in counts)
            mib = lambda k: fmt(None if med(rows, k) is None else med(rows, k) / 1024, ".1f")
            out.append(f"| {LABEL[name]} | {fmt(med(rows, 'cycles'))} | {fmt(med(rows, 'rate'))} "
                       f"| {fmt(med(rows, 'p99_us'))} | {mib('tenth_kib')} | {mib('end_kib')} "
                       f"| {fmt(med(rows, 'growth_mib'), '+.2f')} | {counts_cell} "
                       f"| {errors_cell(rows)} |")
        rows = r["wsguard"]
        zero = [x.get("counts_zero") for x in rows]
        zero_ok = None if any(z is None for z in zero) or not zero else all(zero)
        growth = med(rows, "growth_mib")
        targets.append((f"churn {args.churn_cycles} cycles: counts zero afterwards",
                        "yes" if zero_ok else ("n/a" if zero_ok is None else "no"), "all zero",
                        verdict(zero_ok)))
        targets.append(("churn RSS end vs after the first 10%", fmt(growth, '+.2f', ' MiB'),
                        f"<= {TARGETS['churn_rss_mib']:g} MiB",
                        verdict(None if growth is None else growth <= TARGETS["churn_rss_mib"])))
        out.append("")

    if targets:
        out.append("## targets (wsguard chat_server)")
        out.append("")
        out.append("| figure | measured | target | verdict |")
        out.append("|---|---:|---:|---|")
        for t in targets:
            out.append(f"| {t[0]} | {t[1]} | {t[2]} | {t[3]} |")
        out.append("")
    return "\n".join(out)


def find_binary(build_dir, name, explicit):
    if explicit:
        return explicit
    for root, _, files in os.walk(build_dir):
        if name in files and os.access(os.path.join(root, name), os.X_OK):
            return os.path.join(root, name)
    script = os.path.basename(sys.argv[0])
    sys.exit(f"{script}: {name} not found under {build_dir} (build it, or give "
             f"--{name.replace('_', '-')})")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--build-dir", default="build", help="where to look for the binaries")
    p.add_argument("--chat-server")
    p.add_argument("--naive-server")
    p.add_argument("--bare-server")
    p.add_argument("--load-client")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (< 1 min)")
    p.add_argument("--scenarios", default="pingpong,fanout,idle,churn")
    p.add_argument("--reps", type=int, help="repetitions per server (default 3, quick 1)")
    p.add_argument("--duration-s", type=float, help="measured window (default 10, quick 2)")
    p.add_argument("--pingpong-connections", type=int)
    p.add_argument("--fanout-connections", type=int)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--content-bytes", type=int, default=64)
    p.add_argument("--ping-pad-bytes", type=int, default=0,
                   help="pingpong: add a string of this many bytes to each ping (large "
                   "inbound messages, small replies; what the read buffer size costs)")
    p.add_argument("--idle-connections", type=int)
    p.add_argument("--churn-cycles", type=int)
    p.add_argument("--churn-parallel", type=int, default=32)
    p.add_argument("--idle-settle-s", type=float, default=1.0)
    p.add_argument("--after-close-s", type=float, default=5.0)
    p.add_argument("--churn-settle-s", type=float, default=1.0)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    p.add_argument("--client-threads", type=int, default=1)
    p.add_argument("--out", help="also write the markdown table here")
    a = p.parse_args()
    quick = a.quick
    a.reps = a.reps or (1 if quick else 3)
    a.duration_s = a.duration_s or (2.0 if quick else 10.0)
    a.pingpong_connections = a.pingpong_connections or (100 if quick else 1000)
    a.fanout_connections = a.fanout_connections or (100 if quick else 1000)
    a.idle_connections = a.idle_connections or (500 if quick else 5000)
    a.churn_cycles = a.churn_cycles or (2000 if quick else 100000)
    if quick:
        a.after_close_s = min(a.after_close_s, 2.0)
    a.chat_server = find_binary(a.build_dir, "chat_server", a.chat_server)
    a.naive_server = find_binary(a.build_dir, "naive_room_server", a.naive_server)
    a.bare_server = find_binary(a.build_dir, "bare_echo_server", a.bare_server)
    a.load_client = find_binary(a.build_dir, "load_client", a.load_client)
    return a


def main():
    args = parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SERVERS:
            sys.exit(f"compare.py: unknown scenario {s}")
    started = time.monotonic()
    args.load_start = os.getloadavg()[0]
    results = {}
    for scenario in scenarios:
        results[scenario] = {name: [] for name in SERVERS[scenario]}
        for rep in range(args.reps):
            for name in SERVERS[scenario]:  # interleaved: each rep runs every server
                t0 = time.monotonic()
                row = one_run(args, scenario, name)
                results[scenario][name].append(row)
                print(f"  {scenario} rep {rep + 1}/{args.reps} {name}: "
                      f"{time.monotonic() - t0:.1f} s {row}", file=sys.stderr, flush=True)
    table = render(args, results, time.monotonic() - started)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
