#!/usr/bin/env python3
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
"""Soak test of the reference chat server: does its memory stay flat under
hours-like traffic, and do its counts return to zero when the traffic stops?

Starts the built chat_server on 127.0.0.1 (a free port), then for --duration-s
runs two load_client processes against it at once:

  churn   connect / join / room-message / close cycles, --churn-parallel at a
          time over --churn-rooms rooms (load_client --scenario churn --cycles 0,
          i.e. bounded by time);
  fanout  --fanout-connections members of one room, one publisher keeping
          --fanout-depth room-messages in flight (steady room traffic).

Every --sample-interval-ms it reads the server's resident memory from
/proc/PID/status (VmRSS) and GET /stats (heap in use, counts, traffic and the
server's own growth verdicts), and writes one CSV row. The server is started
with --sample-interval-ms and --growth-window set so that its GrowthRateDetector
window spans the run after the warm-up (first 10% or 60 s, whichever is
smaller; --warmup-s). At the end of the load it prints:

  - RSS at start (before load), after the warm-up, at the end of the load;
  - the verdict of the server's own detector for resident memory (level,
    growth per hour, R^2: /stats "growth" -> "resident_bytes"), read from the
    last /stats taken under load;
  - this script's own least-squares fit of RSS over the same span, as a
    cross-check;
  - the counts (connections, rooms, memberships, queued bytes, listeners)
    once the load has stopped: they must return to zero (listeners: to the
    value before the load) within --settle-s.

and writes a CSV and a PNG plot (matplotlib; Debian: python3-matplotlib; without
it the plot is skipped with a note, the verdict is unaffected; if `python3` is
not Debian's, run the script with /usr/bin/python3).

Exit status: 0 pass; 1 the detector says warning/critical, or a count did not
return to zero; 2 the soak itself failed (server or client did not run, client
errors, detector without a verdict); 130 interrupted. Every process it starts is
stopped by its pid (also on Ctrl-C and on errors); everything talks only to
127.0.0.1; the run is bounded (duration + start-up, drain and settle limits).
It builds nothing: build chat_server and load_client first, e.g.

  cmake -S . -B build-soak -DCMAKE_BUILD_TYPE=Release -DWSGUARD_BUILD_TESTS=OFF \\
        -DWSGUARD_BUILD_BENCHMARKS=ON
  cmake --build build-soak -j2 --target chat_server load_client
  python3 benchmarks/soak/soak.py --build-dir build-soak                 # 10 minutes
  python3 benchmarks/soak/soak.py --build-dir build-soak --duration-s 60 # smoke

--build-dir defaults to `build` (as benchmarks/load/compare.py); the binaries
are searched under it (or give --chat-server / --load-client). Output goes to
--out-dir (default <build-dir>/soak): soak.csv and soak.png. Python 3 standard
library, plus matplotlib for the plot.
"""
import argparse
import csv
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

# The process and build-tree helpers are compare.py's (benchmarks/load/).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "load"))
from compare import find_binary, raise_nofile, rss_kib  # noqa: E402

PORT_RE = re.compile(r"ws://127\.0\.0\.1:(\d+)/")
MIB = 1024.0 * 1024.0
# The counts that must be back at zero once every client has gone.
ZERO_KEYS = ("connections", "rooms", "memberships", "queued_bytes")
CSV_FIELDS = [
    "time_s", "phase", "rss_bytes", "heap_bytes", "connections", "rooms", "memberships",
    "listeners", "queued_bytes", "opened", "closed", "failed_handshakes", "messages_in",
    "messages_out", "deliveries", "dropped_messages", "rejected_connections",
    "server_rss_level", "server_rss_growth_mib_per_h", "server_rss_r_squared",
    "server_rss_samples",
]


class SoakError(Exception):
    """The soak could not run as intended (exit status 2)."""


# ---- processes -----------------------------------------------------------------


def child_setup(nice):
    """preexec_fn: thousands of sockets, and be gentle with a shared machine."""

    def setup():
        raise_nofile()
        if nice:
            os.nice(nice)

    return setup


class LineReader(threading.Thread):
    """Drains a pipe so the child never blocks on it; keeps every line."""

    def __init__(self, pipe, echo_prefix=None):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.echo_prefix = echo_prefix
        self.lines = queue.Queue()
        self.all = []

    def run(self):
        for line in iter(self.pipe.readline, ""):
            line = line.rstrip("\n")
            self.all.append(line)
            if self.echo_prefix and line:
                print(f"{self.echo_prefix}{line}", file=sys.stderr, flush=True)
            self.lines.put(line)
        self.lines.put(None)


