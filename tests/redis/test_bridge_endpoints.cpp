// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A chat server whose --redis points at a loopback port nothing listens on
// (no redis-server needed): /readyz answers 503 with the bridge's state, the
// health checklist's "bridge" row turns warning once the bridge has been down
// longer than ServerOptions::bridge_down_warning, /stats and /metrics say
// how long and why, and the bridge's warnings reach the server's log. The
// same endpoints without Redis: tests/integration/test_probes.cpp.
#include "client_harness.hpp"
#include "redis_harness.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <string>

namespace {

using namespace wsguard::test;
using nlohmann::json;

/// Options of a server whose Redis is a free loopback port: every connection
/// attempt is refused at once.
chat::ServerOptions unreachable_redis_options() {
    chat::ServerOptions o = test_server_options();
    const std::uint16_t port = free_loopback_port();
    REQUIRE(port != 0);
    o.redis_url = "redis://127.0.0.1:" + std::to_string(port);
    o.node_id = "lonely";
    o.bridge_down_warning = std::chrono::seconds{1};
    return o;
}

const json* bridge_row(const json& stats) {
    if (!stats.is_object() || !stats.contains("health")) {
        return nullptr;
    }
    for (const auto& c : stats["health"]["checks"]) {
        if (c["name"] == "bridge") {
            return &c;
        }
    }
    return nullptr;
}

json readyz(std::uint16_t port, int& status, const std::string& headers = {}) {
    auto r = http_request_to(asio::ip::make_address("127.0.0.1"), port, "GET", "/readyz", headers);
    status = r ? r->status : -1;
    return r ? json::parse(r->body, nullptr, false) : json(json::value_t::discarded);
}

}  // namespace

TEST_CASE("with Redis unreachable /readyz is 503 and names the bridge's state", "[redis][probes]") {
    ServerRunner<> server(unreachable_redis_options());
    int status = 0;
    const json j = readyz(server.port(), status);
    CHECK(status == 503);
    REQUIRE(j.is_object());
    CHECK(j["ready"] == false);
    CHECK(j["bridge"] != "connected");
    REQUIRE(j.contains("reasons"));
    REQUIRE(j["reasons"].size() == 1);
    CHECK(j["reasons"][0].get<std::string>().rfind("bridge ", 0) == 0);
    // Liveness does not depend on the broker.
    auto health = http_get(server.port(), "/healthz");
    REQUIRE(health);
    CHECK(health->status == 200);
}

TEST_CASE("down past the threshold: a warning row, down_for, last_error and metrics",
          "[redis][probes]") {
    std::ostringstream log;
    auto options = unreachable_redis_options();
    options.log_stream = &log;
    std::optional<ServerRunner<>> server(std::in_place, options);
    const std::uint16_t port = server->port();

    // Counts the current bridge keeps.
    json stats;
    CHECK(stats_eventually(
        port, [](const json& s) { return stat_of(s, "bridge", "connect_failures") > 0; }, stats));
    CHECK(stats["bridge"]["ready"] == false);

    // What the bridge rewrite (issue 16) adds: down_for and last_error.
    const bool warned = stats_eventually(
        port,
        [](const json& s) {
            const json* row = bridge_row(s);
            return row != nullptr && (*row)["level"] == "warning";
        },
        stats, scaled(Millis{10000}));
    INFO(stats.dump(2));
    CHECK(warned);
    CHECK(stats["health"]["level"] != "ok");
    const json& b = stats["bridge"];
    CHECK(b["down_for_ms"].is_number_integer());
    CHECK(b["down_for_ms"].get<long long>() > 1000);
    CHECK(b["connect_failures"].get<long long>() > 0);
    CHECK_FALSE(b["last_error"].get<std::string>().empty());
    const json* row = bridge_row(stats);
    REQUIRE(row);
    CHECK((*row)["message"].get<std::string>().find(b["last_error"].get<std::string>()) !=
          std::string::npos);

    auto metrics = http_get(port, "/metrics");
    REQUIRE(metrics);
    REQUIRE(metrics->status == 200);
    const std::string& m = metrics->body;
    CHECK(m.find("\nwsguard_bridge_ready 0\n") != std::string::npos);
    // A sample's value text ("" when the series is absent). No std::regex:
    // gcc 12 warns maybe-uninitialized inside <regex> under -O2 with ASan.
    const auto value_of = [&m](const std::string& series) {
        const std::string key = "\n" + series + " ";
        const auto at = m.find(key);
        if (at == std::string::npos) {
            return std::string();
        }
        const auto from = at + key.size();
        return m.substr(from, m.find('\n', from) - from);
    };
    const auto is_count = [](const std::string& v) {
        return !v.empty() && v.find_first_not_of("0123456789") == std::string::npos;
    };
    for (const char* reason :
         {"too_large", "queue_full", "expired", "connection_lost", "refused", "stopped"}) {
        INFO(reason);
        CHECK(is_count(
            value_of(std::string("wsguard_bridge_failed_total{reason=\"") + reason + "\"}")));
    }
    for (const char* reason : {"malformed", "invalid_utf8", "not_followed"}) {
        INFO(reason);
        CHECK(is_count(value_of(std::string("wsguard_bridge_received_dropped_total{reason=\"") +
                                reason + "\"}")));
    }
    const std::string connect_failures = value_of("wsguard_bridge_connect_failures_total");
    CHECK((is_count(connect_failures) && connect_failures.front() != '0'));
    const std::string down = value_of("wsguard_bridge_down_seconds");
    REQUIRE_FALSE(down.empty());
    CHECK(down.front() >= '1');
    CHECK(down.front() <= '9');
    CHECK(m.find("\nwsguard_health_check_level{check=\"bridge\"} 1\n") != std::string::npos);

    // The log stream is read once the server's thread is joined.
    server.reset();
    CHECK(log.str().find("redis bridge: ") != std::string::npos);
}

TEST_CASE("/readyz without the admin token gives the state only, with it the last error",
          "[redis][probes]") {
    auto options = unreachable_redis_options();
    options.admin_token = "s3cret-token";
    ServerRunner<> server(options);
    int status = 0;
    const json anonymous = readyz(server.port(), status);
    CHECK(status == 503);
    REQUIRE(anonymous.is_object());
    REQUIRE(anonymous["reasons"].size() == 1);
    const std::string reason = anonymous["reasons"][0];
    CHECK(reason == "bridge " + anonymous["bridge"].get<std::string>());
    CHECK(reason.find(':') == std::string::npos);

    // The admin's reason carries last_error (empty until the bridge rewrite),
    // once the first attempt failed.
    json admin;
    eventually([&] {
        admin = readyz(server.port(), status, "Authorization: Bearer s3cret-token\r\n");
        return admin.is_object() && admin["reasons"].size() == 1 &&
               admin["reasons"][0].get<std::string>().find(':') != std::string::npos;
    });
    CHECK(status == 503);
    REQUIRE(admin.is_object());
    REQUIRE(admin["reasons"].size() == 1);
    const std::string admin_reason = admin["reasons"][0];
    INFO(admin_reason);
    CHECK(admin_reason.rfind("bridge " + admin["bridge"].get<std::string>() + ": ", 0) == 0);
}
