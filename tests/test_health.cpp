// Tests for wsguard's health checks (the checklist), LeakTriage (which series
// grows with memory), HealthMonitor (its history, verdicts() and the
// locked SyncHealthMonitor), the report's JSON and
// CriticalSnapshotWriter. Time is synthetic (ManualClock, explicit wall
// times); files go to a temporary directory each test creates and removes.
#include <wsguard/health.hpp>

#include <catch2/catch.hpp>

#include "support/manual_clock.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using wsguard::CheckOptions;
using wsguard::CheckResult;
using wsguard::CriticalSnapshotWriter;
using wsguard::Finding;
using wsguard::GrowthLevel;
using wsguard::HealthLevel;
using wsguard::HealthMonitor;
using wsguard::HealthReport;
using wsguard::HealthSample;
using wsguard::HealthSeries;
using wsguard::LeakTriage;
using wsguard::SnapshotOptions;
using wsguard::SnapshotStatus;
using wsguard::TriageOptions;

constexpr std::size_t MiB = 1024 * 1024;
constexpr double MiBd = 1024.0 * 1024.0;
constexpr auto interval = 10s;      // sample period used throughout
constexpr int window_samples = 60;  // the detector's default window: 10 minutes at 10 s

// By value: callers often pass a temporary report.
CheckResult check(const HealthReport& r, const std::string& name) {
    const auto it = std::find_if(r.checks.begin(), r.checks.end(),
                                 [&](const CheckResult& c) { return c.name == name; });
    REQUIRE(it != r.checks.end());
    return *it;
}

const Finding* finding(const HealthReport& r, const std::string& series) {
    const auto it = std::find_if(r.findings.begin(), r.findings.end(),
                                 [&](const Finding& f) { return f.series == series; });
    return it == r.findings.end() ? nullptr : &*it;
}

std::vector<std::string> series_of(const std::vector<Finding>& findings) {
    std::vector<std::string> out;
    for (const Finding& f : findings) {
        out.push_back(f.series);
    }
    return out;
}

HealthSample memory_sample(std::size_t resident, std::size_t heap, std::size_t limit) {
    HealthSample s;
    s.memory.resident_bytes = resident;
    s.memory.heap_in_use_bytes = heap;
    s.memory.limit_bytes = limit;
    s.memory.limit_source = wsguard::MemoryLimitSource::cgroup_v2;
    return s;
}

// The worst level of every check and finding, computed independently of the report.
HealthLevel worst_of(const HealthReport& r) {
    HealthLevel level = HealthLevel::ok;
    for (const auto& c : r.checks) {
        if (static_cast<int>(c.level) > static_cast<int>(level)) {
            level = c.level;
        }
    }
    for (const auto& f : r.findings) {
        if (static_cast<int>(f.level) > static_cast<int>(level)) {
            level = f.level;
        }
    }
    return level;
}

// Feeds `count` samples, one per `interval`, each built by make(hours since
// the first sample, index).
void feed(LeakTriage& triage, wsguard::test::ManualClock& clock, int count,
          const std::function<HealthSample(double hours, int i)>& make) {
    for (int i = 0; i < count; ++i) {
        const double hours = std::chrono::duration<double, std::ratio<3600>>(interval * i).count();
        triage.sample(clock.now(), make(hours, i));
        clock.advance(interval);
    }
}

std::size_t bytes_at(double base_mib, double mib_per_hour, double hours) {
    return static_cast<std::size_t>(std::llround((base_mib + mib_per_hour * hours) * MiBd));
}

std::size_t count_at(double base, double per_hour, double hours) {
    return static_cast<std::size_t>(std::llround(base + per_hour * hours));
}

// A flat baseline: 500 MiB resident, 400 MiB heap, 1000 connections, 2 listeners
// per connection, 1 MiB queued, 50 rooms, 3000 memberships.
HealthSample baseline() {
    HealthSample s = memory_sample(500 * MiB, 400 * MiB, 4096 * MiB);
    s.connections = 1000;
    s.listeners = 2000;
    s.queued_bytes = MiB;
    s.rooms = 50;
    s.memberships = 3000;
    return s;
}

// A deterministic noise source in [-1, 1] (mt19937's output is specified by
// the standard, unlike the distributions').
struct Noise {
    std::mt19937 rng{12345};
    double operator()() { return static_cast<double>(rng() % 2001) / 1000.0 - 1.0; }
};

// A directory under the system's temporary directory, removed at the end.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::random_device rd;
        const auto base = std::filesystem::temp_directory_path();
        for (int attempt = 0; attempt < 100; ++attempt) {
            path = base /
                   ("wsguard-test-health-" + std::to_string(rd()) + "-" + std::to_string(attempt));
            if (std::filesystem::create_directory(path)) {
                return;
            }
        }
        throw std::runtime_error("cannot create a temporary directory");
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path)) {
            out.push_back(e.path().filename().string());
        }
        std::sort(out.begin(), out.end());
        return out;
    }
};

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

HealthReport report_with_level(HealthLevel level) {
    HealthReport r;
    r.level = level;
    CheckResult c;
    c.name = "memory_usage";
    c.level = level;
    c.measured = true;
    c.value = 0.9;
    c.warning_at = 0.7;
    c.critical_at = 0.85;
    c.message = "resident is 90% of the limit";
    r.checks.push_back(c);
    return r;
}

std::chrono::system_clock::time_point wall_ms(std::int64_t ms) {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms));
}

}  // namespace

// ---------------------------------------------------------------------------
// Levels
// ---------------------------------------------------------------------------

TEST_CASE("HealthLevel: names, worst, and the mapping from GrowthLevel", "[health]") {
    CHECK(std::string(wsguard::to_string(HealthLevel::ok)) == "ok");
    CHECK(std::string(wsguard::to_string(HealthLevel::warning)) == "warning");
    CHECK(std::string(wsguard::to_string(HealthLevel::critical)) == "critical");

    const HealthLevel all[] = {HealthLevel::ok, HealthLevel::warning, HealthLevel::critical};
    for (HealthLevel a : all) {
        for (HealthLevel b : all) {
            const HealthLevel w = wsguard::worst(a, b);
            CHECK(w == wsguard::worst(b, a));
            CHECK(static_cast<int>(w) == std::max(static_cast<int>(a), static_cast<int>(b)));
        }
    }
    static_assert(wsguard::worst(HealthLevel::critical, HealthLevel::ok) == HealthLevel::critical);

    CHECK(wsguard::to_health_level(GrowthLevel::insufficient_data) == HealthLevel::ok);
    CHECK(wsguard::to_health_level(GrowthLevel::ok) == HealthLevel::ok);
    CHECK(wsguard::to_health_level(GrowthLevel::warning) == HealthLevel::warning);
    CHECK(wsguard::to_health_level(GrowthLevel::critical) == HealthLevel::critical);
}

TEST_CASE("HealthSeries: names match the server's /stats keys, all_health_series lists each once",
          "[health]") {
    const char* expected[] = {"resident_bytes", "heap_bytes", "connections", "listeners",
                              "queued_bytes",   "rooms",      "memberships"};
    REQUIRE(wsguard::all_health_series.size() == wsguard::health_series_count);
    for (std::size_t i = 0; i < wsguard::health_series_count; ++i) {
        CHECK(static_cast<std::size_t>(wsguard::all_health_series[i]) == i);
        CHECK(std::string(wsguard::to_string(wsguard::all_health_series[i])) == expected[i]);
    }
}

// ---------------------------------------------------------------------------
// The checklist, each threshold at / below / above its boundary
// ---------------------------------------------------------------------------

TEST_CASE("memory_usage: 70% is warning, 85% is critical, just below is the level below",
          "[health]") {
    const CheckOptions o;
    const std::size_t limit = 1000 * MiB;
    struct Case {
        std::size_t resident;
        HealthLevel level;
    };
    const Case cases[] = {
        {0, HealthLevel::ok},
        {700 * MiB - 1, HealthLevel::ok},
        {700 * MiB, HealthLevel::warning},
        {700 * MiB + 1, HealthLevel::warning},
        {850 * MiB - 1, HealthLevel::warning},
        {850 * MiB, HealthLevel::critical},
        {850 * MiB + 1, HealthLevel::critical},
        {1200 * MiB, HealthLevel::critical},
    };
    for (const Case& c : cases) {
        CAPTURE(c.resident);
        const auto r = wsguard::evaluate_health(memory_sample(c.resident, MiB, limit), o, nullptr);
        const CheckResult m = check(r, "memory_usage");
        CHECK(m.measured);
        CHECK(m.level == c.level);
        CHECK(m.value == static_cast<double>(c.resident) / static_cast<double>(limit));
        CHECK(m.warning_at == 0.70);
        CHECK(m.critical_at == 0.85);
        CHECK_THAT(m.message, Contains("of the 1000.0 MiB limit (cgroup_v2)"));
    }
}

