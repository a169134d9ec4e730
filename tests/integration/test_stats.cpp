// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The HTTP side of the reference server over loopback: GET /stats matches what
// the clients did and returns to zero after they leave; GET /metrics is
// Prometheus text (checked by promtool when it is installed); GET / is the
// dashboard; anything else is 404.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::get_stats;
using wsguard::test::http_get;
using wsguard::test::ServerRunner;
using wsguard::test::stat_of;
using wsguard::test::stats_eventually;

namespace {

// The listeners of an idle reference server: its own subscriptions to the
// guard's events, on_message_ and on_close_ (ChatServer's constructor in
// examples/chat_server/chat_server.hpp; no bridge in these tests).
constexpr long long server_listeners = 2;

const char* const top_level_counts[] = {"connections",         "rooms",        "memberships",
                                        "listeners",           "queued_bytes", "dropped_messages",
                                        "rejected_connections"};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

// Sample (name with its labels) -> value, checking on the way the text
// exposition format 0.0.4 as wsguard writes it: every family opens with its
// HELP then its TYPE line, each family appears once, and every sample belongs
// to the family opened last.
/// Two clients on `port`, each a member of `room` (both joins acknowledged).
std::pair<std::shared_ptr<wsguard::test::ClientConnection>,
          std::shared_ptr<wsguard::test::ClientConnection>>
two_members(ClientEndpoint& clients, std::uint16_t port, const std::string& room) {
    auto a = clients.connect_open(port);
    auto b = clients.connect_open(port);
    REQUIRE((a && b));
    for (auto* c : {a.get(), b.get()}) {
        c->send(json{{"type", "join"}, {"room", room}});
        REQUIRE(c->round_trip());
    }
    return {std::move(a), std::move(b)};
}

std::map<std::string, double> parse_metrics(const std::string& text) {
    std::map<std::string, double> samples;
    std::set<std::string> families;
    std::string help_for, family;
    for (const auto& line : lines_of(text)) {
        INFO("line: " << line);
        REQUIRE_FALSE(line.empty());
        if (line.rfind("# HELP ", 0) == 0) {
            help_for = line.substr(7, line.find(' ', 7) - 7);
            CHECK(line.size() > 7 + help_for.size() + 1);  // a help text follows the name
            CHECK(families.insert(help_for).second);
            family.clear();
            continue;
        }
        if (line.rfind("# TYPE ", 0) == 0) {
            family = line.substr(7, line.find(' ', 7) - 7);
            const std::string type = line.substr(8 + family.size());
            CHECK((type == "gauge" || type == "counter"));
            CHECK(family == help_for);
            CHECK(family.rfind("wsguard_", 0) == 0);
            continue;
        }
        REQUIRE(line[0] != '#');
        const auto space = line.rfind(' ');
        REQUIRE(space != std::string::npos);
        const std::string key = line.substr(0, space);
        const std::string name = key.substr(0, key.find('{'));
        CHECK_FALSE(family.empty());
        CHECK(name == family);
        if (key != name) {
            CHECK(key.back() == '}');
        }
        char* end = nullptr;
        const std::string value = line.substr(space + 1);
        const double v = std::strtod(value.c_str(), &end);
        CHECK(end == value.c_str() + value.size());
        CHECK(samples.count(key) == 0);
        samples[key] = v;
    }
    return samples;
}

// The path of `tool` on PATH, or "".
std::string find_on_path(const std::string& tool) {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string candidate = (dir.empty() ? "." : dir) + "/" + tool;
        if (::access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
    }
    return {};
}

// Runs `promtool check metrics` (the format and its lint: counter names end
// in _total, one family per name, ...) on `text`. Without promtool on PATH:
// a warning, or a failure when the build asks for it
// (WSGUARD_REQUIRE_PROMTOOL).
void check_with_promtool(const std::string& text) {
    const std::string promtool = find_on_path("promtool");
    if (promtool.empty()) {
#if WSGUARD_REQUIRE_PROMTOOL
        FAIL("promtool is not on PATH and WSGUARD_REQUIRE_PROMTOOL is ON");
#else
        WARN("promtool is not on PATH: /metrics was checked by this test's own parser only");
#endif
        return;
    }
    const auto file = std::filesystem::temp_directory_path() /
                      ("wsguard_metrics_" + std::to_string(::getpid()) + ".txt");
    {
        std::ofstream out(file, std::ios::binary);
        out << text;
    }
    const std::string command = promtool + " check metrics < '" + file.string() + "'";
    const int rc = std::system(command.c_str());
    std::filesystem::remove(file);
    INFO(text);
    CHECK(rc == 0);
}

}  // namespace

