#!/usr/bin/env python3
# wsguard — leak-safe primitives for long-lived WebSocket servers.
# SPDX-License-Identifier: MIT
#
# Reads the JSON of a repeated wsguard_micro_bench run (aggregates) and prints
# each wsguard-vs-baseline comparison: medians, ratio, target, PASS/FAIL, plus
# the allocation counts. Standard library only. Exit status 1 if a target fails.
import json
import sys

# (label, wsguard benchmark, baseline benchmark, max ratio wsguard/baseline or None)
COMPARISONS = [
    ("emit, 1 listener", "BM_Emit/wsguard/1", "BM_Emit/std_function/1", 1.3),
    ("emit, 10 listeners", "BM_Emit/wsguard/10", "BM_Emit/std_function/10", 1.3),
    ("emit, 1000 listeners", "BM_Emit/wsguard/1000", "BM_Emit/std_function/1000", 1.3),
    ("emit 1 vs signals2", "BM_Emit/wsguard/1", "BM_Emit/signals2/1", None),
    ("emit 10 vs signals2", "BM_Emit/wsguard/10", "BM_Emit/signals2/10", None),
    ("emit 1000 vs signals2", "BM_Emit/wsguard/1000", "BM_Emit/signals2/1000", None),
    ("emit 1 vs signals2 dummy_mutex", "BM_Emit/wsguard/1",
     "BM_Emit/signals2_dummy_mutex/1", None),
    ("emit 10 vs signals2 dummy_mutex", "BM_Emit/wsguard/10",
     "BM_Emit/signals2_dummy_mutex/10", None),
    ("emit 1000 vs signals2 dummy_mutex", "BM_Emit/wsguard/1000",
     "BM_Emit/signals2_dummy_mutex/1000", None),
    ("SyncEmitter emit 1 vs std::function", "BM_Emit/wsguard_sync/1",
     "BM_Emit/std_function/1", None),
    ("SyncEmitter emit 10 vs std::function", "BM_Emit/wsguard_sync/10",
     "BM_Emit/std_function/10", None),
    ("SyncEmitter emit 1000 vs std::function", "BM_Emit/wsguard_sync/1000",
     "BM_Emit/std_function/1000", None),
    ("subscribe+unsubscribe (100 others)", "BM_SubscribeUnsubscribe/wsguard",
     "BM_SubscribeUnsubscribe/signals2", 0.2),
    ("subscribe+unsubscribe vs signals2 dummy_mutex", "BM_SubscribeUnsubscribe/wsguard",
     "BM_SubscribeUnsubscribe/signals2_dummy_mutex", None),
    ("SyncEmitter subscribe+unsubscribe", "BM_SubscribeUnsubscribe/wsguard_sync",
     "BM_SubscribeUnsubscribe/signals2", None),
    ("queue push1/pop1 @512, string64", "BM_QueueSteady/string64/wsguard",
     "BM_QueueSteady/string64/deque", 1.0),
    ("queue push1/pop1 @512, event16", "BM_QueueSteady/event16/wsguard",
     "BM_QueueSteady/event16/deque", 1.0),
    ("queue burst 1000, string64", "BM_QueueBurst1000/string64/wsguard",
     "BM_QueueBurst1000/string64/deque", 1.0),
    ("queue burst 1000, event16", "BM_QueueBurst1000/event16/wsguard",
     "BM_QueueBurst1000/event16/deque", 1.0),
    ("queue @512 try_pop() optional, string64", "BM_QueueSteady/string64/wsguard_optional",
     "BM_QueueSteady/string64/deque", None),
    ("queue @512 try_pop() optional, event16", "BM_QueueSteady/event16/wsguard_optional",
     "BM_QueueSteady/event16/deque", None),
    ("room join+leave (member in a lobby)", "BM_RoomJoinLeave/wsguard",
     "BM_RoomJoinLeave/naive", 1.5),
    ("room join+leave (member's first room)", "BM_RoomJoinLeave/wsguard_first_room",
     "BM_RoomJoinLeave/naive", 1.5),
    ("iterate a room of 1000", "BM_RoomIterate1000/wsguard", "BM_RoomIterate1000/naive", None),
    ("members() copy of a room of 1000", "BM_RoomIterate1000/wsguard_members_copy",
     "BM_RoomIterate1000/naive", None),
    ("leave_all, 4 of 1000 rooms", "BM_RoomLeaveAll/wsguard", "BM_RoomLeaveAll/naive_scan",
     None),
    ("registry touch (10000 connections)", "BM_RegistryTouch/wsguard",
     "BM_RegistryTouch/naive_map", None),
    ("registry add+remove (10000 connections)", "BM_RegistryAddRemove/wsguard",
     "BM_RegistryAddRemove/naive_map", None),
    ("registry sweep_idle, 10 of 10000", "BM_RegistrySweepIdle/wsguard",
     "BM_RegistrySweepIdle/naive_scan", None),
    # Flat: GET /stats calls stats() per request (the baseline here is the
    # same call at a tenth of the connections).
    ("guard stats(), 10000 vs 1000 connections", "BM_GuardStats/10000", "BM_GuardStats/1000",
     1.5),
    ("guard stats() vs stats()+scan, 1000", "BM_GuardStats/1000", "BM_GuardStatsWithScan/1000",
     None),
    ("guard stats() vs stats()+scan, 10000", "BM_GuardStats/10000",
     "BM_GuardStatsWithScan/10000", None),
]