TEST_CASE("memory_usage is not measured without a resident reading or a limit", "[health]") {
    HealthSample s = memory_sample(900 * MiB, MiB, 1000 * MiB);
    s.memory.limit_bytes.reset();
    auto m = check(wsguard::evaluate_health(s, {}, nullptr), "memory_usage");
    CHECK_FALSE(m.measured);
    CHECK(m.level == HealthLevel::ok);
    CHECK(m.value == 0);
    CHECK_THAT(m.message, StartsWith("not measured: no memory limit"));

    s = memory_sample(900 * MiB, MiB, 1000 * MiB);
    s.memory.resident_bytes.reset();
    m = check(wsguard::evaluate_health(s, {}, nullptr), "memory_usage");
    CHECK_FALSE(m.measured);
    CHECK(m.level == HealthLevel::ok);
    CHECK_THAT(m.message, StartsWith("not measured: no resident memory"));
}

TEST_CASE("listeners: 2x / 5x connections, ok at or below the floor of global listeners",
          "[health]") {
    const CheckOptions o;
    REQUIRE(o.listener_floor == 16);
    struct Case {
        std::size_t listeners;
        std::size_t connections;
        HealthLevel level;
    };
    const Case cases[] = {
        // A server with 0 connections and 3 global listeners is not a leak.
        {3, 0, HealthLevel::ok},
        {16, 0, HealthLevel::ok},        // at the floor: ratio 16, still ok
        {16, 1, HealthLevel::ok},        // ratio 16, at the floor
        {17, 0, HealthLevel::critical},  // above the floor, every connection gone
        {199, 100, HealthLevel::ok},
        {200, 100, HealthLevel::warning},
        {201, 100, HealthLevel::warning},
        {499, 100, HealthLevel::warning},
        {500, 100, HealthLevel::critical},
        {501, 100, HealthLevel::critical},
        {100, 100, HealthLevel::ok},  // one per connection is a normal design
    };
    for (const Case& c : cases) {
        CAPTURE(c.listeners, c.connections);
        HealthSample s;
        s.listeners = c.listeners;
        s.connections = c.connections;
        const CheckResult l = check(wsguard::evaluate_health(s, o, nullptr), "listeners");
        CHECK(l.measured);
        CHECK(l.level == c.level);
        CHECK(l.value == static_cast<double>(c.listeners) /
                             static_cast<double>(std::max<std::size_t>(c.connections, 1)));
        CHECK(l.warning_at == 2.0);
        CHECK(l.critical_at == 5.0);
        if (c.listeners <= o.listener_floor) {
            CHECK_THAT(l.message, Contains("floor of 16"));
        }
        if (l.level != HealthLevel::ok) {
            CHECK_THAT(l.message, Contains("ScopedListener"));
        }
    }

    CheckOptions raised;
    raised.listener_floor = 100;
    HealthSample s;
    s.listeners = 100;
    CHECK(check(wsguard::evaluate_health(s, raised, nullptr), "listeners").level ==
          HealthLevel::ok);
    s.listeners = 101;
    CHECK(check(wsguard::evaluate_health(s, raised, nullptr), "listeners").level ==
          HealthLevel::critical);
}

TEST_CASE("connections: 80% / 95% of max_connections, not measured without a max", "[health]") {
    CheckOptions o;
    o.max_connections = 1000;
    struct Case {
        std::size_t connections;
        HealthLevel level;
    };
    const Case cases[] = {
        {0, HealthLevel::ok},         {799, HealthLevel::ok},        {800, HealthLevel::warning},
        {801, HealthLevel::warning},  {949, HealthLevel::warning},   {950, HealthLevel::critical},
        {951, HealthLevel::critical}, {1000, HealthLevel::critical},
    };
    for (const Case& c : cases) {
        CAPTURE(c.connections);
        HealthSample s;
        s.connections = c.connections;
        s.listeners = c.connections;  // keep the listeners check ok
        const CheckResult k = check(wsguard::evaluate_health(s, o, nullptr), "connections");
        CHECK(k.measured);
        CHECK(k.level == c.level);
        CHECK(k.value == static_cast<double>(c.connections) / 1000.0);
        CHECK(k.warning_at == 0.80);
        CHECK(k.critical_at == 0.95);
        CHECK_THAT(k.message, StartsWith(std::to_string(c.connections) + " of 1000 connections"));
    }

    HealthSample s;
    s.connections = 5000;
    const CheckResult none = check(wsguard::evaluate_health(s, {}, nullptr), "connections");
    CHECK_FALSE(none.measured);
    CHECK(none.level == HealthLevel::ok);
    CHECK_THAT(none.message, Contains("no max_connections"));
}

TEST_CASE("fragmentation: resident 1.5x / 2x the heap, only above the 64 MiB floor", "[health]") {
    const CheckOptions o;
    REQUIRE(o.fragmentation_floor_bytes == 64 * MiB);
    struct Case {
        std::size_t resident;
        std::size_t heap;
        HealthLevel level;
    };
    const Case cases[] = {
        {150 * MiB - 1, 100 * MiB, HealthLevel::ok},
        {150 * MiB, 100 * MiB, HealthLevel::warning},
        {150 * MiB + 1, 100 * MiB, HealthLevel::warning},
        {200 * MiB - 1, 100 * MiB, HealthLevel::warning},
        {200 * MiB, 100 * MiB, HealthLevel::critical},
        {200 * MiB + 1, 100 * MiB, HealthLevel::critical},
        {120 * MiB, 100 * MiB, HealthLevel::ok},
        // A small process: code and stacks dominate, the ratio means nothing.
        {30 * MiB, 3 * MiB, HealthLevel::ok},
        {64 * MiB, 1 * MiB, HealthLevel::ok},             // at the floor
        {64 * MiB + 1, 32 * MiB, HealthLevel::critical},  // just above it, ratio just over 2
    };
    for (const Case& c : cases) {
        CAPTURE(c.resident, c.heap);
        const CheckResult f =
            check(wsguard::evaluate_health(memory_sample(c.resident, c.heap, 0), o, nullptr),
                  "fragmentation");
        CHECK(f.measured);
        CHECK(f.level == c.level);
        CHECK(f.value == static_cast<double>(c.resident) / static_cast<double>(c.heap));
        CHECK(f.warning_at == 1.5);
        CHECK(f.critical_at == 2.0);
        if (c.resident <= 64 * MiB) {
            CHECK_THAT(f.message, Contains("floor"));
        }
        if (f.level != HealthLevel::ok) {
            CHECK_THAT(f.message, Contains("release_free_memory()"));
        }
    }

    // No heap reading (a sanitizer build, no glibc): not measured.
    HealthSample s = memory_sample(500 * MiB, 0, 0);
    s.memory.heap_in_use_bytes.reset();
    const CheckResult f = check(wsguard::evaluate_health(s, o, nullptr), "fragmentation");
    CHECK_FALSE(f.measured);
    CHECK(f.level == HealthLevel::ok);
    CHECK_THAT(f.message, StartsWith("not measured: no heap reading"));
}

