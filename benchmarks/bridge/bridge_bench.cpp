// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Cross-node fanout: the reference chat server alone (one node, LocalBridge)
// against two servers joined by Redis pub/sub (RedisBridge), same rooms, same
// receivers, same publisher. In the two-node run the publisher sits on node A
// and half of every room's members on node B, so half of the deliveries cross
// Redis. Reports the fanout rate (deliveries per second at the receivers) and
// the latency from send to receipt (p50, p99, max), unpaced and paced.
//
//   bridge_bench [--rooms 20] [--members 10] [--messages 20000] [--rate 4000]
//                [--redis-server PATH]
//
// Everything runs in this process on loopback (servers, Redis is a child
// process, clients), so the machine's cores are shared by all of them.
#include "client_harness.hpp"
#include "redis_harness.hpp"

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace wsguard::test;
using Clock = std::chrono::steady_clock;

struct Settings {
    int rooms = 20;
    int members = 10;  // receivers per room
    int messages = 20000;
    int rate = 4000;  // messages per second in the paced run
    std::string redis_server = redis_server_path();
};

long long now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

/// Receivers on one io thread: every message's latency is recorded on arrival.
class Receivers {
public:
    Receivers() {
        ep_.clear_access_channels(websocketpp::log::alevel::all);
        ep_.clear_error_channels(websocketpp::log::elevel::all);
        ep_.init_asio();
        ep_.start_perpetual();
        thread_ = std::thread([this] { ep_.run(); });
    }
    ~Receivers() {
        asio::post(ep_.get_io_service(), [this] {
            for (auto& h : hdls_) {
                std::error_code ec;
                ep_.close(h, websocketpp::close::status::normal, "", ec);
            }
            ep_.stop_perpetual();
        });
        thread_.join();
    }

    /// Connects to `port` and joins `room`; false if it did not open in time.
    bool add(std::uint16_t port, const std::string& room) {
        auto opened = std::make_shared<std::promise<bool>>();
        auto done = opened->get_future();
        asio::post(ep_.get_io_service(), [this, port, room, opened] {
            std::error_code ec;
            auto con = ep_.get_connection("ws://127.0.0.1:" + std::to_string(port) + "/", ec);
            if (ec) {
                opened->set_value(false);
                return;
            }
            con->set_open_handler([this, room, opened](websocketpp::connection_hdl h) {
                std::error_code e;
                ep_.send(h, R"({"type":"join","room":")" + room + "\"}",
                         websocketpp::frame::opcode::text, e);
                opened->set_value(!e);
            });
            con->set_fail_handler(
                [opened](websocketpp::connection_hdl) { opened->set_value(false); });
            con->set_message_handler([this](websocketpp::connection_hdl, WsClient::message_ptr m) {
                // {"type":"message","from":N,"content":T}: T is the send time in ns.
                const std::string& p = m->get_payload();
                const auto at = p.find("\"content\":");
                if (at == std::string::npos) {
                    return;
                }
                const long long sent = std::atoll(p.c_str() + at + 10);
                latencies_.push_back(static_cast<double>(now_ns() - sent) / 1e6);
                last_ns_ = now_ns();
                received_.fetch_add(1, std::memory_order_release);
            });
            hdls_.push_back(con->get_handle());
            ep_.connect(con);
        });
        return done.wait_for(prompt_wait) == std::future_status::ready && done.get();
    }

    std::size_t received() const { return received_.load(std::memory_order_acquire); }

    /// Clears the latencies (on the io thread) before a run.
    void reset() {
        std::promise<void> p;
        asio::post(ep_.get_io_service(), [&] {
            latencies_.clear();
            received_.store(0);
            p.set_value();
        });
        p.get_future().wait();
    }

    /// The latencies and the last arrival time, read on the io thread.
    std::pair<std::vector<double>, long long> results() {
        std::promise<std::pair<std::vector<double>, long long>> p;
        asio::post(ep_.get_io_service(), [&] { p.set_value({latencies_, last_ns_}); });
        return p.get_future().get();
    }

private:
    WsClient ep_;
    std::thread thread_;
    std::vector<websocketpp::connection_hdl> hdls_;  // io thread only
    std::vector<double> latencies_;                  // io thread only
    long long last_ns_ = 0;
    std::atomic<std::size_t> received_{0};
};

struct Result {
    double deliveries_per_s = 0, p50 = 0, p99 = 0, max = 0;
    std::size_t delivered = 0, expected = 0;
};

double percentile(std::vector<double>& v, double q) {
    if (v.empty()) {
        return 0;
    }
    const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

/// One run: the publisher sends `s.messages` room messages round-robin over
/// the rooms (paced at `rate` per second, 0: as fast as it can).
Result run(const Settings& s, std::uint16_t publisher_port, Receivers& rx, int rate) {
    ClientEndpoint ep;
    auto pub = ep.connect_open(publisher_port);
    if (!pub) {
        std::fprintf(stderr, "bridge_bench: publisher did not connect\n");
        std::exit(1);
    }
    for (int r = 0; r < s.rooms; ++r) {
        pub->send(R"({"type":"join","room":"room-)" + std::to_string(r) + "\"}");
    }
    pub->round_trip();
    rx.reset();
    const long long start = now_ns();
    for (int i = 0; i < s.messages; ++i) {
        if (rate > 0) {
            const long long due = start + static_cast<long long>(i) * 1000000000LL / rate;
            while (now_ns() < due) {
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
        }
        pub->send(R"({"type":"room-message","room":"room-)" + std::to_string(i % s.rooms) +
                  R"(","content":)" + std::to_string(now_ns()) + "}");
    }
    Result res;
    res.expected = static_cast<std::size_t>(s.messages) * static_cast<std::size_t>(s.members);
    eventually([&] { return rx.received() >= res.expected; }, Millis{20000}, Millis{5});
    auto [lat, last] = rx.results();
    res.delivered = lat.size();
    res.deliveries_per_s =
        static_cast<double>(lat.size()) / (static_cast<double>(last - start) / 1e9);
    res.p50 = percentile(lat, 0.50);
    res.p99 = percentile(lat, 0.99);
    res.max = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
    return res;
}

