// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The probes and the bridge's observability (issue 16): GET /healthz
// (liveness) and GET /readyz (readiness: the server takes connections and its
// bridge is ready) answer without the admin token and tell a caller without
// it nothing but the bridge's state; the bridge's counts by reason in /stats
// and /metrics; the health checklist's "bridge" row. The renderers are
// checked on made-up bridge counts (every state, every field), the server
// without Redis end to end, and hostile requests to the probes. The same
// against a Redis nobody listens on: tests/redis/test_bridge_endpoints.cpp.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

using namespace wsguard::test;
using nlohmann::json;
using wsguard::wspp::BridgeState;
using wsguard::wspp::BridgeStats;

/// A respond() source with made-up counts.
struct FakeSource {
    chat::Readiness ready;
    chat::ServerSnapshot snap;
    chat::ServerSnapshot snapshot() const { return snap; }
    chat::Readiness readiness() const { return ready; }
    std::string history_json() const { return "{}"; }
};

BridgeStats down_bridge() {
    BridgeStats b;
    b.state = BridgeState::disconnected;
    b.node_id = "east";
    b.connect_failures = 7;
    b.failed = 1234567 + 2 + 3 + 4 + 5 + 6;
    b.failures.too_large = 2;
    b.failures.queue_full = 1234567;
    b.failures.expired = 3;
    b.failures.connection_lost = 4;
    b.failures.refused = 5;
    b.failures.stopped = 6;
    b.in_flight_bytes = 9876543;
    b.malformed = 11;
    b.invalid_utf8 = 12;
    b.not_followed = 13;
    b.protocol_errors = 14;
    b.reply_timeouts = 15;
    b.down_for = std::chrono::milliseconds{1500};
    b.last_error = "connect to 127.0.0.1:1: Connection refused";
    return b;
}

const json* check_named(const json& stats, const std::string& name) {
    for (const auto& c : stats["health"]["checks"]) {
        if (c["name"] == name) {
            return &c;
        }
    }
    return nullptr;
}

}  // namespace

TEST_CASE("/readyz: 200 when ready, 503 with reasons when the bridge is down or shutting down",
          "[probes]") {
    FakeSource src;
    auto r = chat::respond("GET", "/readyz", src, false);
    CHECK(r.status == websocketpp::http::status_code::ok);
    json j = json::parse(r.body);
    CHECK(j["ready"] == true);
    CHECK(j["bridge"] == "local");
    CHECK_FALSE(j.contains("reasons"));

    src.ready.bridge.state = BridgeState::connected;
    CHECK(chat::respond("GET", "/readyz", src, false).status == websocketpp::http::status_code::ok);

    src.ready.shutting_down = true;
    r = chat::respond("GET", "/readyz", src, false);
    CHECK(r.status == websocketpp::http::status_code::service_unavailable);
    j = json::parse(r.body);
    CHECK(j["ready"] == false);
    REQUIRE(j["reasons"].size() == 1);
    CHECK(j["reasons"][0].get<std::string>().rfind("shutting down", 0) == 0);

    // Not ready: the state for anyone, the last error for the admin only.
    src.ready.shutting_down = false;
    src.ready.bridge = down_bridge();
    r = chat::respond("GET", "/readyz", src, false);
    CHECK(r.status == websocketpp::http::status_code::service_unavailable);
    j = json::parse(r.body);
    CHECK(j["ready"] == false);
    CHECK(j["bridge"] == "disconnected");
    REQUIRE(j["reasons"].size() == 1);
    CHECK(j["reasons"][0] == "bridge disconnected");
    CHECK(r.body.find("refused") == std::string::npos);
    CHECK(r.body.find("127.0.0.1") == std::string::npos);

    r = chat::respond("GET", "/readyz", src, true);
    CHECK(r.status == websocketpp::http::status_code::service_unavailable);
    j = json::parse(r.body);
    REQUIRE(j["reasons"].size() == 1);
    CHECK(j["reasons"][0] == "bridge disconnected: " + src.ready.bridge.last_error);

    // A last error that is not UTF-8 is replaced, not thrown on.
    src.ready.bridge.last_error = "bad \xff\xfe bytes";
    r = chat::respond("GET", "/readyz", src, true);
    CHECK(json::parse(r.body, nullptr, false).is_object());
    src.snap.bridge = src.ready.bridge;
    CHECK(json::parse(chat::respond("GET", "/stats", src, true).body, nullptr, false).is_object());

    for (BridgeState s : {BridgeState::connecting, BridgeState::stopped}) {
        src.ready.bridge.state = s;
        r = chat::respond("GET", "/readyz?verbose=1", src, false);
        CHECK(r.status == websocketpp::http::status_code::service_unavailable);
        CHECK(json::parse(r.body)["reasons"][0] ==
              std::string("bridge ") + wsguard::wspp::to_string(s));
    }
}