TEST_CASE("memory_growth: the resident detector's level, exactly at its thresholds", "[health]") {
    // One resident line, fed to triages with thresholds placed on, just above
    // and just below the slope the detector measures for it.
    auto line = [](double hours, int) {
        return memory_sample(bytes_at(500, 80, hours), 400 * MiB, 4096 * MiB);
    };
    double g = 0;
    {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, line);
        g = t.verdict(HealthSeries::resident_bytes).growth_per_hour;
        REQUIRE(g == Approx(80 * MiBd).epsilon(1e-6));
    }
    struct Case {
        double warning;
        double critical;
        HealthLevel level;
    };
    const double above = std::nextafter(g, std::numeric_limits<double>::infinity());
    const Case cases[] = {
        {above, 2 * g, HealthLevel::ok},       // just below warning
        {g, 2 * g, HealthLevel::warning},      // exactly at warning
        {g / 2, above, HealthLevel::warning},  // just below critical
        {g / 2, g, HealthLevel::critical},     // exactly at critical
    };
    for (const Case& c : cases) {
        CAPTURE(c.warning, c.critical);
        TriageOptions o;
        o.resident_bytes.warning_per_hour = c.warning;
        o.resident_bytes.critical_per_hour = c.critical;
        LeakTriage t(o);
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, line);
        const auto r = wsguard::evaluate_health(line(0, 0), {}, &t);
        const CheckResult m = check(r, "memory_growth");
        CHECK(m.measured);
        CHECK(m.level == c.level);
        CHECK(m.value == g);
        CHECK(m.warning_at == c.warning);
        CHECK(m.critical_at == c.critical);
    }

    // With the defaults (50 / 100 MiB/h): 80 MiB/h is a warning, and the
    // message says when the limit is reached.
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, line);
    const CheckResult m = check(wsguard::evaluate_health(line(0, 0), {}, &t), "memory_growth");
    CHECK(m.level == HealthLevel::warning);
    CHECK(m.warning_at == 50 * MiBd);
    CHECK(m.critical_at == 100 * MiBd);
    CHECK_THAT(m.message, Contains("+80.0 MiB/h"));
    CHECK_THAT(m.message, Contains("the limit is reached in about"));
}

TEST_CASE("memory_growth is not measured while samples are collected or without a triage",
          "[health]") {
    const HealthSample s = memory_sample(500 * MiB, 400 * MiB, 4096 * MiB);
    const CheckResult none = check(wsguard::evaluate_health(s, {}, nullptr), "memory_growth");
    CHECK_FALSE(none.measured);
    CHECK(none.level == HealthLevel::ok);

    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, 9, [](double hours, int) {
        return memory_sample(bytes_at(500, 500, hours), 400 * MiB, 4096 * MiB);
    });
    const CheckResult early = check(wsguard::evaluate_health(s, {}, &t), "memory_growth");
    CHECK_FALSE(early.measured);
    CHECK(early.level == HealthLevel::ok);
    CHECK_THAT(early.message, Contains("9 of 10"));
}

TEST_CASE(
    "the report has all five checks in order, and its level is the worst of checks and findings",
    "[health]") {
    CheckOptions o;
    o.max_connections = 1000;

    // Everything ok.
    HealthSample s = memory_sample(100 * MiB, 90 * MiB, 1000 * MiB);
    s.connections = 100;
    s.listeners = 100;
    auto r = wsguard::evaluate_health(s, o, nullptr);
    REQUIRE(r.checks.size() == 5);
    const char* names[] = {"memory_usage", "memory_growth", "listeners", "connections",
                           "fragmentation"};
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(r.checks[i].name == names[i]);
    }
    CHECK(r.level == HealthLevel::ok);
    CHECK(r.findings.empty());

    // One warning (connections at 80%).
    s.connections = 800;
    s.listeners = 800;
    r = wsguard::evaluate_health(s, o, nullptr);
    CHECK(r.level == HealthLevel::warning);
    CHECK(r.level == worst_of(r));

    // A warning and a critical (memory at 85%): critical wins.
    s.memory.resident_bytes = 850 * MiB;
    s.memory.heap_in_use_bytes = 800 * MiB;
    r = wsguard::evaluate_health(s, o, nullptr);
    CHECK(check(r, "connections").level == HealthLevel::warning);
    CHECK(check(r, "memory_usage").level == HealthLevel::critical);
    CHECK(r.level == HealthLevel::critical);
    CHECK(r.level == worst_of(r));

    // Checks ok, a finding at warning: the report is warning.
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample x = baseline();
        x.rooms = count_at(50, 720, hours);  // rooms climb, memory flat
        return x;
    });
    HealthSample okay = memory_sample(100 * MiB, 90 * MiB, 1000 * MiB);
    r = wsguard::evaluate_health(okay, o, &t);
    for (const auto& c : r.checks) {
        CHECK(c.level == HealthLevel::ok);
    }
    REQUIRE(r.findings.size() == 1);
    CHECK(r.findings[0].level == HealthLevel::warning);
    CHECK(r.level == HealthLevel::warning);
    CHECK(r.level == worst_of(r));
}

TEST_CASE("check options are validated", "[health]") {
    auto bad = [](auto change) {
        CheckOptions o;
        change(o);
        CHECK_THROWS_AS(wsguard::evaluate_health(HealthSample{}, o, nullptr),
                        std::invalid_argument);
        wsguard::HealthOptions h;
        h.checks = o;
        CHECK_THROWS_AS(HealthMonitor(h), std::invalid_argument);
    };
    bad([](CheckOptions& o) { o.memory_usage_warning = 0.9; });  // above critical 0.85
    bad([](CheckOptions& o) { o.listeners_warning = 0; });
    bad([](CheckOptions& o) { o.connections_critical = -1; });
    bad([](CheckOptions& o) {
        o.fragmentation_warning = std::numeric_limits<double>::quiet_NaN();
    });
    bad([](CheckOptions& o) { o.memory_usage_critical = std::numeric_limits<double>::infinity(); });
    CheckOptions equal;
    equal.memory_usage_warning = equal.memory_usage_critical;
    CHECK_NOTHROW(wsguard::evaluate_health(HealthSample{}, equal, nullptr));
}

TEST_CASE("drop_ratio: 1% / 10% of the messages over the window, on an injected clock",
          "[health]") {
    wsguard::test::ManualClock clock;
    wsguard::DropRatioWindow window(8);
    CheckOptions o;  // warning 1%, critical 10%, 60 s window, 100 messages at least

    // Fewer than two samples: not measured.
    CHECK_FALSE(wsguard::drop_ratio_check(window.window(60), o).measured);
    window.sample(clock.now(), 0, 0);
    CHECK_FALSE(wsguard::drop_ratio_check(window.window(60), o).measured);

    // 1 s later: 990 delivered, 10 dropped: exactly 1% is warning.
    clock.advance(1s);
    window.sample(clock.now(), 990, 10);
    CheckResult r = wsguard::drop_ratio_check(window.window(60), o);
    CHECK(r.name == "drop_ratio");
    CHECK(r.measured);
    CHECK(r.value == Approx(0.01));
    CHECK(r.level == HealthLevel::warning);
    CHECK(r.warning_at == 0.01);
    CHECK(r.critical_at == 0.10);
    CHECK_THAT(r.message, Contains("10 of 1000 messages dropped (1.0%) over the last 1 s"));

    // Another 800 delivered, 200 dropped: 210 of 2000 over 2 s is critical.
    clock.advance(1s);
    window.sample(clock.now(), 1790, 210);
    r = wsguard::drop_ratio_check(window.window(60), o);
    CHECK(r.value == Approx(0.105));
    CHECK(r.level == HealthLevel::critical);
    CHECK_THAT(r.message, Contains("--slow-consumer close"));

    // The window forgets what is older than it: 61 s of clean traffic later,
    // the drops have left a 60 s window.
    for (int i = 0; i < 61; ++i) {
        clock.advance(1s);
        window.sample(clock.now(), 1790 + 1000 * static_cast<std::uint64_t>(i + 1), 210);
    }
    const wsguard::DeliveryWindow w = window.window(60);
    CHECK(w.dropped == 0);
    CHECK(w.seconds == Approx(7.0));  // the ring keeps 8 samples: 7 s of them
    CHECK(wsguard::drop_ratio_check(w, o).level == HealthLevel::ok);

    // Below the minimum of messages the ratio is shown, not judged.
    wsguard::DeliveryWindow few;
    few.seconds = 5;
    few.delivered = 9;
    few.dropped = 90;
    r = wsguard::drop_ratio_check(few, o);
    CHECK(r.measured);
    CHECK(r.level == HealthLevel::ok);
    CHECK_THAT(r.message, Contains("too few to judge"));

    // A counter that went backwards (a restarted source) counts 0, not 2^64.
    wsguard::DropRatioWindow reset(4);
    reset.sample(clock.now(), 500, 50);
    clock.advance(1s);
    reset.sample(clock.now(), 10, 0);
    CHECK(reset.window(60).delivered == 0);
    CHECK(reset.window(60).dropped == 0);

    // The thresholds are options, validated like the others.
    CheckOptions strict;
    strict.drop_ratio_warning = 0.001;
    strict.drop_ratio_critical = 0.002;
    few.delivered = 9990;
    few.dropped = 10;
    CHECK(wsguard::drop_ratio_check(few, strict).level == HealthLevel::warning);
    strict.drop_ratio_warning = 0.5;  // above critical
    CHECK_THROWS_AS(wsguard::drop_ratio_check(few, strict), std::invalid_argument);
    CheckOptions no_window;
    no_window.drop_ratio_window_seconds = 0;
    CHECK_THROWS_AS(wsguard::drop_ratio_check(few, no_window), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// Triage
// ---------------------------------------------------------------------------

TEST_CASE("triage: memory and connections grow together -> a connections finding", "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 80, hours);
        s.memory.heap_in_use_bytes = bytes_at(400, 75, hours);
        s.connections = count_at(1000, 720, hours);
        s.listeners = 2;  // the server's two global listeners only
        return s;
    });
    CHECK(t.memory_level() == HealthLevel::warning);
    const auto findings = t.findings();
    REQUIRE(series_of(findings) == std::vector<std::string>{"connections"});
    const Finding& f = findings[0];
    CHECK(f.level == HealthLevel::critical);  // 720/h is above the connections' 600/h critical
    const auto v = t.verdict(HealthSeries::connections);
    CHECK(f.growth_per_hour == v.growth_per_hour);
    CHECK(f.r_squared == v.r_squared);
    CHECK(f.growth_per_hour == Approx(720).epsilon(0.01));
    CHECK(f.r_squared >= 0.8);
    CHECK_THAT(f.message, StartsWith("connections grow with memory"));
    CHECK_THAT(f.message, Contains("connections are not being removed on close"));
    CHECK_THAT(f.message, Contains("close/fail handlers and the idle timeout"));
}

