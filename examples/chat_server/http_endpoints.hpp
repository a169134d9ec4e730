// wsguard reference chat server — the HTTP endpoints: a request in, a response
// out. What they report is gathered elsewhere (telemetry.hpp, the guard, the
// router, the bridge) into a ServerSnapshot; this file only renders it.
// SPDX-License-Identifier: MIT
#pragma once

#include "build_info.hpp"
#include "dashboard_page.hpp"
#include "telemetry.hpp"

#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health.hpp>
#include <wsguard/memory.hpp>
#include <wsguard/websocketpp/guard_types.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <websocketpp/http/constants.hpp>

#include <asio/ip/address.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chat {

inline nlohmann::ordered_json optional_json(const std::optional<std::size_t>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

/// GET /history: {"interval_ms":N,"samples":[{...}, ...]}, oldest first; each
/// sample has its time in seconds since the start, the memory readings and
/// every guard series.
inline std::string history_json(
    const std::vector<std::pair<double, wsguard::HealthSample>>& samples,
    std::chrono::milliseconds interval) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& [t, h] : samples) {
        nlohmann::ordered_json one = {{"t", t},
                                      {"resident_bytes", optional_json(h.memory.resident_bytes)},
                                      {"heap_bytes", optional_json(h.memory.heap_in_use_bytes)}};
        for (const GuardSeries& g : guard_series) {
            one[wsguard::to_string(g.series)] = h.*g.in_sample;
        }
        list.push_back(std::move(one));
    }
    nlohmann::ordered_json j = {{"interval_ms", interval.count()}, {"samples", std::move(list)}};
    return j.dump();
}

/// {"version":N,...,"pending_handshakes":N,"total":N}: the connections
/// refused before they opened, by reason (the last: closed unread at accept,
/// over max_pending_handshakes).
inline nlohmann::ordered_json refused_json(const wsguard::wspp::GuardStats& g) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < wsguard::wspp::refusal_reason_count; ++i) {
        j[wsguard::wspp::to_string(static_cast<wsguard::wspp::RefusalReason>(i))] =
            g.refused.by_reason[i];
    }
    j["pending_handshakes"] = g.refused_pending;
    j["total"] = g.refused.total() + g.refused_pending;
    return j;
}

/// {"1000":N,...,"1013":N,"other":N}: admitted connections closed, by the
/// code this side sent (see GuardStats::closes_by_code).
inline nlohmann::ordered_json closes_by_code_json(const wsguard::wspp::GuardStats& g) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (std::size_t i = 0; i < wsguard::wspp::counted_close_codes.size(); ++i) {
        j[std::to_string(wsguard::wspp::counted_close_codes[i])] = g.closes_by_code[i];
    }
    j["other"] = g.closes_by_code.back();
    return j;
}

namespace detail {

/// Effect: `seconds` as a person reads a span: "40 s", "2.0 min".
inline std::string span_text(double seconds) {
    char buf[32];
    if (seconds < 120.0) {
        std::snprintf(buf, sizeof buf, "%.0f s", seconds);
    } else {
        std::snprintf(buf, sizeof buf, "%.1f min", seconds / 60.0);
    }
    return buf;
}

}  // namespace detail

/// {"verdict":V,"history_seconds":H,"needed_seconds":N,"message":M}: what
/// the growth verdict rests on. V is "growth" (a finding names a series),
/// "too_little_history" (H < N: the detectors' window is not full, so no
/// "nothing grows") or "no_growth".
inline nlohmann::ordered_json growth_verdict_json(const ServerSnapshot& s) {
    const double have = s.growth_history_seconds;
    const double need = s.growth_needed_seconds;
    std::string verdict;
    std::string message;
    if (!s.health.findings.empty()) {
        verdict = "growth";
        message = "growth over the last " + detail::span_text(have) + " of samples:";
        for (const auto& f : s.health.findings) {
            message += " " + f.series;
        }
    } else if (have + 1e-3 < need) {
        verdict = "too_little_history";
        message = "too little history: " + detail::span_text(have) + " of the " +
                  detail::span_text(need) + " a growth verdict needs";
    } else {
        verdict = "no_growth";
        message = "no growth over the last " + detail::span_text(have) + " of samples";
    }
    return {{"verdict", verdict},
            {"history_seconds", have},
            {"needed_seconds", need},
            {"message", message}};
}