TEST_CASE("/healthz and /readyz need no admin; other methods get 405", "[probes]") {
    FakeSource src;
    for (bool admin : {false, true}) {
        auto r = chat::respond("GET", "/healthz", src, admin);
        CHECK(r.status == websocketpp::http::status_code::ok);
        CHECK(json::parse(r.body) == json{{"status", "ok"}});
        CHECK(r.headers.front() ==
              std::pair<std::string, std::string>("Content-Type", "application/json"));
        for (const char* path : {"/healthz", "/readyz"}) {
            auto post = chat::respond("POST", path, src, admin);
            CHECK(post.status == websocketpp::http::status_code::method_not_allowed);
        }
    }
    CHECK(chat::respond("GET", "/stats", src, false).status ==
          websocketpp::http::status_code::forbidden);
    CHECK(chat::respond("GET", "/healthz/x", src, false).status ==
          websocketpp::http::status_code::not_found);
}

TEST_CASE("the health checklist's bridge row: ok when ready, warning past the threshold",
          "[probes]") {
    using std::chrono::milliseconds;
    BridgeStats b;  // LocalBridge
    auto c = chat::bridge_check(b, milliseconds{10000});
    CHECK(c.name == "bridge");
    CHECK(c.level == wsguard::HealthLevel::ok);
    CHECK_FALSE(c.measured);
    CHECK(c.message.rfind("local", 0) == 0);

    b.state = BridgeState::connected;
    c = chat::bridge_check(b, milliseconds{10000});
    CHECK(c.level == wsguard::HealthLevel::ok);
    CHECK(c.measured);
    CHECK(c.message.rfind("connected", 0) == 0);

    b = down_bridge();  // down for 1.5 s
    c = chat::bridge_check(b, milliseconds{10000});
    CHECK(c.level == wsguard::HealthLevel::ok);
    CHECK(c.value == Approx(1.5));
    CHECK(c.warning_at == Approx(10.0));
    CHECK(c.message.find(b.last_error) != std::string::npos);

    c = chat::bridge_check(b, milliseconds{1000});
    CHECK(c.level == wsguard::HealthLevel::warning);
    CHECK(c.message.rfind("disconnected", 0) == 0);
    CHECK(c.message.find(b.last_error) != std::string::npos);

    wsguard::HealthReport report;
    chat::add_bridge_check(report, b, milliseconds{1000});
    REQUIRE(report.checks.size() == 1);
    CHECK(report.level == wsguard::HealthLevel::warning);
}

TEST_CASE("/stats and /metrics carry every bridge count, counts as integers", "[probes]") {
    chat::ServerSnapshot s;
    s.bridge = down_bridge();
    chat::add_bridge_check(s.health, s.bridge, std::chrono::milliseconds{1000});

    const json j = json::parse(chat::stats_json(s));
    const json& b = j["bridge"];
    for (const char* reason :
         {"too_large", "queue_full", "expired", "connection_lost", "refused", "stopped"}) {
        INFO(reason);
        CHECK(b["failures"][reason].is_number_unsigned());
    }
    CHECK(b["failures"]["queue_full"] == 1234567);
    for (const char* key :
         {"in_flight_bytes", "invalid_utf8", "not_followed", "protocol_errors", "reply_timeouts"}) {
        INFO(key);
        CHECK(b[key].is_number_integer());
    }
    CHECK(b["in_flight_bytes"] == 9876543);
    CHECK(b["reply_timeouts"] == 15);
    CHECK(b["down_for_ms"].is_number_integer());
    CHECK(b["down_for_ms"] == 1500);
    CHECK(b["last_error"] == s.bridge.last_error);
    CHECK(b["ready"] == false);
    const json* row = check_named(j, "bridge");
    REQUIRE(row);
    CHECK((*row)["level"] == "warning");
    CHECK(j["health"]["level"] == "warning");

    const std::string m = chat::metrics_text(s);
    for (const char* line : {
             "wsguard_bridge_failed_total{reason=\"too_large\"} 2\n",
             "wsguard_bridge_failed_total{reason=\"queue_full\"} 1234567\n",
             "wsguard_bridge_failed_total{reason=\"expired\"} 3\n",
             "wsguard_bridge_failed_total{reason=\"connection_lost\"} 4\n",
             "wsguard_bridge_failed_total{reason=\"refused\"} 5\n",
             "wsguard_bridge_failed_total{reason=\"stopped\"} 6\n",
             "wsguard_bridge_received_dropped_total{reason=\"malformed\"} 11\n",
             "wsguard_bridge_received_dropped_total{reason=\"invalid_utf8\"} 12\n",
             "wsguard_bridge_received_dropped_total{reason=\"not_followed\"} 13\n",
             "wsguard_bridge_protocol_errors_total 14\n",
             "wsguard_bridge_reply_timeouts_total 15\n",
             "wsguard_bridge_in_flight_bytes 9876543\n",
             "wsguard_bridge_down_seconds 1.5\n",
             "wsguard_bridge_ready 0\n",
             "# TYPE wsguard_bridge_failed_total counter\n",
             "# TYPE wsguard_bridge_ready gauge\n",
             "wsguard_health_check_level{check=\"bridge\"} 1\n",
         }) {
        INFO(line);
        CHECK(m.find(line) != std::string::npos);
    }
    // One family per name: no unlabelled bridge_failed_total beside the reasons.
    CHECK(m.find("\nwsguard_bridge_failed_total ") == std::string::npos);
}