TEST_CASE("triage: a finding's level is the worse of memory's and the series' own", "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 150, hours);  // critical memory growth
        s.connections = count_at(1000, 120, hours);           // warning-rate connections
        return s;
    });
    CHECK(t.memory_level() == HealthLevel::critical);
    CHECK(t.verdict(HealthSeries::connections).level == GrowthLevel::warning);
    const auto findings = t.findings();
    REQUIRE(series_of(findings) == std::vector<std::string>{"connections"});
    CHECK(findings[0].level == HealthLevel::critical);
}

TEST_CASE("triage: memory and queued bytes grow together -> a queued_bytes finding", "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 70, hours);
        s.queued_bytes = bytes_at(1, 60, hours);
        return s;
    });
    const auto findings = t.findings();
    REQUIRE(series_of(findings) == std::vector<std::string>{"queued_bytes"});
    CHECK(findings[0].level == HealthLevel::critical);  // 60 MiB/h >= queued critical 50 MiB/h
    CHECK_THAT(findings[0].message, StartsWith("queued_bytes grow with memory"));
    CHECK_THAT(findings[0].message, Contains("slow consumers' send queues fill"));
    CHECK_THAT(findings[0].message, Contains("--max-buffered-bytes"));
    CHECK_THAT(findings[0].message, Contains("--slow-consumer close"));
}

TEST_CASE("triage: listeners that outgrow connections are added per connection", "[health]") {
    SECTION("listeners grow, connections flat") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes = bytes_at(500, 60, hours);
            s.listeners = count_at(2000, 1200, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(series_of(findings) == std::vector<std::string>{"listeners"});
        CHECK_THAT(findings[0].message, StartsWith("listeners grow faster than connections"));
        CHECK_THAT(findings[0].message,
                   Contains("listeners are added per connection and never removed"));
        CHECK_THAT(findings[0].message,
                   Contains("hold the ScopedListener in the connection's state"));
    }
    SECTION("listeners grow three times as fast as connections") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes = bytes_at(500, 60, hours);
            s.connections = count_at(1000, 360, hours);
            s.listeners = count_at(2000, 1080, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(series_of(findings) == std::vector<std::string>{"connections", "listeners"});
        CHECK_THAT(findings[1].message, StartsWith("listeners grow faster than connections"));
    }
    SECTION("listeners grow at the connections' pace: they leak with their connections") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes = bytes_at(500, 60, hours);
            s.connections = count_at(1000, 360, hours);
            s.listeners = count_at(1002, 360, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(series_of(findings) == std::vector<std::string>{"connections", "listeners"});
        CHECK_THAT(findings[1].message, StartsWith("listeners grow with memory"));
        CHECK_THAT(findings[1].message, Contains("fix the connections finding first"));
    }
}

TEST_CASE("triage: rooms and memberships name leave_all", "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 60, hours);
        s.rooms = count_at(50, 300, hours);
        s.memberships = count_at(3000, 900, hours);
        return s;
    });
    const auto findings = t.findings();
    REQUIRE(series_of(findings) == std::vector<std::string>{"rooms", "memberships"});
    CHECK(findings[0].level == HealthLevel::warning);   // memory warning, rooms 300/h warning
    CHECK(findings[1].level == HealthLevel::critical);  // memberships 900/h >= 600/h
    CHECK_THAT(findings[0].message, Contains("empty rooms are not erased"));
    CHECK_THAT(findings[0].message, Contains("leave_all"));
    CHECK_THAT(findings[1].message, Contains("members are not removed from rooms on close"));
    CHECK_THAT(findings[1].message, Contains("leave_all"));
}

TEST_CASE("triage: memory grows and nothing tracked grows with it -> one memory finding",
          "[health]") {
    SECTION("heap grows too: allocations outside wsguard's components") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes = bytes_at(500, 120, hours);
            s.memory.heap_in_use_bytes = bytes_at(400, 110, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(findings.size() == 1);
        const Finding& f = findings[0];
        CHECK(f.series == "resident_bytes");
        CHECK(f.level == HealthLevel::critical);
        CHECK(f.growth_per_hour == t.verdict(HealthSeries::resident_bytes).growth_per_hour);
        CHECK(f.r_squared == t.verdict(HealthSeries::resident_bytes).r_squared);
        CHECK_THAT(f.message, StartsWith("no tracked series grows with memory"));
        CHECK_THAT(f.message,
                   Contains("look at caches / allocations outside wsguard's components"));
    }
    SECTION("heap flat: the allocator keeps the memory") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes = bytes_at(500, 60, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(findings.size() == 1);
        CHECK(findings[0].series == "resident_bytes");
        CHECK(findings[0].level == HealthLevel::warning);
        CHECK_THAT(findings[0].message, StartsWith("no tracked series grows with memory"));
        CHECK_THAT(findings[0].message, Contains("the heap in use does not"));
        CHECK_THAT(findings[0].message, Contains("release_free_memory()"));
    }
    SECTION("only the heap is read and it grows") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, window_samples, [](double hours, int) {
            HealthSample s = baseline();
            s.memory.resident_bytes.reset();
            s.memory.heap_in_use_bytes = bytes_at(400, 60, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(findings.size() == 1);
        CHECK(findings[0].series == "heap_bytes");
        CHECK(findings[0].level == HealthLevel::warning);
        CHECK_THAT(findings[0].message, StartsWith("no tracked series grows with memory"));
        CHECK(t.stats().resident_missing == static_cast<std::uint64_t>(window_samples));
        CHECK(t.stats().heap_missing == 0);
    }
}

TEST_CASE("triage: noisy flat series are not a leak", "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    Noise noise;
    feed(t, clock, 3 * window_samples, [&](double, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500 + 30 * noise(), 0, 0);
        s.memory.heap_in_use_bytes = bytes_at(400 + 30 * noise(), 0, 0);
        s.connections = count_at(1000 + 50 * noise(), 0, 0);
        s.listeners = count_at(2000 + 100 * noise(), 0, 0);
        s.queued_bytes = bytes_at(10 + 5 * noise(), 0, 0);
        s.rooms = count_at(50 + 10 * noise(), 0, 0);
        s.memberships = count_at(3000 + 100 * noise(), 0, 0);
        return s;
    });
    for (HealthSeries series : wsguard::all_health_series) {
        CAPTURE(wsguard::to_string(series));
        const auto v = t.verdict(series);
        CHECK(v.level == GrowthLevel::ok);
        CHECK(v.r_squared < 0.8);
    }
    CHECK(t.memory_level() == HealthLevel::ok);
    CHECK(t.findings().empty());
}

