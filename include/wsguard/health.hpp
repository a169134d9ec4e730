// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Health: the monitoring checklist as code, the triage walk, and a snapshot on
// critical. A leak on a long-lived server is found in three steps, and this
// header does each one so an engineer paged at 3 a.m. does not have to:
//
// 1. The checklist, each check with levels ok / warning / critical:
//    - memory_usage:  resident memory at 70% / 85% of the limit that applies
//                     (cgroup, else physical memory; see memory.hpp);
//    - memory_growth: resident memory growing at 50 / 100 MiB per hour, only
//                     when the least-squares fit is good (GrowthRateDetector);
//    - listeners:     listeners at 2x / 5x the connection count, once there are
//                     more listeners than a floor of a server's own global ones;
//    - connections:   connections at 80% / 95% of the maximum;
//    - fragmentation: resident memory at 1.5x / 2x the heap in use, above a
//                     64 MiB floor. The usual checklist's last row is
//                     garbage-collection frequency, which C++ does not have;
//                     what it warns of (the memory manager working ever harder
//                     to hand out memory) shows in C++ as fragmentation: the
//                     allocator holding far more resident memory than the
//                     program has allocated.
// 2. The triage walk (LeakTriage): one GrowthRateDetector per series (resident
//    memory, heap, connections, listeners, queued bytes, rooms, memberships).
//    When memory grows, every series that grows with it is named with its
//    likely cause and fix; when nothing grows with it, that is said too, since
//    it points away from wsguard's components.
// 3. Evidence (CriticalSnapshotWriter): on critical, at most once per interval,
//    a JSON file with the report, the caller's census and malloc_info().
//
// HealthMonitor puts 1 and 2 together: sample() every sample interval,
// report() when /stats is asked. Standard library only: the caller supplies
// the counts (e.g. from ServerGuard::stats()) and the memory reading.
//
// This header includes every part; each lives in <wsguard/health/...>:
// types.hpp (levels, report, sample, series), triage.hpp (LeakTriage),
// checks.hpp (the checklist, evaluate_health), monitor.hpp (HealthMonitor,
// SyncHealthMonitor), json.hpp (to_json) and snapshot.hpp
// (CriticalSnapshotWriter). Include only the part you use to compile less.
#pragma once

#include <wsguard/health/checks.hpp>
#include <wsguard/health/json.hpp>
#include <wsguard/health/monitor.hpp>
#include <wsguard/health/snapshot.hpp>
#include <wsguard/health/triage.hpp>
#include <wsguard/health/types.hpp>