TEST_CASE("GET /stats counts connections, rooms and memberships, and returns to zero", "[stats]") {
    ServerRunner<> server;
    json s = wsguard::test::get_stats(server.port());
    REQUIRE_FALSE(s.is_discarded());
    for (const char* key : top_level_counts) {
        INFO(key);
        REQUIRE(s.contains(key));
        CHECK(s.at(key).is_number_unsigned());
    }
    CHECK(stat_of(s, "connections") == 0);
    CHECK(stat_of(s, "rooms") == 0);
    CHECK(stat_of(s, "memberships") == 0);
    CHECK(stat_of(s, "queued_bytes") == 0);
    CHECK(s.contains("memory"));
    const auto listeners_at_rest = stat_of(s, "listeners");
    CHECK(listeners_at_rest == server_listeners);

    // Five clients; rooms per client: {a,b} {a} {c} {} {a,b,c}.
    const std::vector<std::vector<std::string>> plan = {
        {"a", "b"}, {"a"}, {"c"}, {}, {"a", "b", "c"}};
    ClientEndpoint clients;
    std::vector<std::shared_ptr<wsguard::test::ClientConnection>> all;
    for (const auto& rooms : plan) {
        auto c = clients.connect_open(server.port());
        REQUIRE(c);
        for (const auto& r : rooms) {
            c->send(json{{"type", "join"}, {"room", r}});
        }
        REQUIRE(c->round_trip());
        all.push_back(c);
    }
    REQUIRE(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 5 && stat_of(j, "queued_bytes") == 0;
        },
        s));
    CHECK(stat_of(s, "rooms") == 3);
    CHECK(stat_of(s, "memberships") == 7);
    CHECK(stat_of(s, "dropped_messages") == 0);
    CHECK(stat_of(s, "rejected_connections") == 0);
    // Listeners are per server, not per connection: connections must not add any.
    CHECK(stat_of(s, "listeners") == listeners_at_rest);

    // Leaving one room and closing one client show up at once.
    all[4]->send(json{{"type", "leave"}, {"room", "c"}});
    REQUIRE(all[4]->round_trip());
    s = wsguard::test::get_stats(server.port());
    CHECK(stat_of(s, "memberships") == 6);
    CHECK(stat_of(s, "rooms") == 3);  // c still has client 2
    all[2]->close();
    REQUIRE(all[2]->wait_closed());
    REQUIRE(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "connections") == 4; }, s));
    CHECK(stat_of(s, "rooms") == 2);  // c emptied and erased
    CHECK(stat_of(s, "memberships") == 5);

    // The rest leave: two close cleanly, two vanish.
    all[0]->close();
    all[1]->abort();
    all[3]->close();
    all[4]->abort();
    for (auto& c : all) {
        REQUIRE(c->wait_closed());
    }
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "rooms") == 0 &&
                   stat_of(j, "memberships") == 0 && stat_of(j, "queued_bytes") == 0;
        },
        s));
    CHECK(stat_of(s, "listeners") == listeners_at_rest);
    CHECK(stat_of(s, "traffic", "opened") == 5);
    CHECK(stat_of(s, "traffic", "closed") == 5);
    CHECK(server.stop());
}