TEST_CASE("triage: connections churning around a mean are not a leak", "[health]") {
    Noise noise;
    auto churn = [&](double hours, int i) {
        HealthSample s = baseline();
        // Up and down by hundreds every few minutes, plus jitter.
        s.connections =
            count_at(1000 + 300 * std::sin(2 * 3.14159265358979 * i / 12.0) + 40 * noise(), 0, 0);
        s.listeners = s.connections + 2;
        s.memberships = 3 * s.connections;
        (void)hours;
        return s;
    };
    SECTION("memory flat: no finding") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, 2 * window_samples, churn);
        CHECK(t.verdict(HealthSeries::connections).level == GrowthLevel::ok);
        CHECK(t.findings().empty());
    }
    SECTION("memory grows: churn is not named, memory is") {
        LeakTriage t;
        wsguard::test::ManualClock clock;
        feed(t, clock, 2 * window_samples, [&](double hours, int i) {
            HealthSample s = churn(hours, i);
            s.memory.resident_bytes = bytes_at(500, 60, hours);
            s.memory.heap_in_use_bytes = bytes_at(400, 60, hours);
            return s;
        });
        const auto findings = t.findings();
        REQUIRE(series_of(findings) == std::vector<std::string>{"resident_bytes"});
        CHECK_THAT(findings[0].message, StartsWith("no tracked series grows with memory"));
    }
}

TEST_CASE("triage: a series growing steadily while memory is flat is a warning, never critical",
          "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.connections = count_at(1000, 6000, hours);  // ten times the critical rate
        return s;
    });
    CHECK(t.verdict(HealthSeries::connections).level == GrowthLevel::critical);
    CHECK(t.memory_level() == HealthLevel::ok);
    const auto findings = t.findings();
    REQUIRE(series_of(findings) == std::vector<std::string>{"connections"});
    CHECK(findings[0].level == HealthLevel::warning);
    CHECK_THAT(findings[0].message,
               StartsWith("connections grow steadily while memory does not (yet)"));
    CHECK_THAT(findings[0].message, Contains("connections are not being removed on close"));

    // Without any memory reading the message says memory is not measured.
    LeakTriage blind;
    wsguard::test::ManualClock clock2;
    feed(blind, clock2, window_samples, [](double hours, int) {
        HealthSample s = baseline();
        s.memory = wsguard::MemoryReading{};
        s.rooms = count_at(50, 600, hours);
        return s;
    });
    const auto blind_findings = blind.findings();
    REQUIRE(series_of(blind_findings) == std::vector<std::string>{"rooms"});
    CHECK(blind_findings[0].level == HealthLevel::warning);
    CHECK_THAT(blind_findings[0].message, Contains("while memory is not measured"));
}

TEST_CASE("triage: count thresholds are per series, in units per hour", "[health]") {
    auto slow_connections = [](double hours, int) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 60, hours);
        s.connections = count_at(1000, 30, hours);  // half the default warning of 60/h
        return s;
    };
    // Counts are whole numbers: 30/h over a 10-minute window is a 5-step
    // staircase, still a line with a good fit.
    LeakTriage defaults;
    wsguard::test::ManualClock clock;
    feed(defaults, clock, window_samples, slow_connections);
    CHECK(defaults.verdict(HealthSeries::connections).r_squared >= 0.8);
    CHECK(defaults.verdict(HealthSeries::connections).level == GrowthLevel::ok);
    CHECK(series_of(defaults.findings()) == std::vector<std::string>{"resident_bytes"});

    TriageOptions o;
    o.connections.warning_per_hour = 20;
    o.connections.critical_per_hour = 200;
    LeakTriage tuned(o);
    wsguard::test::ManualClock clock2;
    feed(tuned, clock2, window_samples, slow_connections);
    CHECK(series_of(tuned.findings()) == std::vector<std::string>{"connections"});

    // And the defaults are as documented.
    const TriageOptions d;
    CHECK(d.resident_bytes.warning_per_hour == 50 * MiBd);
    CHECK(d.resident_bytes.critical_per_hour == 100 * MiBd);
    CHECK(d.heap_bytes.warning_per_hour == 50 * MiBd);
    CHECK(d.connections.warning_per_hour == 60);
    CHECK(d.connections.critical_per_hour == 600);
    CHECK(d.listeners.warning_per_hour == 60);
    CHECK(d.queued_bytes.warning_per_hour == 10 * MiBd);
    CHECK(d.queued_bytes.critical_per_hour == 50 * MiBd);
    CHECK(d.rooms.warning_per_hour == 60);
    CHECK(d.memberships.warning_per_hour == 60);
    for (HealthSeries s : wsguard::all_health_series) {
        CHECK(d.of(s).min_r_squared == 0.8);
    }
    CHECK(&d.of(HealthSeries::rooms) == &d.rooms);
    CHECK(&d.of(HealthSeries::resident_bytes) == &d.resident_bytes);
}

TEST_CASE("triage: stats count samples and missing readings, and reset forgets the windows",
          "[health]") {
    LeakTriage t;
    wsguard::test::ManualClock clock;
    feed(t, clock, 25, [](double hours, int i) {
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 200, hours);
        if (i % 5 == 0) {
            s.memory.resident_bytes.reset();
        }
        if (i % 2 == 0) {
            s.memory.heap_in_use_bytes.reset();
        }
        return s;
    });
    const auto stats = t.stats();
    CHECK(stats.samples == 25);
    CHECK(stats.resident_missing == 5);
    CHECK(stats.heap_missing == 13);
    const auto resident = stats.series[static_cast<std::size_t>(HealthSeries::resident_bytes)];
    CHECK(resident.samples_total == 20);
    CHECK(resident.size == t.detector(HealthSeries::resident_bytes).size());
    CHECK(stats.series[static_cast<std::size_t>(HealthSeries::heap_bytes)].samples_total == 12);
    for (HealthSeries s :
         {HealthSeries::connections, HealthSeries::listeners, HealthSeries::queued_bytes,
          HealthSeries::rooms, HealthSeries::memberships}) {
        const auto& g = stats.series[static_cast<std::size_t>(s)];
        CHECK(g.samples_total == 25);
        CHECK(g.level == t.verdict(s).level);
    }
    CHECK(t.memory_level() == HealthLevel::critical);

    t.reset();
    CHECK(t.memory_level() == HealthLevel::ok);
    CHECK(t.findings().empty());
    for (HealthSeries s : wsguard::all_health_series) {
        CHECK(t.detector(s).size() == 0);
        CHECK(t.verdict(s).level == GrowthLevel::insufficient_data);
    }
    CHECK(t.stats().samples == 25);  // counters survive a reset
}