/// GET /stats: the top-level counts first, then objects per concern.
inline std::string stats_json(const ServerSnapshot& s) {
    const auto& g = s.guard;
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const GuardSeries& series : guard_series) {
        j[wsguard::to_string(series.series)] = g.*series.in_stats;
    }
    j.update(nlohmann::ordered_json{
        {"dropped_messages", g.dropped_messages},
        {"rejected_connections", g.rejected_connections},
        {"pending_handshakes", g.pending_handshakes},
        {"uptime_seconds", s.uptime_seconds},
        {"refused", refused_json(g)},
        {"dropped", {{"slow_consumer", g.dropped_messages}}},
        {"peer_addresses", g.peer_addresses},
        {"closes",
         {{"slow_consumer", g.closed_slow_consumer},
          {"idle", g.closed_idle},
          {"dead_peer", g.terminated_dead},
          {"oversized", g.closed_oversized},
          {"shutdown", g.closed_shutdown}}},
        {"closes_by_code", closes_by_code_json(g)},
        {"traffic",
         {{"opened", g.opened},
          {"closed", g.closed},
          {"failed_handshakes", g.failed},
          {"messages_in", g.messages_in},
          {"messages_out", g.messages_out},
          {"bytes_in", g.bytes_in},
          {"bytes_out", g.bytes_out},
          {"pings_sent", g.pings_sent},
          {"pongs_received", g.pongs_received},
          {"send_not_connected", g.send_not_connected},
          {"send_failed", g.send_failed}}},
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
          {"local_only", s.bridge.local_only},
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
          {"failures",
           {{"too_large", s.bridge.failures.too_large},
            {"queue_full", s.bridge.failures.queue_full},
            {"expired", s.bridge.failures.expired},
            {"connection_lost", s.bridge.failures.connection_lost},
            {"refused", s.bridge.failures.refused},
            {"stopped", s.bridge.failures.stopped}}},
          {"in_flight_bytes", s.bridge.in_flight_bytes},
          {"invalid_utf8", s.bridge.invalid_utf8},
          {"not_followed", s.bridge.not_followed},
          {"protocol_errors", s.bridge.protocol_errors},
          {"reply_timeouts", s.bridge.reply_timeouts},
          {"down_for_ms", static_cast<std::int64_t>(s.bridge.down_for.count())},
          {"last_error", s.bridge.last_error},
          {"ready", wsguard::wspp::bridge_ready(s.bridge)},
          {"queue",
           {{"size", s.bridge.queue.size},
            {"bytes", s.bridge.queue.bytes},
            {"max_count", s.bridge.queue.max_count},
            {"high_water_count", s.bridge.queue.high_water_count},
            {"dropped_oldest", s.bridge.queue.dropped_oldest},
            {"dropped_expired", s.bridge.queue.dropped_expired}}}}},
    });
    nlohmann::ordered_json growth = nlohmann::ordered_json::object();
    for (const auto& [series, v] : s.growth) {
        // No rate is better than a meaningless one from two samples.
        growth[wsguard::to_string(series)] = {
            {"level", wsguard::to_string(v.level)},
            {"growth_per_hour", v.level == wsguard::GrowthLevel::insufficient_data
                                    ? nlohmann::ordered_json(nullptr)
                                    : nlohmann::ordered_json(v.growth_per_hour)},
            {"r_squared", v.r_squared},
            {"samples", v.samples}};
    }
    j["growth"] = std::move(growth);
    j["growth_verdict"] = growth_verdict_json(s);
    // The health report has one writer, the library's: its JSON goes in as
    // written (serialized once), as the last member.
    // Replaced, not thrown on: text that is not UTF-8 (a last error, a node id).
    std::string out = j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    out.pop_back();  // the closing brace
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
        out.pop_back();
    }
    out += ",\n  \"health\": ";
    out += wsguard::to_json(s.health);
    out += "\n}";
    return out;
}