TEST_CASE("GET /stats keeps its structure and live counts without walking the connections",
          "[stats]") {
    // No sample after the one at start: what /stats shows between samples.
    auto options = wsguard::test::test_server_options();
    options.sample_interval = wsguard::test::Millis{3600 * 1000};
    ServerRunner<> server(options);
    const json at_rest = get_stats(server.port());
    REQUIRE(at_rest.is_object());
    std::set<std::string> keys;
    for (const auto& item : at_rest.items()) {
        keys.insert(item.key());
    }
    CHECK(keys == std::set<std::string>{"connections",
                                        "rooms",
                                        "memberships",
                                        "listeners",
                                        "queued_bytes",
                                        "dropped_messages",
                                        "rejected_connections",
                                        "uptime_seconds",
                                        "closes",
                                        "traffic",
                                        "router",
                                        "memory",
                                        "shutting_down",
                                        "bridge",
                                        "growth",
                                        "health",
                                        "refused",
                                        "peer_addresses",
                                        "pending_handshakes",
                                        "dropped",
                                        "closes_by_code",
                                        "growth_verdict"});
    CHECK(at_rest.at("memory").at("resident_bytes").is_number_unsigned());

    // Counts come from the guard's tables at once, not from the last sample.
    ClientEndpoint clients;
    auto [a, b] = two_members(clients, server.port(), "live");
    auto c = clients.connect_open(server.port());
    REQUIRE(c);
    REQUIRE(c->round_trip());
    json s = get_stats(server.port());
    CHECK(stat_of(s, "connections") == 3);
    CHECK(stat_of(s, "rooms") == 1);
    CHECK(stat_of(s, "memberships") == 2);
    CHECK(stat_of(s, "listeners") == server_listeners);
    CHECK(stat_of(s, "queued_bytes") == 0);  // the start's scan: nothing queued
    CHECK(stat_of(s, "traffic", "opened") == 3);
    // The memory readings are the sample's, not taken per request (mallinfo2
    // walks the heap's free chunks): two requests apart show the same.
    for (const char* key : {"resident_bytes", "heap_in_use_bytes", "limit_bytes"}) {
        INFO(key);
        CHECK(s.at("memory").at(key) == at_rest.at("memory").at(key));
    }

    a->close();
    c->abort();
    REQUIRE(a->wait_closed());
    REQUIRE(c->wait_closed());
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 1 && stat_of(j, "memberships") == 1 &&
                   stat_of(j, "rooms") == 1;
        },
        s));
    CHECK(stat_of(s, "traffic", "closed") == 2);
    b->close();
    REQUIRE(b->wait_closed());
    CHECK(stats_eventually(
        server.port(),
        [](const json& j) {
            return stat_of(j, "connections") == 0 && stat_of(j, "memberships") == 0 &&
                   stat_of(j, "rooms") == 0 && stat_of(j, "queued_bytes") == 0;
        },
        s));
    CHECK(server.stop());
}

TEST_CASE("no Server header and connections to one path share one parsed URI", "[stats]") {
    ServerRunner<> server;
    const auto page = wsguard::test::http_get(server.port(), "/stats");
    REQUIRE(page);
    CHECK(page->head.find("Server:") == std::string::npos);

    ClientEndpoint clients;
    std::vector<std::shared_ptr<wsguard::test::ClientConnection>> all;
    for (const char* path : {"/", "/", "/", "/chat", "/chat"}) {
        wsguard::test::ConnectOptions opts;
        opts.path = path;
        auto c = clients.connect_open(server.port(), opts);
        REQUIRE(c);
        CHECK(c->server_header().empty());
        REQUIRE(c->round_trip());
        all.push_back(c);
    }
    json s;
    REQUIRE(stats_eventually(
        server.port(), [](const json& j) { return stat_of(j, "connections") == 5; }, s));
    CHECK(stat_of(s, "memory", "shared_uris") == 2);
    for (auto& c : all) {
        c->close();
        REQUIRE(c->wait_closed());
    }
    CHECK(server.stop());
}

TEST_CASE("GET /metrics is Prometheus text with the wsguard_ prefix", "[stats]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto [a, b] = two_members(clients, server.port(), "m");
    a->send(std::string("not json"));  // one router error

    REQUIRE(a->next_of_type("error"));
    auto r = http_get(server.port(), "/metrics");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("Content-Type").rfind("text/plain", 0) == 0);
    const auto samples = parse_metrics(r->body);
    for (const char* name :
         {"wsguard_connections", "wsguard_rooms", "wsguard_memberships", "wsguard_listeners",
          "wsguard_queued_bytes", "wsguard_dropped_messages_total{reason=\"slow_consumer\"}",
          "wsguard_refused_total{reason=\"max_connections\"}",
          "wsguard_closed_total{reason=\"idle\"}", "wsguard_connections_closed_total",
          "wsguard_growth_bytes_per_second{series=\"resident_bytes\"}",
          "wsguard_growth_per_second{series=\"connections\"}"}) {
        INFO(name);
        CHECK(samples.count(name) == 1);
    }
    CHECK(samples.at("wsguard_connections") == 2);
    CHECK(samples.at("wsguard_rooms") == 1);
    CHECK(samples.at("wsguard_memberships") == 2);
    CHECK(samples.at("wsguard_dropped_messages_total{reason=\"slow_consumer\"}") == 0);
    CHECK(samples.at("wsguard_router_errors_total") == 1);
    // Two connections add none: the server's own subscriptions only.
    CHECK(samples.at("wsguard_listeners") == server_listeners);

    check_with_promtool(r->body);
    CHECK(server.stop());
}