class Processes:
    """Every child this script starts; stop_all() stops each by its pid."""

    def __init__(self):
        self.procs = []

    def start(self, argv, nice, **kw):
        proc = subprocess.Popen(argv, preexec_fn=child_setup(nice), text=True, **kw)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc, grace_s):
        if proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def stop_all(self):
        # Clients first (no new connections), the server last.
        for proc in reversed(self.procs):
            try:
                self.stop(proc, 8)  # chat_server's graceful close has a 5 s grace
            except Exception as e:  # keep stopping the others
                print(f"soak: could not stop pid {proc.pid}: {e}", file=sys.stderr)


def rss_bytes(pid):
    return rss_kib(pid) * 1024


def get_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read().decode())


def start_server(args, procs):
    argv = [args.chat_server, "--port", "0", "--bind", "127.0.0.1",
            "--sample-interval-ms", str(args.sample_interval_ms),
            "--growth-window", str(args.growth_window),
            "--idle-timeout-ms", "0",  # fanout receivers never send: not idle
            "--ping-interval-ms", str(args.ping_interval_ms)] + args.server_arg
    proc = procs.start(argv, args.nice, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reader = LineReader(proc.stdout)
    reader.start()
    deadline = time.monotonic() + 15
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SoakError("chat_server: no listening port within 15 s")
        try:
            line = reader.lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise SoakError(f"chat_server exited with {proc.wait()} before listening: "
                            + " | ".join(reader.all[-5:]))
        m = PORT_RE.search(line)
        if m:
            return proc, int(m.group(1)), argv


def start_client(args, procs, port, client_argv, name):
    argv = [args.load_client, "--port", str(port), "--host", "127.0.0.1"] + client_argv
    proc = procs.start(argv, args.nice, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = LineReader(proc.stdout)
    err = LineReader(proc.stderr, echo_prefix=f"  {name}: " if args.verbose else None)
    out.start()
    err.start()
    return {"name": name, "proc": proc, "out": out, "err": err, "argv": argv}


def client_result(client, timeout):
    """Waits for a client to finish; its parsed result line (or None) and status."""
    proc = client["proc"]
    try:
        proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        Processes.stop(proc, 2)
        return None, "killed (did not finish in time)"
    client["out"].join(timeout=5)
    client["err"].join(timeout=5)
    for line in client["out"].all:
        if line.startswith("scenario="):
            return dict(p.split("=", 1) for p in line.split() if "=" in p), proc.returncode
    return None, proc.returncode


# ---- samples and fit ---------------------------------------------------------------


def growth_entry(stats, series="resident_bytes"):
    g = (stats.get("growth") or {}).get(series) or {}
    per_hour = g.get("growth_per_hour")
    return {
        "level": g.get("level", "absent"),
        "mib_per_h": None if per_hour is None else per_hour / MIB,
        "r_squared": g.get("r_squared"),
        "samples": g.get("samples"),
    }


def sample_row(t, phase, pid, stats):
    mem = stats.get("memory", {})
    traffic = stats.get("traffic", {})
    g = growth_entry(stats)
    return {
        "time_s": round(t, 3), "phase": phase, "rss_bytes": rss_bytes(pid),
        "heap_bytes": mem.get("heap_in_use_bytes"),
        "connections": stats.get("connections"), "rooms": stats.get("rooms"),
        "memberships": stats.get("memberships"), "listeners": stats.get("listeners"),
        "queued_bytes": stats.get("queued_bytes"), "opened": traffic.get("opened"),
        "closed": traffic.get("closed"), "failed_handshakes": traffic.get("failed_handshakes"),
        "messages_in": traffic.get("messages_in"), "messages_out": traffic.get("messages_out"),
        "deliveries": stats.get("router", {}).get("deliveries"),
        "dropped_messages": stats.get("dropped_messages"),
        "rejected_connections": stats.get("rejected_connections"),
        "server_rss_level": g["level"],
        "server_rss_growth_mib_per_h": None if g["mib_per_h"] is None else round(g["mib_per_h"], 4),
        "server_rss_r_squared": None if g["r_squared"] is None else round(g["r_squared"], 4),
        "server_rss_samples": g["samples"],
    }


def least_squares(points):
    """(slope per second, intercept, R^2) of y over x; R^2 = 1 for a flat series,
    as GrowthRateDetector defines it."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for _, y in points)
    if sxx == 0:
        return None
    slope = sxy / sxx
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return slope, my - slope * mx, r2


# ---- plot --------------------------------------------------------------------------


def plot(path, rows, args, fit, verdict):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (f"skipped: no matplotlib for {sys.executable} (Debian: python3-matplotlib, "
                "for /usr/bin/python3)")
    t = [r["time_s"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 2]})
    ax1.plot(t, [r["rss_bytes"] / MIB for r in rows], lw=1, label="RSS (VmRSS)")
    heap = [(r["time_s"], r["heap_bytes"] / MIB) for r in rows if r["heap_bytes"] is not None]
    if heap:
        ax1.plot([x for x, _ in heap], [y for _, y in heap], lw=1, label="heap in use (/stats)")
    if fit:
        slope, icept, r2 = fit
        xs = [args.warmup_s, args.duration_s]
        ax1.plot(xs, [(icept + slope * x) / MIB for x in xs], "k--", lw=1,
                 label=f"RSS fit: {slope * 3600 / MIB:+.2f} MiB/h, R²={r2:.2f}")
    for ax in (ax1, ax2):
        ax.axvspan(0, args.warmup_s, color="0.9", lw=0)
        ax.axvline(args.duration_s, color="0.5", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    ax1.set_ylabel("MiB")
    ax1.set_ylim(bottom=0)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title(f"chat_server soak, {args.duration_s:.0f} s: detector verdict "
                  f"'{verdict['level']}' (grey: warm-up, dotted: load stops)", fontsize=10)
    for key in ("connections", "memberships", "rooms"):
        ax2.plot(t, [r[key] for r in rows], lw=1, label=key)
    ax2.set_ylabel("count")
    ax2.set_xlabel("seconds since the load started")
    ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


# ---- the run -----------------------------------------------------------------------


def mib(b):
    return f"{b / MIB:.1f} MiB"


def soak(args, procs):
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = os.path.join(args.out_dir, "soak.csv")
    png_path = os.path.join(args.out_dir, "soak.png")
    load_start = os.getloadavg()
    server, port, server_argv = start_server(args, procs)
    time.sleep(1.0)  # start-up allocations settle
    stats0 = get_stats(port)
    rss_start = rss_bytes(server.pid)
    listeners0 = stats0["listeners"]
    print(f"soak: chat_server pid {server.pid} on 127.0.0.1:{port}, RSS {mib(rss_start)}, "
          f"{listeners0} listeners; load for {args.duration_s:.0f} s, warm-up "
          f"{args.warmup_s:.0f} s, server growth window {args.growth_window} x "
          f"{args.sample_interval_ms} ms", file=sys.stderr, flush=True)

    # The clients run one sampling interval (at least 1 s) past the duration,
    # so the last sample under load is not taken while they close.
    dur = f"{args.duration_s + max(1.0, args.sample_interval_ms / 1000.0):g}"
    clients = [
        start_client(args, procs, port,
                     ["--scenario", "churn", "--cycles", "0", "--duration-s", dur,
                      "--parallel", str(args.churn_parallel),
                      "--churn-rooms", str(args.churn_rooms)], "churn"),
        start_client(args, procs, port,
                     ["--scenario", "fanout", "--connections", str(args.fanout_connections),
                      "--depth", str(args.fanout_depth), "--duration-s", dur,
                      "--room", "soak-fanout"], "fanout"),
    ]
    t0 = time.monotonic()
    rows = []
    interval = args.sample_interval_ms / 1000.0
    k = 0
    last_load_stats = None
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()

        def take(phase):
            stats = get_stats(port)
            row = sample_row(time.monotonic() - t0, phase, server.pid, stats)
            rows.append(row)
            w.writerow(row)
            f.flush()
            return stats, row

        # Under load: one sample per interval, on a fixed grid (no drift).
        while True:
            target = t0 + k * interval
            if target > t0 + args.duration_s:
                break
            time.sleep(max(0.0, target - time.monotonic()))
            if server.poll() is not None:
                raise SoakError(f"chat_server exited with {server.returncode} under load")
            last_load_stats, row = take("load")
            k += 1
            if k % max(1, int(round(60 / interval))) == 0:
                print(f"soak: t={row['time_s']:.0f}s RSS {mib(row['rss_bytes'])} "
                      f"connections {row['connections']} rooms {row['rooms']} server RSS "
                      f"verdict {row['server_rss_level']}", file=sys.stderr, flush=True)
        verdict = growth_entry(last_load_stats)
        t_load_end = time.monotonic() - t0
        load_end = os.getloadavg()

        # The clients stop by themselves at the duration, then close.
        results = {}
        for c in clients:
            left = t0 + args.duration_s + args.client_grace_s - time.monotonic()
            results[c["name"]] = client_result(c, left)

        # Settle: counts back at zero, listeners back where they were.
        settle_deadline = time.monotonic() + args.settle_s
        while True:
            stats, row = take("drain")
            back = all(stats[key] == 0 for key in ZERO_KEYS) and stats["listeners"] == listeners0
            if back or time.monotonic() >= settle_deadline:
                break
            time.sleep(interval)
    final_stats = stats

    # Own fit over the same span as the server's window: after the warm-up, under load.
    pts = [(r["time_s"], r["rss_bytes"]) for r in rows
           if r["phase"] == "load" and r["time_s"] >= args.warmup_s]
    fit = least_squares(pts)
    heap_pts = [(r["time_s"], r["heap_bytes"]) for r in rows
                if r["phase"] == "load" and r["time_s"] >= args.warmup_s
                and r["heap_bytes"] is not None]
    heap_fit = least_squares(heap_pts)
    load_rows = [r for r in rows if r["phase"] == "load"]
    warm_row = next((r for r in load_rows if r["time_s"] >= args.warmup_s), load_rows[-1])
    end_row = load_rows[-1]
    plot_note = plot(png_path, rows, args, fit, verdict)

    # ---- report ----
    failures, invalid = [], []
    out = []
    out.append(f"soak: {args.duration_s:.0f} s of churn + fanout against chat_server, "
               f"warm-up {args.warmup_s:.0f} s, sample every {args.sample_interval_ms} ms")
    out.append("  server: " + " ".join([os.path.basename(server_argv[0])] + server_argv[1:]))
    for c in clients:
        out.append(f"  {c['name']}: " + " ".join([os.path.basename(c['argv'][0])] + c['argv'][1:]))
    out.append(f"  load average (1/5/15 min): start {load_start[0]:.2f}/{load_start[1]:.2f}/"
               f"{load_start[2]:.2f}, end of load {load_end[0]:.2f}/{load_end[1]:.2f}/"
               f"{load_end[2]:.2f}")
    for name, (res, rc) in results.items():
        if res is None:
            invalid.append(f"{name} client: no result (status {rc})")
            out.append(f"  {name} client: no result line, status {rc}")
            continue
        keys = ("cycles", "rate", "p50_us", "p99_us", "errors") if name == "churn" else \
               ("connections", "messages", "deliveries", "rate", "p50_us", "p99_us", "errors")
        out.append(f"  {name} client: " + " ".join(f"{k}={res.get(k)}" for k in keys)
                   + f" status={rc}")
        if rc != 0 or int(res.get("errors", 1)) != 0:
            invalid.append(f"{name} client: status {rc}, errors {res.get('errors')}")
    out.append(f"  RSS: start {mib(rss_start)} (before load), after warm-up "
               f"{mib(warm_row['rss_bytes'])}"
               f" (t={warm_row['time_s']:.0f}s), end of load {mib(end_row['rss_bytes'])}"
               f" (t={end_row['time_s']:.0f}s), after settle {mib(rows[-1]['rss_bytes'])}")
    if end_row["heap_bytes"] is not None and warm_row["heap_bytes"] is not None:
        out.append(f"  heap in use: after warm-up {mib(warm_row['heap_bytes'])}, end of load "
                   f"{mib(end_row['heap_bytes'])}, after settle {mib(rows[-1]['heap_bytes'])}")
    if fit:
        out.append(f"  own least squares, RSS from {args.warmup_s:.0f} s to {t_load_end:.0f} s "
                   f"({len(pts)} samples): {fit[0] * 3600 / MIB:+.3f} MiB/h, R^2 {fit[2]:.3f}")
    if heap_fit:
        out.append(f"  own least squares, heap over the same span: "
                   f"{heap_fit[0] * 3600 / MIB:+.3f} MiB/h, R^2 {heap_fit[2]:.3f}")
    rate = "n/a" if verdict["mib_per_h"] is None else f"{verdict['mib_per_h']:+.3f} MiB/h"
    r2 = "n/a" if verdict["r_squared"] is None else f"{verdict['r_squared']:.3f}"
    out.append(f"  GrowthRateDetector verdict (server /stats growth.resident_bytes, last sample "
               f"under load): {verdict['level'].upper()}, {rate}, R^2 {r2}, "
               f"{verdict['samples']} samples (thresholds: warning 50, critical 100 MiB/h; "
               f"R^2 >= 0.8)")
    if verdict["level"] in ("warning", "critical"):
        failures.append(f"resident memory growth: {verdict['level']}")
    elif verdict["level"] != "ok":
        invalid.append(f"detector gave no verdict ({verdict['level']})")
    other = {s: growth_entry(last_load_stats, s)["level"]
             for s in (last_load_stats.get("growth") or {}) if s != "resident_bytes"}
    out.append("  other series (server verdicts): "
               + ", ".join(f"{s} {lvl}" for s, lvl in other.items()))
    counts = {key: final_stats[key] for key in ZERO_KEYS}
    counts["listeners"] = final_stats["listeners"]
    out.append(f"  counts at t={rows[-1]['time_s']:.1f}s, after the clients exited: "
               + ", ".join(f"{k} {v}" for k, v in counts.items())
               + f" (listeners before the load: {listeners0})")
    out.append(f"  traffic: opened {final_stats['traffic']['opened']}, closed "
               f"{final_stats['traffic']['closed']}, messages in "
               f"{final_stats['traffic']['messages_in']}, deliveries "
               f"{final_stats['router']['deliveries']}, dropped "
               f"{final_stats['dropped_messages']}, rejected {final_stats['rejected_connections']}")
    if any(counts[k] != 0 for k in ZERO_KEYS) or counts["listeners"] != listeners0:
        failures.append("counts did not return to zero after the load stopped")
    out.append(f"  CSV {csv_path} ({len(rows)} rows), plot {plot_note}")
    status = 1 if failures else 2 if invalid else 0
    result = "PASS" if status == 0 else "FAIL: " + "; ".join(failures + invalid)
    out.append(f"soak: {result}")
    print("\n".join(out), flush=True)
    return status


def parse_args():
    p = argparse.ArgumentParser(description="Soak test of the reference chat server "
                                "(see the header of this file).")
    p.add_argument("--build-dir", default="build",
                   help="where chat_server and load_client were built (default: build)")
    p.add_argument("--chat-server")
    p.add_argument("--load-client")
    p.add_argument("--duration-s", type=float, default=600.0, help="load duration (default 600)")
    p.add_argument("--warmup-s", type=float,
                   help="excluded from the growth fit (default: 10%% of the duration, at most 60)")
    p.add_argument("--sample-interval-ms", type=int, default=1000)
    p.add_argument("--ping-interval-ms", type=int, default=5000,
                   help="server pings every connection this often (default 5000)")
    p.add_argument("--churn-parallel", type=int, default=16)
    p.add_argument("--churn-rooms", type=int, default=16)
    p.add_argument("--fanout-connections", type=int, default=50)
    p.add_argument("--fanout-depth", type=int, default=2)
    p.add_argument("--settle-s", type=float, default=15.0,
                   help="how long counts may take to return to zero after the load")
    p.add_argument("--client-grace-s", type=float, default=90.0,
                   help="how long after the duration the clients may take to drain and close")
    p.add_argument("--nice", type=int, default=10,
                   help="niceness of every process started (default 10: a shared machine)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra chat_server argument (repeat)")
    p.add_argument("--out-dir", help="for soak.csv and soak.png (default <build-dir>/soak)")
    p.add_argument("--verbose", action="store_true", help="echo the clients' stderr")
    a = p.parse_args()
    if a.duration_s <= 0 or a.sample_interval_ms < 10:
        p.error("--duration-s must be > 0 and --sample-interval-ms >= 10")
    if a.warmup_s is None:
        a.warmup_s = min(0.1 * a.duration_s, 60.0)
    if not 0 <= a.warmup_s < a.duration_s:
        p.error("--warmup-s must be in [0, duration)")
    # The server's detector window: the samples after the warm-up.
    a.growth_window = max(4, int(round((a.duration_s - a.warmup_s) * 1000 / a.sample_interval_ms)))
    a.chat_server = find_binary(a.build_dir, "chat_server", a.chat_server)
    a.load_client = find_binary(a.build_dir, "load_client", a.load_client)
    a.out_dir = a.out_dir or os.path.join(a.build_dir, "soak")
    return a


def main():
    args = parse_args()
    procs = Processes()

    def on_signal(signo, _frame):
        raise KeyboardInterrupt(f"signal {signo}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return soak(args, procs)
    except KeyboardInterrupt:
        print("soak: interrupted, stopping every process started", file=sys.stderr)
        return 130
    except (SoakError, RuntimeError, OSError, ValueError, KeyError) as e:
        print(f"soak: FAILED to run: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the clean-up
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
