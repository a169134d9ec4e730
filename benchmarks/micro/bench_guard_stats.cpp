// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// ServerGuard::stats() at 1,000 and 10,000 open connections: the reference
// server answers every GET /stats with it, so its cost must not grow with the
// connections. The baseline is what stats() cost before: the same counts plus
// a walk of every connection's get_buffered_amount() (now queued_bytes_scan(),
// run once per sample interval). Connections are real websocketpp server
// connections over the iostream transport, opened by a handshake fed from
// memory; their output is discarded. Also: glibc's mallinfo2() (the
// heap_in_use_bytes reading), whose cost grows with the heap's free chunks,
// which is why /stats no longer reads memory per request.
#include <wsguard/memory.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace {

using Config = wsguard::wspp::core_lean;
using Server = websocketpp::server<Config>;
using Guard = wsguard::wspp::ServerGuard<Config>;

const char handshake[] =
    "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// `n` open connections, each a member of one of 100 rooms.
class OpenServer {
public:
    explicit OpenServer(std::size_t n) : guard_(server_, options(n)) {
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        connections_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            Server::connection_ptr con = server_.get_connection();
            con->set_write_handler([](websocketpp::connection_hdl, const char*, std::size_t) {
                return std::error_code();
            });
            con->start();
            con->read_all(handshake, sizeof handshake - 1);
            connections_.push_back(con);
            if (const auto id = guard_.id_of(con)) {
                guard_.join(*id, "room-" + std::to_string(i % 100));
            }
        }
    }
    Guard& guard() { return guard_; }

private:
    static wsguard::wspp::GuardOptions options(std::size_t n) {
        wsguard::wspp::GuardOptions o;
        o.max_connections = n;
        return o;
    }
    Server server_;
    Guard guard_;
    std::vector<Server::connection_ptr> connections_;
};

void guard_stats(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    OpenServer s(n);
    if (s.guard().stats().connections != n) {
        state.SkipWithError("not every connection opened");
        return;
    }
    for (auto _ : state) {
        wsguard::wspp::GuardStats st = s.guard().stats();
        benchmark::DoNotOptimize(st);
    }
}

// What stats() did before: the same snapshot plus a walk of every connection.
void guard_stats_with_scan(benchmark::State& state) {
    OpenServer s(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) {
        benchmark::DoNotOptimize(s.guard().queued_bytes_scan());
        wsguard::wspp::GuardStats st = s.guard().stats();
        benchmark::DoNotOptimize(st);
    }
}

// mallinfo2() with `n` free chunks in the heap's bins (2n blocks of 600 B
// allocated, every other one freed: what a wave of closes leaves behind).
void heap_in_use(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<void*> blocks(2 * n);
    for (void*& b : blocks) {
        b = std::malloc(600);
        benchmark::DoNotOptimize(b);
    }
    for (std::size_t i = 0; i < blocks.size(); i += 2) {
        std::free(blocks[i]);
        blocks[i] = nullptr;
    }
    for (auto _ : state) {
        benchmark::DoNotOptimize(wsguard::heap_in_use_bytes());
    }
    for (void* b : blocks) {
        std::free(b);
    }
}

}  // namespace

BENCHMARK(guard_stats)->Name("BM_GuardStats")->Arg(1000)->Arg(10000);
BENCHMARK(guard_stats_with_scan)->Name("BM_GuardStatsWithScan")->Arg(1000)->Arg(10000);
BENCHMARK(heap_in_use)->Name("BM_HeapInUse/free_chunks")->Arg(1000)->Arg(10000);