TEST_CASE("sends to a closed connection and sends websocketpp refused show in /stats and /metrics",
          "[stats]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    REQUIRE(a);
    REQUIRE(a->round_trip());
    json s = get_stats(server.port());
    CHECK(stat_of(s, "traffic", "send_not_connected") == 0);
    CHECK(stat_of(s, "traffic", "send_failed") == 0);

    auto& guard = server.server().guard();
    server.on_io_thread([&] {
        guard.send(987654321, "nobody has this id");
        guard.registry().for_each([&](wsguard::ConnectionId id, const auto&, const auto&) {
            guard.send(id, std::string("\xff\xfe"));  // not UTF-8: websocketpp refuses it
        });
    });

    s = get_stats(server.port());
    CHECK(stat_of(s, "traffic", "send_not_connected") == 1);
    CHECK(stat_of(s, "traffic", "send_failed") == 1);
    auto r = http_get(server.port(), "/metrics");
    REQUIRE(r);
    const auto samples = parse_metrics(r->body);
    CHECK(samples.at("wsguard_send_not_connected_total") == 1);
    CHECK(samples.at("wsguard_send_failed_total") == 1);
    CHECK(a->round_trip());  // the connection is untouched
}

TEST_CASE("without Redis, /stats shows the guard's in-process bridge counting room messages",
          "[stats]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto [a, b] = two_members(clients, server.port(), "r");
    a->send(json{{"type", "room-message"}, {"room", "r"}, {"content", 1}});
    a->send(json{{"type", "room-message"}, {"room", "elsewhere"}, {"content", 2}});  // refused
    REQUIRE(b->next_of_type("message"));
    REQUIRE(a->next_of_type("error"));
    const json s = get_stats(server.port());
    INFO(s.dump(2));
    CHECK(s["bridge"]["state"] == "local");
    CHECK(s["bridge"]["publish_calls"] == 1);  // the accepted message, once
    CHECK(s["bridge"]["local_only"] == 1);
    CHECK(s["bridge"]["failed"] == 0);
}