TEST_CASE("triage: invalid options throw and name the series", "[health]") {
    TriageOptions o;
    o.memberships.warning_per_hour = 10;
    o.memberships.critical_per_hour = 5;
    try {
        LeakTriage t(o);
        FAIL("expected std::invalid_argument");
    } catch (const std::invalid_argument& e) {
        CHECK_THAT(std::string(e.what()), Contains("memberships"));
    }
    TriageOptions w;
    w.connections.window = 1;
    CHECK_THROWS_AS(LeakTriage(w), std::invalid_argument);
    wsguard::HealthOptions h;
    h.triage = w;
    CHECK_THROWS_AS(HealthMonitor(h), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// HealthMonitor
// ---------------------------------------------------------------------------

TEST_CASE("HealthMonitor: report() is evaluate_health on the latest sample and its triage",
          "[health]") {
    wsguard::HealthOptions options;
    options.checks.max_connections = 2000;
    HealthMonitor monitor(options);

    // Before any sample: nothing measured but the listeners ratio, level ok.
    auto r = monitor.report();
    REQUIRE(r.checks.size() == 5);
    CHECK(r.level == HealthLevel::ok);
    CHECK(r.findings.empty());
    CHECK_FALSE(check(r, "memory_usage").measured);
    CHECK_FALSE(check(r, "memory_growth").measured);
    CHECK(check(r, "connections").measured);
    CHECK(monitor.stats().samples == 0);

    wsguard::test::ManualClock clock;
    HealthSample last;
    for (int i = 0; i < window_samples; ++i) {
        const double hours = std::chrono::duration<double, std::ratio<3600>>(interval * i).count();
        HealthSample s = baseline();
        s.memory.resident_bytes = bytes_at(500, 80, hours);
        s.connections = count_at(1000, 720, hours);
        s.listeners = s.connections;
        monitor.sample(clock.now(), s);
        last = s;
        clock.advance(interval);
    }
    CHECK(monitor.latest().connections == last.connections);
    CHECK(monitor.latest().memory.resident_bytes == last.memory.resident_bytes);
    CHECK(monitor.stats().samples == static_cast<std::uint64_t>(window_samples));

    r = monitor.report();
    const auto direct = wsguard::evaluate_health(last, options.checks, &monitor.triage());
    CHECK(wsguard::to_json(r) == wsguard::to_json(direct));
    CHECK(check(r, "memory_growth").level == HealthLevel::warning);
    CHECK(check(r, "connections").value == static_cast<double>(last.connections) / 2000.0);
    REQUIRE(finding(r, "connections") != nullptr);
    // connections 720/h (critical) leaking with memory (warning): the report is critical.
    CHECK(r.level == HealthLevel::critical);
    CHECK(r.level == worst_of(r));
    CHECK(monitor.options().checks.max_connections == 2000);
}

// The history keeps the last history_samples (time, sample) pairs, oldest
// first: checked after every count of samples from 0 to 2N + 3 (fewer than N,
// exactly N, N + k) against the definition, the tail of every sample given.
TEST_CASE("HealthMonitor: history keeps the last N samples, oldest first", "[health]") {
    constexpr std::size_t N = 5;
    wsguard::HealthOptions options;
    options.history_samples = N;
    HealthMonitor monitor(options);
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

    CHECK(monitor.history().empty());
    CHECK(monitor.stats().history_size == 0);
    CHECK(monitor.stats().history_capacity == N);

    std::vector<wsguard::HealthHistoryEntry> given;
    for (std::size_t i = 0; i < 2 * N + 3; ++i) {
        HealthSample s = baseline();
        s.connections = i;
        s.queued_bytes = 1000 + i;
        const auto t = t0 + interval * static_cast<int>(i);
        monitor.sample(t, s);
        given.push_back({t, s});

        const std::size_t kept = std::min(given.size(), N);
        const auto h = monitor.history();
        REQUIRE(h.size() == kept);
        for (std::size_t k = 0; k < kept; ++k) {
            const auto& expected = given[given.size() - kept + k];
            CHECK(h[k].time == expected.time);
            CHECK(h[k].sample.connections == expected.sample.connections);
            CHECK(h[k].sample.queued_bytes == expected.sample.queued_bytes);
            CHECK(h[k].sample.memory.resident_bytes == expected.sample.memory.resident_bytes);
        }
        const auto stats = monitor.stats();
        CHECK(stats.history_size == kept);
        CHECK(stats.history_capacity == N);
        CHECK(stats.samples == given.size());
    }

    // The history keeps the calls' order and times; the triage ignores the
    // out-of-order sample (counted in its detectors' stats).
    HealthSample late = baseline();
    late.connections = 999;
    monitor.sample(t0, late);
    const auto h = monitor.history();
    REQUIRE(h.size() == N);
    CHECK(h.back().time == t0);
    CHECK(h.back().sample.connections == 999);
    CHECK(h.front().sample.connections == given[given.size() - N + 1].sample.connections);
    CHECK(monitor.latest().connections == 999);
    const auto connections = static_cast<std::size_t>(HealthSeries::connections);
    CHECK(monitor.stats().series[connections].ignored_out_of_order == 1);
}

TEST_CASE("HealthMonitor: history_samples 0 (the default) keeps no history", "[health]") {
    CHECK(wsguard::HealthOptions{}.history_samples == 0);
    HealthMonitor monitor;
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
    for (int i = 0; i < 10; ++i) {
        monitor.sample(t0 + interval * i, baseline());
    }
    CHECK(monitor.history().empty());
    CHECK(monitor.stats().history_size == 0);
    CHECK(monitor.stats().history_capacity == 0);
    CHECK(monitor.stats().samples == 10);
}

namespace {

void check_same_verdict(const wsguard::GrowthVerdict& a, const wsguard::GrowthVerdict& b) {
    CHECK(a.level == b.level);
    CHECK(a.growth_per_hour == b.growth_per_hour);
    CHECK(a.r_squared == b.r_squared);
    CHECK(a.samples == b.samples);
    CHECK(a.latest == b.latest);
    CHECK(a.time_to_limit == b.time_to_limit);
}

// verdicts()[i] is all_health_series[i] with triage().verdict() of it.
template <class Monitor>
void check_verdicts_match_triage(const Monitor& monitor) {
    const wsguard::SeriesVerdicts v = monitor.verdicts();
    const wsguard::SeriesVerdicts direct = monitor.triage().verdicts();
    for (std::size_t i = 0; i < wsguard::health_series_count; ++i) {
        const HealthSeries s = wsguard::all_health_series[i];
        INFO("series " << wsguard::to_string(s));
        CHECK(v[i].series == s);
        check_same_verdict(v[i].verdict, monitor.triage().verdict(s));
        CHECK(direct[i].series == s);
        check_same_verdict(direct[i].verdict, monitor.triage().verdict(s));
    }
}

}  // namespace

TEST_CASE("HealthMonitor: verdicts() is triage().verdict(s) for every series, in order",
          "[health]") {
    wsguard::HealthOptions options;
    options.triage.resident_bytes.limit = 4096.0 * MiBd;  // so time_to_limit is set
    HealthMonitor monitor(options);
    wsguard::SyncHealthMonitor sync(options);

    // Before any sample: every series has insufficient data.
    check_verdicts_match_triage(monitor);
    for (const auto& sv : monitor.verdicts()) {
        CHECK(sv.verdict.level == GrowthLevel::insufficient_data);
    }

    // Resident grows (warning), connections grow (critical), the heap is never
    // read (insufficient_data), rooms are noisy (ok), the rest flat (ok).
    Noise noise;
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
    for (int i = 0; i < window_samples + 5; ++i) {
        const double hours = std::chrono::duration<double, std::ratio<3600>>(interval * i).count();
        HealthSample s = baseline();
        s.memory.heap_in_use_bytes.reset();
        s.memory.resident_bytes = bytes_at(500, 80, hours);
        s.connections = count_at(1000, 720, hours);
        s.rooms = static_cast<std::size_t>(50 + 20 * noise());
        monitor.sample(t0 + interval * i, s);
        sync.sample(t0 + interval * i, s);
        if (i == 3 || i == window_samples / 2 || i == window_samples + 4) {
            check_verdicts_match_triage(monitor);
            check_verdicts_match_triage(sync);
        }
    }
    const auto v = monitor.verdicts();
    const auto at = [&](HealthSeries s) { return v[static_cast<std::size_t>(s)].verdict; };
    CHECK(at(HealthSeries::resident_bytes).level == GrowthLevel::warning);
    CHECK(at(HealthSeries::resident_bytes).time_to_limit.has_value());
    CHECK(at(HealthSeries::connections).level == GrowthLevel::critical);
    CHECK(at(HealthSeries::heap_bytes).level == GrowthLevel::insufficient_data);
    CHECK(at(HealthSeries::rooms).level == GrowthLevel::ok);
    CHECK(at(HealthSeries::listeners).level == GrowthLevel::ok);

    // The findings and the report on those verdicts are the triage's own.
    CHECK(series_of(LeakTriage::findings(v)) == series_of(monitor.triage().findings()));
    const auto report = monitor.report();
    const auto direct =
        wsguard::evaluate_health(monitor.latest(), options.checks, &monitor.triage());
    const auto from_verdicts =
        wsguard::evaluate_health(monitor.latest(), options.checks, options.triage, v);
    CHECK(wsguard::to_json(report) == wsguard::to_json(direct));
    CHECK(wsguard::to_json(from_verdicts) == wsguard::to_json(direct));
    CHECK(wsguard::to_json(sync.report()) == wsguard::to_json(report));
    REQUIRE(finding(report, "connections") != nullptr);
    // view(): the same report and verdicts, taken together.
    const wsguard::HealthView view = monitor.view();
    const wsguard::HealthView sync_view = sync.view();
    CHECK(wsguard::to_json(view.report) == wsguard::to_json(report));
    CHECK(wsguard::to_json(sync_view.report) == wsguard::to_json(report));
    for (std::size_t i = 0; i < v.size(); ++i) {
        CHECK(view.verdicts[i].series == v[i].series);
        CHECK(view.verdicts[i].verdict.level == v[i].verdict.level);
        CHECK(sync_view.verdicts[i].verdict.level == v[i].verdict.level);
        CHECK(view.verdicts[i].verdict.growth_per_hour == v[i].verdict.growth_per_hour);
    }

    // The locked form returns copies that match the unlocked one.
    const HealthSample latest = sync.latest();
    CHECK(latest.connections == monitor.latest().connections);
    CHECK(latest.memory.resident_bytes == monitor.latest().memory.resident_bytes);
    CHECK(sync.stats().samples == monitor.stats().samples);
}

// One thread samples while two read; run it under ThreadSanitizer
// (WSGUARD_SANITIZE=thread; test_health "[threaded]") to check the locking.
// Catch's macros are not thread-safe, so the threads count what they see and
// the test checks after join. No sleeps: each thread does a fixed number of
// calls.
TEST_CASE("SyncHealthMonitor: one sampler and two readers on one monitor", "[health][threaded]") {
    constexpr std::size_t capacity = 32;
    constexpr int samples = 1500;
    constexpr int reads = 150;
    wsguard::HealthOptions options;
    options.history_samples = capacity;
    options.triage.connections.window = 16;
    options.triage.connections.min_samples = 8;
    wsguard::SyncHealthMonitor monitor(options);
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;

    // The three threads start together, so their calls overlap.
    std::atomic<int> ready{0};
    auto start_together = [&ready] {
        ready.fetch_add(1);
        while (ready.load() < 3) {
            std::this_thread::yield();
        }
    };

    std::thread sampler([&] {
        start_together();
        for (int i = 0; i < samples; ++i) {
            HealthSample s = baseline();
            s.connections = static_cast<std::size_t>(i);
            monitor.sample(t0 + interval * i, s);
        }
    });

    struct Seen {
        int bad_history = 0;   // not oldest first, not consecutive or over capacity
        int bad_report = 0;    // not five checks
        int bad_verdicts = 0;  // series out of order
        int bad_stats = 0;     // samples went backwards, or size beyond capacity
    };
    std::array<Seen, 2> seen{};
    auto reader = [&](Seen& out) {
        start_together();
        std::uint64_t last_samples = 0;
        for (int r = 0; r < reads; ++r) {
            const auto h = monitor.history();
            if (h.size() > capacity) {
                ++out.bad_history;
            }
            for (std::size_t k = 1; k < h.size(); ++k) {
                if (h[k].sample.connections != h[k - 1].sample.connections + 1 ||
                    h[k].time - h[k - 1].time != interval) {
                    ++out.bad_history;
                }
            }
            if (monitor.report().checks.size() != 5) {
                ++out.bad_report;
            }
            const auto v = monitor.verdicts();
            for (std::size_t i = 0; i < v.size(); ++i) {
                if (v[i].series != wsguard::all_health_series[i]) {
                    ++out.bad_verdicts;
                }
            }
            const auto stats = monitor.stats();
            if (stats.samples < last_samples || stats.history_size > capacity ||
                stats.history_capacity != capacity ||
                stats.history_size != std::min<std::uint64_t>(stats.samples, capacity)) {
                ++out.bad_stats;
            }
            last_samples = stats.samples;
            (void)monitor.latest();
        }
    };
    std::thread first(reader, std::ref(seen[0]));
    std::thread second(reader, std::ref(seen[1]));
    sampler.join();
    first.join();
    second.join();

    for (const Seen& s : seen) {
        CHECK(s.bad_history == 0);
        CHECK(s.bad_report == 0);
        CHECK(s.bad_verdicts == 0);
        CHECK(s.bad_stats == 0);
    }
    const auto h = monitor.history();
    REQUIRE(h.size() == capacity);
    CHECK(h.front().sample.connections == samples - capacity);
    CHECK(h.back().sample.connections == samples - 1);
    CHECK(monitor.latest().connections == samples - 1);
    CHECK(monitor.stats().samples == samples);
    // One more connection every 10 s: 360/h, at or above the 60/h warning.
    CHECK(monitor.verdicts()[static_cast<std::size_t>(HealthSeries::connections)].verdict.level ==
          GrowthLevel::warning);
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

TEST_CASE("to_json writes the report in a fixed shape and escapes strings", "[health]") {
    HealthReport r;
    r.level = HealthLevel::warning;
    CheckResult c;
    c.name = "connections";
    c.level = HealthLevel::warning;
    c.measured = true;
    c.value = 0.8;
    c.warning_at = 0.8;
    c.critical_at = 0.95;
    c.message = "quote \" backslash \\ newline \n tab \t bell \x07 unicode \xc3\xa9 end";
    r.checks.push_back(c);
    CheckResult n;
    n.name = "memory_growth";
    n.value = std::numeric_limits<double>::quiet_NaN();
    n.warning_at = 52428800;
    n.critical_at = std::numeric_limits<double>::infinity();
    n.message = "";
    r.checks.push_back(n);
    Finding f;
    f.series = "rooms";
    f.level = HealthLevel::warning;
    f.growth_per_hour = 720.5;
    f.r_squared = 0.99;
    f.message = "\r\b\f\x1f";
    r.findings.push_back(f);

    const std::string expected =
        R"({"level":"warning","checks":[)"
        R"({"name":"connections","level":"warning","measured":true,"value":0.8,)"
        R"("warning_at":0.8,"critical_at":0.95,"message":"quote \" backslash \\ newline \n tab )"
        R"(\t bell \u0007 unicode )"
        "\xc3\xa9"
        R"( end"},)"
        R"({"name":"memory_growth","level":"ok","measured":false,"value":null,)"
        R"("warning_at":52428800,"critical_at":null,"message":""}],)"
        R"("findings":[{"series":"rooms","level":"warning","growth_per_hour":720.5,)"
        R"("r_squared":0.99,"message":"\r\b\f\u001f"}]})";
    CHECK(wsguard::to_json(r) == expected);

    CHECK(wsguard::to_json(HealthReport{}) == R"({"level":"ok","checks":[],"findings":[]})");
}

// ---------------------------------------------------------------------------
// CriticalSnapshotWriter
// ---------------------------------------------------------------------------

TEST_CASE("snapshot: written on critical only, then not again within the interval", "[health]") {
    TempDir dir;
    SnapshotOptions o;
    o.directory = dir.path.string();
    CriticalSnapshotWriter writer(o);
    CHECK(writer.options().min_interval == std::chrono::minutes(5));
    CHECK(writer.options().max_files == 10);
    wsguard::test::ManualClock clock;

    auto r = writer.maybe_write(report_with_level(HealthLevel::warning), "{}", clock.now(),
                                wall_ms(1000));
    CHECK(r.status == SnapshotStatus::not_critical);
    CHECK(dir.names().empty());
    r = writer.maybe_write(report_with_level(HealthLevel::ok), "{}", clock.now(), wall_ms(1000));
    CHECK(r.status == SnapshotStatus::not_critical);

    const HealthReport critical = report_with_level(HealthLevel::critical);
    r = writer.maybe_write(critical, R"( {"connections":3,"rooms":1} )", clock.now(),
                           wall_ms(1700000000123));
    REQUIRE(r.status == SnapshotStatus::written);
    CHECK(r.error.empty());
    CHECK(r.removed == 0);
    CHECK(std::filesystem::path(r.path).filename() == "wsguard-snapshot-1700000000123.json");
    CHECK(dir.names() == std::vector<std::string>{"wsguard-snapshot-1700000000123.json"});

    const std::string body = read_file(r.path);
    CHECK_THAT(body, StartsWith(R"({"format":"wsguard-snapshot","version":1,)"
                                R"("unix_ms":1700000000123,"health":)" +
                                wsguard::to_json(critical) +
                                R"(,"census":{"connections":3,"rooms":1},"malloc_info":)"));
    if (wsguard::detail::glibc_malloc) {
        CHECK_THAT(body, Contains(R"("malloc_info":"<malloc version=)"));
        // The XML's quotes and newlines are escaped: one line of JSON.
        CHECK(std::count(body.begin(), body.end(), '\n') == 1);
    } else {
        CHECK_THAT(body, Contains(R"("malloc_info":null})"));
    }
    CHECK(body.back() == '\n');

    // Within the interval: refused, even at the last millisecond.
    clock.advance(std::chrono::minutes(5) - std::chrono::milliseconds(1));
    r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(1700000300122));
    CHECK(r.status == SnapshotStatus::rate_limited);
    CHECK(dir.names().size() == 1);

    // At the interval: written again.
    clock.advance(std::chrono::milliseconds(1));
    r = writer.maybe_write(critical, "", clock.now(), wall_ms(1700000300123));
    REQUIRE(r.status == SnapshotStatus::written);
    CHECK_THAT(read_file(r.path), Contains(R"("census":null,)"));
    CHECK(dir.names().size() == 2);

    const auto s = writer.stats();
    CHECK(s.written == 2);
    CHECK(s.not_critical == 2);
    CHECK(s.rate_limited == 1);
    CHECK(s.failed == 0);
    CHECK(s.removed == 0);
    CHECK(s.written == dir.names().size());
}

TEST_CASE("snapshot: keeps at most max_files of its own files, deleting the oldest", "[health]") {
    TempDir dir;
    // Files that are not this writer's: never counted, never deleted.
    const std::vector<std::string> foreign = {"notes.txt", "wsguard-snapshot-abc.json",
                                              "wsguard-snapshot-5.json.tmp",
                                              "other-snapshot-1.json", "wsguard-snapshot-.json"};
    for (const auto& name : foreign) {
        std::ofstream(dir.path / name) << "x";
    }
    SnapshotOptions o;
    o.directory = dir.path.string();
    o.max_files = 3;
    o.min_interval = std::chrono::seconds(0);
    o.include_malloc_info = false;
    CriticalSnapshotWriter writer(o);
    wsguard::test::ManualClock clock;
    const HealthReport critical = report_with_level(HealthLevel::critical);

    // Written out of wall-clock order: retention goes by the time in the name.
    const std::int64_t times[] = {5000, 1000, 3000, 2000, 4000};
    std::size_t removed = 0;
    for (std::int64_t t : times) {
        const auto r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(t));
        REQUIRE(r.status == SnapshotStatus::written);
        CHECK_THAT(read_file(r.path), Contains(R"("malloc_info":null})"));
        removed += r.removed;
        clock.advance(1s);
    }
    CHECK(removed == 2);
    CHECK(writer.stats().removed == 2);
    std::vector<std::string> expected = foreign;
    expected.push_back("wsguard-snapshot-3000.json");
    expected.push_back("wsguard-snapshot-4000.json");
    expected.push_back("wsguard-snapshot-5000.json");
    std::sort(expected.begin(), expected.end());
    CHECK(dir.names() == expected);

    // The same millisecond twice: a "-1" name, which sorts after the plain one.
    auto r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(5000));
    REQUIRE(r.status == SnapshotStatus::written);
    CHECK(std::filesystem::path(r.path).filename() == "wsguard-snapshot-5000-1.json");
    CHECK(r.removed == 1);  // 3000 goes
    r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(5000));
    REQUIRE(r.status == SnapshotStatus::written);
    CHECK(std::filesystem::path(r.path).filename() == "wsguard-snapshot-5000-2.json");
    expected = foreign;
    expected.push_back("wsguard-snapshot-5000-1.json");
    expected.push_back("wsguard-snapshot-5000-2.json");
    expected.push_back("wsguard-snapshot-5000.json");
    std::sort(expected.begin(), expected.end());
    CHECK(dir.names() == expected);
}

