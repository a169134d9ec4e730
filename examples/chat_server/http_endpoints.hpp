// wsguard reference chat server — what /stats and /metrics say.
// SPDX-License-Identifier: MIT
#pragma once

#include "chat_router.hpp"

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health.hpp>
#include <wsguard/memory.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace chat {

/// Everything the HTTP endpoints report, gathered once per request.
struct ServerSnapshot {
    wsguard::wspp::GuardStats guard;
    RouterStats router;
    wsguard::wspp::BridgeStats bridge;  ///< rooms across servers (state "local": none)
    wsguard::MemoryReading memory;
    wsguard::HealthReport health;
    /// (series name, verdict) for every series the triage watches.
    std::vector<std::pair<std::string, wsguard::GrowthVerdict>> growth;
    double uptime_seconds = 0;
};

inline nlohmann::ordered_json optional_json(const std::optional<std::size_t>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

/// One sample of every series the dashboard plots.
struct HistorySample {
    double t = 0;  ///< seconds since the server started
    std::optional<std::size_t> resident_bytes, heap_bytes;
    std::size_t connections = 0, listeners = 0, queued_bytes = 0, rooms = 0, memberships = 0;
};

/// GET /history: {"interval_ms":N,"samples":[{...}, ...]}, oldest first.
template <class Container>
std::string history_json(const Container& samples, std::chrono::milliseconds interval) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const HistorySample& h : samples) {
        list.push_back({{"t", h.t},
                        {"resident_bytes", optional_json(h.resident_bytes)},
                        {"heap_bytes", optional_json(h.heap_bytes)},
                        {"connections", h.connections},
                        {"listeners", h.listeners},
                        {"queued_bytes", h.queued_bytes},
                        {"rooms", h.rooms},
                        {"memberships", h.memberships}});
    }
    nlohmann::ordered_json j = {{"interval_ms", interval.count()}, {"samples", std::move(list)}};
    return j.dump();
}

/// GET /stats: the top-level counts first, then objects per concern.
inline std::string stats_json(const ServerSnapshot& s) {
    const auto& g = s.guard;
    nlohmann::ordered_json j = {
        {"connections", g.connections},
        {"rooms", g.rooms},
        {"memberships", g.memberships},
        {"listeners", g.listeners},
        {"queued_bytes", g.queued_bytes},
        {"dropped_messages", g.dropped_messages},
        {"rejected_connections", g.rejected_connections},
        {"uptime_seconds", s.uptime_seconds},
        {"closes",
         {{"slow_consumer", g.closed_slow_consumer},
          {"idle", g.closed_idle},
          {"dead_peer", g.terminated_dead},
          {"oversized", g.closed_oversized},
          {"shutdown", g.closed_shutdown}}},
        {"traffic",
         {{"opened", g.opened},
          {"closed", g.closed},
          {"failed_handshakes", g.failed},
          {"messages_in", g.messages_in},
          {"messages_out", g.messages_out},
          {"bytes_in", g.bytes_in},
          {"bytes_out", g.bytes_out},
          {"pings_sent", g.pings_sent},
          {"pongs_received", g.pongs_received}}},
        {"router",
         {{"handled", s.router.handled},
          {"errors", s.router.errors},
          {"room_messages", s.router.room_messages},
          {"deliveries", s.router.deliveries}}},
        {"memory",
         {{"resident_bytes", optional_json(s.memory.resident_bytes)},
          {"heap_in_use_bytes", optional_json(s.memory.heap_in_use_bytes)},
          {"limit_bytes", optional_json(s.memory.limit_bytes)},
          {"limit_source", wsguard::to_string(s.memory.limit_source)},
          {"trims", g.memory_trims},
          {"shared_uris", g.shared_uris}}},
        {"shutting_down", g.shutting_down},
        {"bridge",
         {{"state", wsguard::wspp::to_string(s.bridge.state)},
          {"node_id", s.bridge.node_id},
          {"rooms", s.bridge.rooms},
          {"subscriptions", s.bridge.subscriptions},
          {"publish_calls", s.bridge.publish_calls},
          {"published", s.bridge.published},
          {"in_flight", s.bridge.in_flight},
          {"received", s.bridge.received},
          {"delivered", s.bridge.delivered},
          {"ignored_own", s.bridge.ignored_own},
          {"malformed", s.bridge.malformed},
          {"failed", s.bridge.failed},
          {"failed_in_flight", s.bridge.failed_in_flight},
          {"dropped", s.bridge.dropped},
          {"connects", s.bridge.connects},
          {"disconnects", s.bridge.disconnects},
          {"connect_failures", s.bridge.connect_failures},
          {"queue",
           {{"size", s.bridge.queue.size},
            {"bytes", s.bridge.queue.bytes},
            {"max_count", s.bridge.queue.max_count},
            {"high_water_count", s.bridge.queue.high_water_count},
            {"dropped_oldest", s.bridge.queue.dropped_oldest},
            {"dropped_expired", s.bridge.queue.dropped_expired}}}}},
    };
    nlohmann::ordered_json growth = nlohmann::ordered_json::object();
    for (const auto& [series, v] : s.growth) {
        // No rate is better than a meaningless one from two samples.
        growth[series] = {{"level", wsguard::to_string(v.level)},
                          {"growth_per_hour", v.level == wsguard::GrowthLevel::insufficient_data
                                                  ? nlohmann::ordered_json(nullptr)
                                                  : nlohmann::ordered_json(v.growth_per_hour)},
                          {"r_squared", v.r_squared},
                          {"samples", v.samples}};
    }
    j["growth"] = std::move(growth);
    j["health"] = nlohmann::ordered_json::parse(wsguard::to_json(s.health));
    return j.dump(2);
}