namespace detail {

/// Effect: `v` as the text format writes a sample value: a count as its
/// digits (a double would print 183617042 as 1.83617e+08, and lose digits
/// past 2^53).
inline std::string metric_value(std::uint64_t v) {
    return std::to_string(v);
}

/// Effect: `v` as the text format writes a sample value: the shortest text
/// that reads back as the same double, without an exponent in the range a
/// person reads (1000000, not 1e+06); +Inf, -Inf and NaN as Prometheus
/// spells them.
inline std::string metric_value(double v) {
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    const double magnitude = std::fabs(v);
    const bool plain = magnitude == 0 || (magnitude >= 1e-4 && magnitude < 1e15);
    char buf[64];
    const auto r = plain ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

/// The label name and value pairs of one sample.
using MetricLabels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

/// Prometheus text exposition format 0.0.4, every name with the `wsguard_`
/// prefix. A family is opened once (HELP, then TYPE) and the samples that
/// follow belong to it, so a sample cannot land under another family's
/// TYPE line.
///
/// Not prometheus-cpp's TextSerializer (Debian: prometheus-cpp-dev): it
/// serializes its own registry's MetricFamily structs, whose counters hold
/// a double (exact only up to 2^53), and would add a compiled library to a
/// server meant to be copied with header-only dependencies. This writer is
/// the part of the format the server uses; promtool checks its output
/// (tests/integration/test_stats.cpp).
class MetricsWriter {
public:
    /// Effect: opens family `name`: its HELP and TYPE lines.
    /// Throws: std::logic_error if `name` was opened before (one family per
    ///         name, or Prometheus rejects the whole scrape).
    void family(std::string_view name, const char* type, std::string_view help) {
        if (!families_.emplace(name).second) {
            throw std::logic_error("metric family opened twice: wsguard_" + std::string(name));
        }
        name_ = name;
        out_ << "# HELP wsguard_" << name << ' ' << help << '\n'
             << "# TYPE wsguard_" << name << ' ' << type << '\n';
    }
    /// Effect: one sample of the family opened last.
    void sample(std::uint64_t value, MetricLabels labels = {}) {
        write_sample(labels, metric_value(value));
    }
    void sample(double value, MetricLabels labels = {}) {
        write_sample(labels, metric_value(value));
    }
    /// Effect: a family with one unlabelled sample.
    template <class Value>
    void gauge(std::string_view name, std::string_view help, Value value) {
        family(name, "gauge", help);
        sample(value);
    }
    template <class Value>
    void counter(std::string_view name, std::string_view help, Value value) {
        family(name, "counter", help);
        sample(value);
    }
    std::string str() const { return out_.str(); }

private:
    void write_sample(MetricLabels labels, const std::string& value) {
        out_ << "wsguard_" << name_;
        const char* separator = "{";
        for (const auto& [label, text] : labels) {
            out_ << separator << label << "=\"";
            // The format's three escapes: a node id or a check name is not ours.
            for (const char c : text) {
                if (c == '\\' || c == '"') {
                    out_ << '\\' << c;
                } else if (c == '\n') {
                    out_ << "\\n";
                } else {
                    out_ << c;
                }
            }
            out_ << '"';
            separator = ",";
        }
        out_ << (labels.size() ? "} " : " ") << value << '\n';
    }

    std::ostringstream out_;
    std::string name_;
    std::set<std::string, std::less<>> families_;
};

/// Effect: whether series `name` counts bytes (its growth is in bytes per
/// second, the rest in units per second).
inline bool counts_bytes(std::string_view name) noexcept {
    constexpr std::string_view suffix = "_bytes";
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
}

}  // namespace detail

/// GET /metrics: Prometheus text exposition format 0.0.4, `wsguard_` prefix.
/// Counts print as integers; a family with several causes is one name with
/// a `reason` label (wsguard_bridge_failed_total's style); rates are per
/// second, the base unit.
inline std::string metrics_text(const ServerSnapshot& s) {
    const auto& g = s.guard;
    detail::MetricsWriter w;
    w.family("build_info", "gauge",
             "Always 1; the labels say which wsguard and websocketpp this server runs.");
    const std::string websocketpp_text = websocketpp_version();
    w.sample(std::uint64_t{1},
             {{"version", wsguard_version}, {"websocketpp_version", websocketpp_text}});
    for (const GuardSeries& series : guard_series) {
        w.gauge(wsguard::to_string(series.series), series.help, g.*series.in_stats);
    }
    w.family("dropped_messages_total", "counter", "Messages not queued, by reason.");
    w.sample(g.dropped_messages, {{"reason", "slow_consumer"}});
    // Every handshake or connection turned away before it was admitted:
    // the admission reasons, the pending-handshake bound, and max connections
    // (1013, closed right after opening: never counted as opened).
    w.family("refused_total", "counter", "Connections refused before admission, by reason.");
    for (std::size_t i = 0; i < wsguard::wspp::refusal_reason_count; ++i) {
        w.sample(
            g.refused.by_reason[i],
            {{"reason", wsguard::wspp::to_string(static_cast<wsguard::wspp::RefusalReason>(i))}});
    }
    w.sample(g.refused_pending, {{"reason", "pending_handshakes"}});
    w.sample(g.rejected_connections, {{"reason", "max_connections"}});
    w.gauge("peer_addresses", "Peer addresses with an admitted connection (per-IP limit on).",
            g.peer_addresses);
    w.gauge("pending_handshakes", "Accepted sockets whose opening handshake is in progress.",
            g.pending_handshakes);
    // The server's own closes; connections_closed_total counts every close,
    // the peer's included.
    const std::pair<const char*, std::uint64_t> closes[] = {
        {"slow_consumer", g.closed_slow_consumer},
        {"idle", g.closed_idle},
        {"dead_peer", g.terminated_dead},
        {"oversized", g.closed_oversized},
        {"shutdown", g.closed_shutdown}};
    w.family("closed_total", "counter",
             "Connections the server closed, by reason: slow_consumer (1008), idle (1000), "
             "dead_peer (a missed pong: terminated), oversized (1009), shutdown (1001).");
    for (const auto& [reason, n] : closes) {
        w.sample(n, {{"reason", reason}});
    }
    w.family("closed_by_code_total", "counter",
             "Admitted connections that closed, by the close code this side sent (1006: "
             "no close handshake); codes outside the counted ones are code=\"other\".");
    for (std::size_t i = 0; i < wsguard::wspp::counted_close_codes.size(); ++i) {
        w.sample(g.closes_by_code[i],
                 {{"code", std::to_string(wsguard::wspp::counted_close_codes[i])}});
    }
    w.sample(g.closes_by_code.back(), {{"code", "other"}});
    w.counter("connections_opened_total", "Connections admitted.", g.opened);
    w.counter("connections_closed_total", "Admitted connections that closed, either side.",
              g.closed);
    w.counter("messages_in_total", "Messages received.", g.messages_in);
    w.counter("messages_out_total", "Messages queued for sending.", g.messages_out);
    w.counter("bytes_in_total", "Payload bytes received.", g.bytes_in);
    w.counter("bytes_out_total", "Payload bytes queued for sending.", g.bytes_out);
    w.counter("send_not_connected_total",
              "Sends to a connection that was unknown, closing or closed.", g.send_not_connected);
    w.counter("send_failed_total", "Sends websocketpp refused for another reason.", g.send_failed);
    w.counter("router_errors_total", "Error replies to malformed messages.", s.router.errors);
    if (s.memory.resident_bytes) {
        w.gauge("resident_memory_bytes", "Resident set size of the process.",
                std::uint64_t{*s.memory.resident_bytes});
    }
    if (s.memory.heap_in_use_bytes) {
        w.gauge("heap_in_use_bytes", "Heap bytes in use (mallinfo2).",
                std::uint64_t{*s.memory.heap_in_use_bytes});
    }
    if (s.memory.limit_bytes) {
        w.gauge("memory_limit_bytes", "Memory limit that applies (cgroup, else physical).",
                std::uint64_t{*s.memory.limit_bytes});
    }
    w.gauge("health_level", "Overall health: 0 ok, 1 warning, 2 critical.",
            static_cast<std::uint64_t>(s.health.level));
    w.family("health_check_level", "gauge",
             "Level of each health check: 0 ok, 1 warning, 2 critical.");
    for (const auto& c : s.health.checks) {
        w.sample(static_cast<std::uint64_t>(c.level), {{"check", c.name}});
    }
    // Per second, Prometheus' base unit (/stats keeps growth_per_hour, which
    // people read); bytes and counts in two families, one unit each.
    for (const bool bytes : {true, false}) {
        w.family(bytes ? "growth_bytes_per_second" : "growth_per_second", "gauge",
                 bytes ? "Least-squares growth of each byte series, in bytes per second (0 "
                         "until enough samples)."
                       : "Least-squares growth of each count series, per second (0 until "
                         "enough samples).");
        for (const auto& [series, v] : s.growth) {
            const char* name = wsguard::to_string(series);
            if (detail::counts_bytes(name) == bytes) {
                w.sample(v.level == wsguard::GrowthLevel::insufficient_data
                             ? 0.0
                             : v.growth_per_hour / 3600.0,
                         {{"series", name}});
            }
        }
    }
    w.family("growth_fit_r_squared", "gauge", "Fit quality (R^2) of each series' growth line.");
    for (const auto& [series, v] : s.growth) {
        w.sample(v.r_squared, {{"series", wsguard::to_string(series)}});
    }
    const auto& b = s.bridge;
    w.gauge("bridge_connected", "1 when the scale-out bridge is connected to its broker.",
            std::uint64_t{b.state == wsguard::wspp::BridgeState::connected});
    w.gauge("bridge_subscriptions", "Room channels the broker confirmed this node follows.",
            std::uint64_t{b.subscriptions});
    w.gauge("bridge_queue_size", "Messages waiting for the broker.", std::uint64_t{b.queue.size});
    w.gauge("bridge_in_flight", "Messages sent to the broker, not acknowledged yet.",
            std::uint64_t{b.in_flight});
    w.counter("bridge_published_total", "Room messages the broker acknowledged.", b.published);
    w.counter("bridge_received_total", "Messages from the broker (own echoes included).",
              b.received);
    w.counter("bridge_delivered_total", "Messages from other nodes delivered to local members.",
              b.delivered);
    w.counter("bridge_dropped_total", "Room messages the bounded queue dropped (overflow or age).",
              b.dropped);
    w.counter("bridge_disconnects_total", "Broker connections lost.", b.disconnects);
    w.counter("bridge_connect_failures_total", "Broker connection attempts that failed.",
              b.connect_failures);
    const std::pair<const char*, std::uint64_t> failures[] = {
        {"too_large", b.failures.too_large}, {"queue_full", b.failures.queue_full},
        {"expired", b.failures.expired},     {"connection_lost", b.failures.connection_lost},
        {"refused", b.failures.refused},     {"stopped", b.failures.stopped}};
    // One series per reason; their sum is /stats' bridge.failed.
    w.family("bridge_failed_total", "counter",
             "Room messages that never reached the broker, by reason.");
    for (const auto& [reason, n] : failures) {
        w.sample(n, {{"reason", reason}});
    }
    const std::pair<const char*, std::uint64_t> received_dropped[] = {
        {"malformed", b.malformed},
        {"invalid_utf8", b.invalid_utf8},
        {"not_followed", b.not_followed}};
    w.family("bridge_received_dropped_total", "counter",
             "Messages from the broker not delivered, by reason.");
    for (const auto& [reason, n] : received_dropped) {
        w.sample(n, {{"reason", reason}});
    }
    w.counter("bridge_protocol_errors_total",
              "Broker connections dropped for a reply outside the protocol.", b.protocol_errors);
    w.counter("bridge_reply_timeouts_total",
              "Broker connections dropped for a reply that came too late.", b.reply_timeouts);
    w.gauge("bridge_in_flight_bytes",
            "Bytes of the commands sent to the broker, not acknowledged yet.",
            std::uint64_t{b.in_flight_bytes});
    w.gauge("bridge_down_seconds",
            "Seconds the broker has been unusable (0 while connected, and without a broker).",
            std::chrono::duration<double>(b.down_for).count());
    w.gauge("bridge_ready", "1 when the bridge can carry room messages (local or connected).",
            std::uint64_t{wsguard::wspp::bridge_ready(b)});
    w.gauge("health_findings", "Series named by the leak triage.",
            std::uint64_t{s.health.findings.size()});
    w.gauge("uptime_seconds", "Seconds since the server started.", s.uptime_seconds);
    return w.str();
}

/// What GET /readyz looks at: whether the server still takes connections and
/// where its bridge stands.
struct Readiness {
    bool shutting_down = false;
    wsguard::wspp::BridgeStats bridge;
};

/// GET /readyz: {"ready":true,"bridge":STATE} when the server takes
/// connections and its bridge is ready (wsguard::wspp::bridge_ready);
/// else {"ready":false,"reasons":[...],"bridge":STATE}. A reason names the
/// bridge's state; only for `admin` does it carry the bridge's last error
/// (broker addresses, error text), as /stats does.
inline nlohmann::ordered_json readiness_json(const Readiness& r, bool admin) {
    nlohmann::ordered_json reasons = nlohmann::ordered_json::array();
    if (r.shutting_down) {
        reasons.push_back("shutting down: no new connections");
    }
    if (!wsguard::wspp::bridge_ready(r.bridge)) {
        std::string reason = std::string("bridge ") + wsguard::wspp::to_string(r.bridge.state);
        if (admin && !r.bridge.last_error.empty()) {
            reason += ": " + r.bridge.last_error;
        }
        reasons.push_back(std::move(reason));
    }
    nlohmann::ordered_json j = {{"ready", reasons.empty()}};
    if (!reasons.empty()) {
        j["reasons"] = std::move(reasons);
    }
    j["bridge"] = wsguard::wspp::to_string(r.bridge.state);
    return j;
}

/// One HTTP response: status, headers (Content-Type first) and body.
struct HttpResponse {
    websocketpp::http::status_code::value status = websocketpp::http::status_code::ok;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

/// Effect: whether `a` is this machine's loopback (IPv4-mapped included:
/// a server bound to :: sees 127.0.0.1 as ::ffff:127.0.0.1).
inline bool is_loopback(const asio::ip::address& a) noexcept {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
    }
    return a.is_loopback();
}

/// Effect: whether header value `authorization` is "Bearer <token>" (the
/// scheme case-insensitive, RFC 7235). Takes as long whatever prefix of the
/// token matches, so the time of a refusal does not tell an attacker how much
/// they got right.
inline bool bearer_matches(std::string_view authorization, std::string_view token) noexcept {
    constexpr std::string_view scheme = "bearer ";
    if (token.empty() || authorization.size() < scheme.size()) {
        return false;
    }
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        const auto c = static_cast<unsigned char>(authorization[i]);
        if (static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c) != scheme[i]) {
            return false;
        }
    }
    const std::string_view given = authorization.substr(scheme.size());
    unsigned char diff = given.size() == token.size() ? 0 : 1;
    for (std::size_t i = 0; i < token.size(); ++i) {
        diff |= static_cast<unsigned char>(token[i] ^ (i < given.size() ? given[i] : 0));
    }
    return diff == 0;
}