TEST_CASE("GET / is the dashboard, unknown paths are 404, other methods 405", "[stats]") {
    ServerRunner<> server;
    auto page = http_get(server.port(), "/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->header("Content-Type").rfind("text/html", 0) == 0);
    CHECK(page->body.find("<html") != std::string::npos);
    CHECK(page->body.find("/stats") != std::string::npos);

    for (const char* path : {"/nope", "/stats/", "/statsx", "/metrics/extra", "/index.html"}) {
        INFO(path);
        auto r = http_get(server.port(), path);
        REQUIRE(r);
        CHECK(r->status == 404);
    }
    // A query string does not change the resource.
    auto q = http_get(server.port(), "/stats?pretty=1");
    REQUIRE(q);
    CHECK(q->status == 200);
    CHECK_FALSE(json::parse(q->body, nullptr, false).is_discarded());

    auto post = wsguard::test::http_request(server.port(), "POST", "/stats");
    REQUIRE(post);
    CHECK(post->status == 405);

    // HTTP requests are not WebSocket connections.
    json s = wsguard::test::get_stats(server.port());
    CHECK(stat_of(s, "connections") == 0);
    CHECK(stat_of(s, "traffic", "opened") == 0);
    CHECK(server.stop());
}

TEST_CASE("/metrics prints counts as exact integers, one family per name, and passes promtool",
          "[stats][metrics]") {
    chat::ServerSnapshot s;
    s.guard.bytes_out = 183617042;               // 1.83617e+08 as a double's default text
    s.guard.bytes_in = 18446744073709551615ull;  // no double holds it
    s.guard.messages_in = 9007199254740993ull;   // 2^53 + 1: the first integer a double loses
    s.guard.connections = 1234567;
    s.guard.closed_idle = 7;
    s.guard.terminated_dead = 3;
    s.guard.rejected_connections = 4000001;
    s.guard.refused_pending = 2;
    s.guard.dropped_messages = 5000000;
    s.memory.resident_bytes = 123456789012;
    s.bridge.down_for = std::chrono::milliseconds(100);
    s.uptime_seconds = 0.1;
    wsguard::GrowthVerdict growing{};
    growing.level = wsguard::GrowthLevel::warning;
    growing.growth_per_hour = 7200 * 1024.0;  // 2 KiB per second
    growing.r_squared = 0.5;
    s.growth = {{wsguard::HealthSeries::resident_bytes, growing},
                {wsguard::HealthSeries::connections, growing}};

    const std::string m = chat::metrics_text(s);
    INFO(m);
    for (const char* line : {
             "wsguard_bytes_out_total 183617042\n",
             "wsguard_bytes_in_total 18446744073709551615\n",
             "wsguard_messages_in_total 9007199254740993\n",
             "wsguard_connections 1234567\n",
             "wsguard_resident_memory_bytes 123456789012\n",
             "wsguard_closed_total{reason=\"idle\"} 7\n",
             "wsguard_closed_total{reason=\"dead_peer\"} 3\n",
             "wsguard_closed_total{reason=\"shutdown\"} 0\n",
             "wsguard_refused_total{reason=\"max_connections\"} 4000001\n",
             "wsguard_refused_total{reason=\"pending_handshakes\"} 2\n",
             "wsguard_refused_total{reason=\"origin\"} 0\n",
             "wsguard_dropped_messages_total{reason=\"slow_consumer\"} 5000000\n",
             "wsguard_growth_bytes_per_second{series=\"resident_bytes\"} 2048\n",
             "wsguard_growth_per_second{series=\"connections\"} 2048\n",
             "wsguard_bridge_down_seconds 0.1\n",
             "wsguard_uptime_seconds 0.1\n",
             "# TYPE wsguard_closed_total counter\n",
             "# TYPE wsguard_build_info gauge\n",
         }) {
        CHECK(m.find(line) != std::string::npos);
    }
    // The old names, one per reason, are gone; no unit but seconds.
    for (const char* gone : {"wsguard_closed_idle_total", "wsguard_terminated_dead_total",
                             "wsguard_closed_oversized_total", "wsguard_closed_slow_consumer_total",
                             "wsguard_rejected_connections_total", "growth_per_hour", "e+"}) {
        INFO(gone);
        CHECK(m.find(gone) == std::string::npos);
    }
    const std::string build_info = std::string("wsguard_build_info{version=\"") +
                                   chat::wsguard_version + "\",websocketpp_version=\"" +
                                   chat::websocketpp_version() + "\"} 1\n";
    CHECK(m.find(build_info) != std::string::npos);
    CHECK(std::string(chat::wsguard_version) != "unknown");  // CMake passed the version
    const auto samples = parse_metrics(m);
    CHECK(samples.size() > 50);
    check_with_promtool(m);
}

TEST_CASE("the metrics writer escapes label values, spells infinities and opens a family once",
          "[stats][metrics]") {
    chat::detail::MetricsWriter w;
    w.family("x", "gauge", "A test family.");
    w.sample(std::numeric_limits<double>::infinity(), {{"check", "a\"b\\c\nd"}});
    w.sample(-std::numeric_limits<double>::infinity(), {{"check", "neg"}});
    w.sample(std::numeric_limits<double>::quiet_NaN(), {{"check", "nan"}});
    CHECK(w.str() ==
          "# HELP wsguard_x A test family.\n# TYPE wsguard_x gauge\n"
          "wsguard_x{check=\"a\\\"b\\\\c\\nd\"} +Inf\n"
          "wsguard_x{check=\"neg\"} -Inf\n"
          "wsguard_x{check=\"nan\"} NaN\n");
    CHECK_THROWS_AS(w.family("x", "gauge", "Again."), std::logic_error);
    CHECK(chat::detail::metric_value(1e6) == "1000000");
    CHECK(chat::detail::metric_value(0.1) == "0.1");
    CHECK(chat::detail::metric_value(-2.5) == "-2.5");
    CHECK(chat::detail::metric_value(1e-300) == "1e-300");
    CHECK(chat::detail::metric_value(0.0) == "0");
    CHECK(chat::detail::metric_value(std::uint64_t{1000001}) == "1000001");
}