namespace detail {

class MetricsWriter {
public:
    void metric(const char* name, const char* type, const char* help, double value,
                const char* labels = "") {
        out_ << "# HELP wsguard_" << name << ' ' << help << '\n'
             << "# TYPE wsguard_" << name << ' ' << type << '\n'
             << "wsguard_" << name << labels << ' ' << value << '\n';
    }
    void family(const char* name, const char* type, const char* help) {
        out_ << "# HELP wsguard_" << name << ' ' << help << '\n'
             << "# TYPE wsguard_" << name << ' ' << type << '\n';
    }
    void sample(const char* name, const char* label, const std::string& value, double v) {
        out_ << "wsguard_" << name << '{' << label << "=\"" << value << "\"} " << v << '\n';
    }
    void gauge(const char* name, const char* help, double value) {
        metric(name, "gauge", help, value);
    }
    void counter(const char* name, const char* help, double value) {
        metric(name, "counter", help, value);
    }
    std::string str() const { return out_.str(); }

private:
    std::ostringstream out_;
};

}  // namespace detail

/// GET /metrics: Prometheus text exposition format 0.0.4, `wsguard_` prefix.
inline std::string metrics_text(const ServerSnapshot& s) {
    const auto& g = s.guard;
    detail::MetricsWriter w;
    w.gauge("connections", "Open, admitted WebSocket connections.", double(g.connections));
    w.gauge("rooms", "Rooms with at least one member.", double(g.rooms));
    w.gauge("memberships", "Room memberships over all connections.", double(g.memberships));
    w.gauge("listeners", "Listeners attached to the server's events.", double(g.listeners));
    w.gauge("queued_bytes", "Bytes waiting in every connection's send queue.",
            double(g.queued_bytes));
    w.counter("dropped_messages_total", "Messages not queued for a slow consumer.",
              double(g.dropped_messages));
    w.counter("rejected_connections_total", "Connections refused at max connections (1013).",
              double(g.rejected_connections));
    w.counter("closed_slow_consumer_total", "Connections closed as slow consumers (1008).",
              double(g.closed_slow_consumer));
    w.counter("closed_idle_total", "Connections closed for idleness (1000).",
              double(g.closed_idle));
    w.counter("terminated_dead_total", "Connections terminated after a missed pong.",
              double(g.terminated_dead));
    w.counter("closed_oversized_total", "Connections closed for a message too big (1009).",
              double(g.closed_oversized));
    w.counter("connections_opened_total", "Connections admitted.", double(g.opened));
    w.counter("connections_closed_total", "Admitted connections that closed.", double(g.closed));
    w.counter("messages_in_total", "Messages received.", double(g.messages_in));
    w.counter("messages_out_total", "Messages queued for sending.", double(g.messages_out));
    w.counter("bytes_in_total", "Payload bytes received.", double(g.bytes_in));
    w.counter("bytes_out_total", "Payload bytes queued for sending.", double(g.bytes_out));
    w.counter("router_errors_total", "Error replies to malformed messages.",
              double(s.router.errors));
    if (s.memory.resident_bytes) {
        w.gauge("resident_memory_bytes", "Resident set size of the process.",
                double(*s.memory.resident_bytes));
    }
    if (s.memory.heap_in_use_bytes) {
        w.gauge("heap_in_use_bytes", "Heap bytes in use (mallinfo2).",
                double(*s.memory.heap_in_use_bytes));
    }
    if (s.memory.limit_bytes) {
        w.gauge("memory_limit_bytes", "Memory limit that applies (cgroup, else physical).",
                double(*s.memory.limit_bytes));
    }
    w.gauge("health_level", "Overall health: 0 ok, 1 warning, 2 critical.",
            double(static_cast<int>(s.health.level)));
    w.family("health_check_level", "gauge",
             "Level of each health check: 0 ok, 1 warning, 2 critical.");
    for (const auto& c : s.health.checks) {
        w.sample("health_check_level", "check", c.name, double(static_cast<int>(c.level)));
    }
    w.family("growth_per_hour", "gauge",
             "Least-squares growth per hour of each series (0 until enough samples).");
    for (const auto& [series, v] : s.growth) {
        w.sample("growth_per_hour", "series", series,
                 v.level == wsguard::GrowthLevel::insufficient_data ? 0.0 : v.growth_per_hour);
    }
    w.family("growth_fit_r_squared", "gauge", "Fit quality (R^2) of each series' growth line.");
    for (const auto& [series, v] : s.growth) {
        w.sample("growth_fit_r_squared", "series", series, v.r_squared);
    }
    const auto& b = s.bridge;
    w.gauge("bridge_connected", "1 when the scale-out bridge is connected to its broker.",
            b.state == wsguard::wspp::BridgeState::connected ? 1.0 : 0.0);
    w.gauge("bridge_subscriptions", "Room channels the broker confirmed this node follows.",
            double(b.subscriptions));
    w.gauge("bridge_queue_size", "Messages waiting for the broker.", double(b.queue.size));
    w.gauge("bridge_in_flight", "Messages sent to the broker, not acknowledged yet.",
            double(b.in_flight));
    w.counter("bridge_published_total", "Room messages the broker acknowledged.",
              double(b.published));
    w.counter("bridge_received_total", "Messages from the broker (own echoes included).",
              double(b.received));
    w.counter("bridge_delivered_total", "Messages from other nodes delivered to local members.",
              double(b.delivered));
    w.counter("bridge_failed_total", "Room messages that never reached the broker.",
              double(b.failed));
    w.counter("bridge_dropped_total", "Of those, dropped by the bounded queue (overflow or age).",
              double(b.dropped));
    w.counter("bridge_disconnects_total", "Broker connections lost.", double(b.disconnects));
    w.counter("bridge_connect_failures_total", "Broker connection attempts that failed.",
              double(b.connect_failures));
    w.gauge("health_findings", "Series named by the leak triage.",
            double(s.health.findings.size()));
    w.gauge("uptime_seconds", "Seconds since the server started.", s.uptime_seconds);
    return w.str();
}

}  // namespace chat