/// Effect: whether a request may read the admin endpoints (/, /stats,
/// /metrics, /history): with no `token`, only from a loopback `peer` that is
/// not a proxy (`forwarded`: the request names a client behind it with
/// Forwarded, X-Forwarded-For or X-Real-IP; a reverse proxy on this machine
/// makes every request loopback); with one, only with "Authorization: Bearer
/// <token>", from any peer, loopback included.
inline bool admin_allowed(const std::optional<asio::ip::address>& peer,
                          std::string_view authorization, std::string_view token,
                          bool forwarded = false) noexcept {
    if (!token.empty()) {
        return bearer_matches(authorization, token);
    }
    return !forwarded && peer && is_loopback(*peer);
}

/// Effect: the response to `method` `resource` (query ignored). Source gives
/// snapshot() (a ServerSnapshot), readiness() (a Readiness) and
/// history_json(); it is asked only for what the path needs. Without `admin`
/// (see admin_allowed()) every path the server has answers 403 but the
/// probes: /healthz (liveness: 200 {"status":"ok"} while HTTP is served) and
/// /readyz (200 or 503, see readiness_json()), which a kubelet asks from a
/// node address without a token and which tell such a caller no more than
/// the bridge's state.
template <class Source>
HttpResponse respond(std::string_view method, std::string_view resource, Source& source,
                     bool admin) {
    const std::string_view path = resource.substr(0, resource.find('?'));
    HttpResponse r;
    auto content = [&r](const char* type, std::string body) {
        r.headers.emplace_back("Content-Type", type);
        r.body = std::move(body);
    };
    const bool known = path == "/stats" || path == "/metrics" || path == "/history" || path == "/";
    if (known && !admin) {
        r.status = websocketpp::http::status_code::forbidden;
        content("text/plain",
                "forbidden: the admin endpoints answer loopback peers (not through a proxy), or "
                "with --admin-token the header \"Authorization: Bearer <token>\"\n");
    } else if (method != "GET") {
        r.status = websocketpp::http::status_code::method_not_allowed;
        r.headers.emplace_back("Allow", "GET");
        content("text/plain", "only GET is supported\n");
    } else if (path == "/healthz") {
        content("application/json", "{\"status\":\"ok\"}");
    } else if (path == "/readyz") {
        const nlohmann::ordered_json j = readiness_json(source.readiness(), admin);
        if (!j.at("ready").get<bool>()) {
            r.status = websocketpp::http::status_code::service_unavailable;
        }
        content("application/json",
                j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    } else if (path == "/stats") {
        content("application/json", stats_json(source.snapshot()));
    } else if (path == "/metrics") {
        content("text/plain; version=0.0.4; charset=utf-8", metrics_text(source.snapshot()));
    } else if (path == "/history") {
        content("application/json", source.history_json());
    } else if (path == "/") {
        content("text/html; charset=utf-8", dashboard_page());
    } else {
        r.status = websocketpp::http::status_code::not_found;
        content("text/plain", "not found: try /, /stats, /metrics, /healthz or /readyz\n");
    }
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

/// Effect: answers websocketpp connection `con`'s HTTP request (asio
/// transport) through respond(), the admin endpoints as admin_allowed() says.
template <class Connection, class Source>
void serve_http(Connection& con, Source& source, std::string_view admin_token) {
    std::error_code ec;
    const auto remote = con.get_raw_socket().remote_endpoint(ec);
    const std::optional<asio::ip::address> peer =
        ec ? std::nullopt : std::optional<asio::ip::address>(remote.address());
    const bool forwarded = !con.get_request_header("Forwarded").empty() ||
                           !con.get_request_header("X-Forwarded-For").empty() ||
                           !con.get_request_header("X-Real-IP").empty();
    const bool admin =
        admin_allowed(peer, con.get_request_header("Authorization"), admin_token, forwarded);
    HttpResponse r = respond(con.get_request().get_method(), con.get_resource(), source, admin);
    con.set_status(r.status);
    for (const auto& [name, value] : r.headers) {
        con.append_header(name, value);
    }
    con.set_body(std::move(r.body));
}

}  // namespace chat