TEST_CASE("snapshot: an unwritable directory is an error value, not an exception", "[health]") {
    TempDir dir;
    wsguard::test::ManualClock clock;
    const HealthReport critical = report_with_level(HealthLevel::critical);

    SECTION("missing directory") {
        SnapshotOptions o;
        o.directory = (dir.path / "missing").string();
        CriticalSnapshotWriter writer(o);
        auto r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(1000));
        CHECK(r.status == SnapshotStatus::failed);
        CHECK(r.path.empty());
        CHECK_THAT(r.error, Contains("missing"));
        CHECK_THAT(r.error, Contains("does not exist"));
        CHECK_FALSE(std::filesystem::exists(dir.path / "missing"));
        // A failed attempt starts the interval too: the disk is not hammered.
        r = writer.maybe_write(critical, "{}", clock.now() + 1s, wall_ms(2000));
        CHECK(r.status == SnapshotStatus::rate_limited);
        // Once the directory exists, the next interval writes.
        std::filesystem::create_directory(dir.path / "missing");
        r = writer.maybe_write(critical, "{}", clock.now() + std::chrono::minutes(5),
                               wall_ms(3000));
        CHECK(r.status == SnapshotStatus::written);
        const auto s = writer.stats();
        CHECK(s.failed == 1);
        CHECK(s.rate_limited == 1);
        CHECK(s.written == 1);
    }
    SECTION("a path through a regular file") {
        std::ofstream(dir.path / "file") << "x";
        SnapshotOptions o;
        o.directory = (dir.path / "file" / "sub").string();
        CriticalSnapshotWriter writer(o);
        const auto r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(1000));
        CHECK(r.status == SnapshotStatus::failed);
        CHECK_FALSE(r.error.empty());
        CHECK(writer.stats().failed == 1);
    }
    SECTION("the directory is a regular file") {
        std::ofstream(dir.path / "file") << "x";
        SnapshotOptions o;
        o.directory = (dir.path / "file").string();
        CriticalSnapshotWriter writer(o);
        const auto r = writer.maybe_write(critical, "{}", clock.now(), wall_ms(1000));
        CHECK(r.status == SnapshotStatus::failed);
        CHECK_THAT(r.error, Contains("is not a directory"));
    }
    // Nothing but the test's own files remains.
    const auto names = dir.names();
    CHECK(std::none_of(names.begin(), names.end(),
                       [](const std::string& n) { return n.find(".tmp") != std::string::npos; }));
}