TEST_CASE("a server without Redis is live and ready, the probes need no token", "[probes]") {
    auto options = test_server_options();
    options.admin_token = "s3cret-token";
    ServerRunner<> server(options);
    auto health = http_get(server.port(), "/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(json::parse(health->body, nullptr, false) == json{{"status", "ok"}});
    auto ready = http_get(server.port(), "/readyz");
    REQUIRE(ready);
    CHECK(ready->status == 200);
    const json j = json::parse(ready->body, nullptr, false);
    CHECK(j["ready"] == true);
    CHECK(j["bridge"] == "local");
    CHECK(ready->header("Cache-Control") == "no-store");
    // The admin endpoints stay closed to the same caller.
    auto stats = http_get(server.port(), "/stats");
    REQUIRE(stats);
    CHECK(stats->status == 403);

    const auto with_token =
        http_request_to(asio::ip::make_address("127.0.0.1"), server.port(), "GET", "/stats",
                        "Authorization: Bearer s3cret-token\r\n");
    REQUIRE(with_token);
    REQUIRE(with_token->status == 200);
    const json s = json::parse(with_token->body, nullptr, false);
    const json& b = s["bridge"];
    CHECK(b["state"] == "local");
    CHECK(b["ready"] == true);
    CHECK(b["down_for_ms"] == 0);
    CHECK(b["last_error"] == "");
    CHECK(b["failures"]["queue_full"] == 0);
    const json* row = check_named(s, "bridge");
    REQUIRE(row);
    CHECK((*row)["level"] == "ok");
    CHECK((*row)["message"].get<std::string>().rfind("local", 0) == 0);
}

TEST_CASE("hostile requests to the probes are answered or refused cleanly", "[probes]") {
    ServerRunner<> server;
    const auto raw = [&](const std::string& request) -> int {
        RawWsClient c;
        if (!c.connect_tcp(server.port()) || !c.send_bytes(request)) {
            return -1;
        }
        const auto answer = c.read_to_end();
        return answer && answer->rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(answer->c_str() + 9) : 0;
    };
    // A GET with a body: the body is read (within --max-http-body-bytes) and ignored.
    CHECK(raw("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n"
              "Connection: close\r\n\r\nhello world") == 200);
    CHECK(raw("POST /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 7\r\n"
              "Connection: close\r\n\r\n{\"a\":1}") == 405);
    CHECK(raw("DELETE /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n") == 405);
    // A 10 KB query string is ignored.
    auto long_query = http_get(server.port(), "/readyz?q=" + std::string(10 * 1024, 'a'));
    REQUIRE(long_query);
    CHECK(long_query->status == 200);
    // A body larger than the server reads: refused (413), not served.
    const int big =
        raw("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n"
            "Connection: close\r\n\r\n" +
            std::string(1024, 'x'));
    CHECK((big == 413 || big == 400 || big == 0));
    // Still serving, HTTP and WebSocket.
    auto health = http_get(server.port(), "/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);
    CHECK(c->round_trip());
}