void print(const char* setup, const char* mode, const Result& r) {
    std::printf("| %-24s | %-8s | %9zu / %-9zu | %12.0f | %8.2f | %8.2f | %8.2f |\n", setup, mode,
                r.delivered, r.expected, r.deliveries_per_s, r.p50, r.p99, r.max);
    std::fflush(stdout);
}

bool wait_subscriptions(std::uint16_t port, int n) {
    nlohmann::json last;
    return stats_eventually(
        port,
        [&](const nlohmann::json& st) {
            return st["bridge"]["state"] == "connected" && st["bridge"]["subscriptions"] == n;
        },
        last, Millis{20000});
}

chat::ServerOptions server_options() {
    chat::ServerOptions o = test_server_options();
    o.guard.max_buffered_bytes = 16u << 20;  // measure the bridge, not slow-consumer drops
    o.guard.rooms.max_rooms_per_member = 1024;
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        const char* v = argv[i + 1];
        if (k == "--rooms") {
            s.rooms = std::atoi(v);
        } else if (k == "--members") {
            s.members = std::atoi(v);
        } else if (k == "--messages") {
            s.messages = std::atoi(v);
        } else if (k == "--rate") {
            s.rate = std::atoi(v);
        } else if (k == "--redis-server") {
            s.redis_server = v;
        } else {
            std::fprintf(stderr, "bridge_bench: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (s.rooms < 1 || s.members < 2 || s.messages < 1 || s.rate < 0) {
        std::fprintf(stderr, "bridge_bench: need rooms >= 1, members >= 2, messages >= 1\n");
        return 2;
    }
    std::printf(
        "rooms %d, %d receivers per room, %d messages (%d deliveries), paced at %d msg/s\n\n",
        s.rooms, s.members, s.messages, s.rooms > 0 ? s.messages * s.members : 0, s.rate);
    std::printf("| %-24s | %-8s | %-21s | %12s | %8s | %8s | %8s |\n", "setup", "pace",
                "delivered / expected", "deliveries/s", "p50 ms", "p99 ms", "max ms");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(26, '-').c_str(),
                std::string(10, '-').c_str(), std::string(23, '-').c_str(),
                std::string(14, '-').c_str(), std::string(10, '-').c_str(),
                std::string(10, '-').c_str(), std::string(10, '-').c_str());
    {
        ServerRunner<> a(server_options());
        Receivers rx;
        for (int r = 0; r < s.rooms; ++r) {
            for (int m = 0; m < s.members; ++m) {
                if (!rx.add(a.port(), "room-" + std::to_string(r))) {
                    std::fprintf(stderr, "bridge_bench: receiver did not connect\n");
                    return 1;
                }
            }
        }
        print("one server", "unpaced", run(s, a.port(), rx, 0));
        print("one server", "paced", run(s, a.port(), rx, s.rate));
    }
    if (s.redis_server.empty()) {
        std::printf("\nredis-server not found: the two-server rows are left out\n");
        return 0;
    }
    RedisProcess redis;
    if (!redis.start()) {
        std::fprintf(stderr, "bridge_bench: redis-server did not start\n");
        return 1;
    }
    {
        chat::ServerOptions oa = server_options(), ob = server_options();
        oa.redis_url = ob.redis_url = redis.url();
        oa.node_id = "bench-a";
        ob.node_id = "bench-b";
        ServerRunner<> a(oa), b(ob);
        Receivers rx;
        for (int r = 0; r < s.rooms; ++r) {
            for (int m = 0; m < s.members; ++m) {
                // Half of each room on each node: half the deliveries cross Redis.
                if (!rx.add(m % 2 == 0 ? a.port() : b.port(), "room-" + std::to_string(r))) {
                    std::fprintf(stderr, "bridge_bench: receiver did not connect\n");
                    return 1;
                }
            }
        }
        if (!wait_subscriptions(a.port(), s.rooms) || !wait_subscriptions(b.port(), s.rooms)) {
            std::fprintf(stderr, "bridge_bench: the bridges did not subscribe\n");
            return 1;
        }
        print("two servers + Redis", "unpaced", run(s, a.port(), rx, 0));
        print("two servers + Redis", "paced", run(s, a.port(), rx, s.rate));
        const auto st = get_stats(a.port());
        std::printf("\nnode A bridge: published %s, failed %s, dropped %s\n",
                    st["bridge"]["published"].dump().c_str(), st["bridge"]["failed"].dump().c_str(),
                    st["bridge"]["dropped"].dump().c_str());
    }
    return 0;
}