TEST_CASE("snapshot: options are validated and statuses have names", "[health]") {
    SnapshotOptions o;
    CHECK_THROWS_AS(CriticalSnapshotWriter(o), std::invalid_argument);  // no directory
    o.directory = ".";
    CHECK_NOTHROW(CriticalSnapshotWriter(o));
    SnapshotOptions zero = o;
    zero.max_files = 0;
    CHECK_THROWS_AS(CriticalSnapshotWriter(zero), std::invalid_argument);
    SnapshotOptions negative = o;
    negative.min_interval = -1s;
    CHECK_THROWS_AS(CriticalSnapshotWriter(negative), std::invalid_argument);
    SnapshotOptions slash = o;
    slash.prefix = "../x";
    CHECK_THROWS_AS(CriticalSnapshotWriter(slash), std::invalid_argument);
    SnapshotOptions empty = o;
    empty.prefix = "";
    CHECK_THROWS_AS(CriticalSnapshotWriter(empty), std::invalid_argument);

    CHECK(std::string(wsguard::to_string(SnapshotStatus::written)) == "written");
    CHECK(std::string(wsguard::to_string(SnapshotStatus::not_critical)) == "not_critical");
    CHECK(std::string(wsguard::to_string(SnapshotStatus::rate_limited)) == "rate_limited");
    CHECK(std::string(wsguard::to_string(SnapshotStatus::failed)) == "failed");
}

TEST_CASE("malloc_info_xml is glibc's XML where glibc's malloc is in use", "[health]") {
    const auto xml = wsguard::malloc_info_xml();
    if (wsguard::detail::glibc_malloc) {
        REQUIRE(xml.has_value());
        CHECK_THAT(*xml, StartsWith("<malloc version="));
        CHECK_THAT(*xml, Contains("</malloc>"));
    } else {
        CHECK_FALSE(xml.has_value());
    }
}
