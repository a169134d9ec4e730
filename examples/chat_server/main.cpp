// wsguard reference chat server: the protocol of DESIGN.md over websocketpp,
// with every limit of ServerGuard on the command line.
// SPDX-License-Identifier: MIT
#include "chat_server.hpp"

#include <CLI/CLI.hpp>

#include <asio/signal_set.hpp>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>

namespace {

template <class Lock>
int serve(const chat::ServerOptions& options) {
    chat::ChatServer<Lock> server(options);
    asio::signal_set signals(server.endpoint().get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int signo) {
        if (!ec) {
            std::printf("chat_server: signal %d, closing every connection with 1001\n", signo);
            std::fflush(stdout);
            server.request_shutdown();
        }
    });
    const unsigned port = server.port();
    std::printf(
        "chat_server: listening\n"
        "  WebSocket  ws://127.0.0.1:%u/\n"
        "  dashboard  http://127.0.0.1:%u/\n"
        "  stats      http://127.0.0.1:%u/stats\n"
        "  metrics    http://127.0.0.1:%u/metrics\n",
        port, port, port, port);
    std::fflush(stdout);
    server.run();
    std::printf("chat_server: stopped\n");
    return 0;
}

// --max-connections against the descriptor limit (RLIMIT_NOFILE), raised
// toward the hard limit first. Past the limit, accept fails with EMFILE and
// the server holds fewer connections than it claims, so: a value given on the
// command line that cannot fit refuses to start (exit 2), as any other refused
// value: the operator asked for that many and should learn at deploy time, not
// at the peak; the default is lowered with a warning, so that the server runs
// out of the box where the limit is small. Both messages name both numbers.
// Returns the exit code when the server must not start.
std::optional<int> fit_max_connections(std::size_t& max_connections, bool given) {
    const auto budget = wsguard::wspp::fit_descriptor_limit(max_connections);
    if (!budget.known || budget.connections >= max_connections) {
        return std::nullopt;
    }
    const std::string hard =
        budget.hard == SIZE_MAX ? std::string("unlimited") : std::to_string(budget.hard);
    if (given || budget.connections == 0) {
        std::fprintf(stderr,
                     "chat_server: --max-connections %zu needs %zu file descriptors (%zu more "
                     "for the listening socket, logs, Redis, ...), but the limit (RLIMIT_NOFILE) "
                     "is %zu (hard limit %s): raise it (ulimit -n) or use --max-connections %zu "
                     "or less\n",
                     max_connections, max_connections + wsguard::wspp::default_descriptor_reserve,
                     wsguard::wspp::default_descriptor_reserve, budget.soft, hard.c_str(),
                     budget.connections);
        return 2;
    }
    std::fprintf(stderr,
                 "chat_server: warning: max connections lowered from %zu (the default) to %zu: "
                 "the file descriptor limit (RLIMIT_NOFILE) is %zu (hard limit %s) and %zu are "
                 "kept for the listening socket, logs, Redis, ...\n",
                 max_connections, budget.connections, budget.soft, hard.c_str(),
                 wsguard::wspp::default_descriptor_reserve);
    max_connections = budget.connections;
    return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
    chat::ServerOptions options;
    auto& g = options.guard;
    CLI::App app{"wsguard reference chat server: JSON rooms over WebSocket, /stats, /metrics"};
    app.option_defaults()->always_capture_default();

    long long idle_ms = g.idle_timeout.count();
    long long ping_ms = g.ping_interval.count();
    long long sample_ms = options.sample_interval.count();
    std::string slow = "drop";

    app.add_option("--port", options.port, "TCP port for WebSocket and HTTP (0: any free port)");
    app.add_option("--bind", options.bind_address, "Address to listen on");
    app.add_option("--max-connections", g.max_connections,
                   "Connections beyond this are closed with 1013")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
    app.add_option("--idle-timeout-ms", idle_ms,
                   "Close with 1000 after this long without a message (0: never)")
        ->check(CLI::Range(0LL, 86400000LL * 30));
    app.add_option("--ping-interval-ms", ping_ms,
                   "Ping every connection this often; a missed pong terminates it (0: never)")
        ->check(CLI::Range(0LL, 86400000LL));
    app.add_option("--max-payload-bytes", g.max_message_bytes,
                   "Largest incoming message; bigger closes with 1009")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
    app.add_option("--max-buffered-bytes", g.max_buffered_bytes,
                   "Per-connection bound on queued outgoing bytes")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 34));
    app.add_option("--slow-consumer", slow,
                   "Over the bound: drop the message (and count it) or close with 1008")
        ->check(CLI::IsMember({"drop", "close"}));
    app.add_option("--sample-interval-ms", sample_ms, "Memory and series sampling interval")
        ->check(CLI::Range(10LL, 3600000LL));
    app.add_option(
           "--snapshot-dir", options.snapshot_dir,
           "Write a JSON census + malloc_info here when health turns critical (rate-limited)")
        ->check(CLI::ExistingDirectory);
    app.add_option("--growth-window", options.growth_window,
                   "Samples per growth detector (the verdict spans window x sample interval)")
        ->check(CLI::Range(std::size_t{4}, std::size_t{100000}));
    app.add_option("--threads", options.threads, "io threads running the event loop")
        ->check(CLI::Range(1u, 64u));
    app.add_option("--redis", options.redis_url,
                   "redis://host[:port]: rooms span every server on this Redis (pub/sub)");
    app.add_option("--node-id", options.node_id,
                   "This server's id on the Redis wire (default: host name + pid)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help exits 0; every refused value exits 2 with CLI11's message.
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    g.idle_timeout = std::chrono::milliseconds(idle_ms);
    g.ping_interval = std::chrono::milliseconds(ping_ms);
    g.slow_consumer = slow == "close" ? wsguard::wspp::SlowConsumerPolicy::close
                                      : wsguard::wspp::SlowConsumerPolicy::drop;
    options.sample_interval = std::chrono::milliseconds(sample_ms);
    if (const auto rc =
            fit_max_connections(g.max_connections, app.count("--max-connections") > 0)) {
        return *rc;
    }

    try {
        if (options.threads == 1) {
            return serve<wsguard::NullMutex>(options);
        }
        return serve<std::mutex>(options);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
}