# Benchmarks with no baseline, reported as they are.
STANDALONE = ["BM_Detector/add_sample_verdict/60", "BM_Detector/add_sample/60",
              "BM_HeapInUse/free_chunks/1000", "BM_HeapInUse/free_chunks/10000"]

# Allocation targets: (benchmark, maximum allocs_per_op).
ALLOC_TARGETS = {
    "BM_Emit/wsguard/1": 0.0,
    "BM_Emit/wsguard/10": 0.0,
    "BM_Emit/wsguard/1000": 0.0,
    "BM_QueueSteady/event16/wsguard": 0.0,
    "BM_QueueBurst1000/event16/wsguard": 0.0,
    "BM_QueueSteady/string64/wsguard": 0.0,
    "BM_QueueBurst1000/string64/wsguard": 0.0,
    "BM_Detector/add_sample_verdict/60": 0.0,
}

TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def load(path):
    with open(path) as f:
        data = json.load(f)
    runs = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "aggregate":
            continue
        name = b["run_name"]
        entry = runs.setdefault(name, {})
        scale = TO_NS[b.get("time_unit", "ns")]
        agg = b["aggregate_name"]
        if agg == "cv":
            # Coefficient of variation: a ratio, stored in the time fields.
            entry["cv"] = b["cpu_time"]
        else:
            entry[agg] = b["cpu_time"] * scale
            if agg == "median":
                entry["allocs"] = b.get("allocs_per_op")
        if b.get("error_occurred"):
            entry["error"] = b.get("error_message", "error")
    return data.get("context", {}), runs


def fmt_ns(v):
    return "-" if v is None else ("%.1f" % v if v < 1e4 else "%.0f" % v)


def fmt_cv(entry):
    cv = entry.get("cv")
    return "-" if cv is None else "%.1f%%" % (100.0 * cv)


def fmt_allocs(v):
    return "-" if v is None else ("%.4g" % v)


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: compare.py <benchmark_out.json>")
    context, runs = load(sys.argv[1])
    failed = False

    rows = [["comparison", "wsguard ns", "(cv)", "baseline ns", "(cv)", "ratio", "target",
             "result"]]
    for label, ours, base, target in COMPARISONS:
        a, b = runs.get(ours), runs.get(base)
        if a is None or b is None or "median" not in a or "median" not in b:
            rows.append([label, "-", "-", "-", "-", "-", "-", "MISSING"])
            if target is not None:
                failed = True
            continue
        ratio = a["median"] / b["median"]
        if "error" in a or "error" in b:
            verdict = "ERROR"
            failed = True
        elif target is None:
            verdict = "info"
        elif ratio <= target:
            verdict = "PASS"
        else:
            verdict = "FAIL"
            failed = True
        if target is None:
            target_text = "-"
        elif target < 1.0:
            target_text = "<= %.2f (>= %.0fx faster)" % (target, 1.0 / target)
        else:
            target_text = "<= %.2f" % target
        rows.append([label, fmt_ns(a["median"]), fmt_cv(a), fmt_ns(b["median"]), fmt_cv(b),
                     "%.2f" % ratio, target_text, verdict])
    print("CPU time per iteration, median of the repetitions (ratio = wsguard / baseline)")
    print(table(rows))
    print()

    rows = [["benchmark", "median ns", "(cv)"]]
    for name in STANDALONE:
        e = runs.get(name, {})
        rows.append([name, fmt_ns(e.get("median")), fmt_cv(e)])
    print(table(rows))
    print()

    rows = [["benchmark", "allocs/op", "target", "result"]]
    for name in sorted(runs):
        allocs = runs[name].get("allocs")
        if name in ALLOC_TARGETS:
            limit = ALLOC_TARGETS[name]
            ok = allocs is not None and allocs <= limit
            failed = failed or not ok
            rows.append([name, fmt_allocs(allocs), "%g" % limit, "PASS" if ok else "FAIL"])
        else:
            rows.append([name, fmt_allocs(allocs), "-", "info"])
    print("Heap allocations per op in the timed loop (median run)")
    print(table(rows))
    print()
    load_avg = context.get("load_avg")
    if load_avg:
        print("load average at start: " + ", ".join("%.2f" % x for x in load_avg))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
