// wsguard reference chat server: the protocol of DESIGN.md over websocketpp,
// with every limit of ServerGuard on the command line.
// SPDX-License-Identifier: MIT
#include "chat_server.hpp"

#include <CLI/CLI.hpp>

#include <asio/signal_set.hpp>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

template <class Lock, chat::Transport T>
int serve(const chat::ServerOptions& options) {
    chat::ChatServer<Lock, WSGUARD_CHAT_READ_BUFFER_BYTES, T> server(options);
    asio::signal_set signals(server.endpoint().get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int signo) {
        if (!ec) {
            std::printf("chat_server: signal %d, closing every connection with 1001\n", signo);
            std::fflush(stdout);
            server.request_shutdown();
        }
    });
    // URLs that work from this machine: the bound address (in brackets for
    // IPv6), loopback for an any-address bind.
    const std::string at = server.url_host() + ":" + std::to_string(server.port());
    const auto local = server.local_endpoint();
    const char* ws = server.ws_scheme();
    const char* http = server.http_scheme();
    std::printf(
        "chat_server: listening on %s port %u\n"
        "  WebSocket  %s://%s/\n"
        "  dashboard  %s://%s/\n"
        "  stats      %s://%s/stats\n"
        "  metrics    %s://%s/metrics\n"
        "  probes     %s://%s/healthz, %s://%s/readyz (no token needed)\n"
        "  (admin endpoints: %s)\n",
        local.address().to_string().c_str(), unsigned(local.port()), ws, at.c_str(), http,
        at.c_str(), http, at.c_str(), http, at.c_str(), http, at.c_str(), http, at.c_str(),
        options.admin_token.empty() ? "loopback peers only"
                                    : "\"Authorization: Bearer <--admin-token>\" only");
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
    long long bridge_down_s =
        std::chrono::duration_cast<std::chrono::seconds>(options.bridge_down_warning).count();
    std::string slow = "drop";
    std::string log_level = wsguard::wspp::to_string(options.log_level);

    app.add_option("--port", options.port, "TCP port for WebSocket and HTTP (0: any free port)");
    app.add_option("--bind", options.bind_address,
                   "Address or host name to listen on (::1, localhost, 0.0.0.0)");
    app.add_option("--admin-token", options.admin_token,
                   "/, /stats, /metrics, /history answer only \"Authorization: Bearer <token>\" "
                   "(without it: only loopback peers); or set WSGUARD_ADMIN_TOKEN, which ps "
                   "does not show")
        ->envname("WSGUARD_ADMIN_TOKEN");
    app.add_option("--log-level", log_level,
                   "error, warn, info or debug; a peer's own events (vanished, refused) are debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
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
    app.add_option("--max-connections-per-ip", g.max_connections_per_ip,
                   "Connections per peer address; past it the handshake gets 503 (0: no limit)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{10000000}));
    app.add_option("--allowed-origins", g.allowed_origins,
                   "Comma-separated Origins browsers may connect from (scheme://host[:port]); "
                   "any other gets 403 (none: every Origin; a request without Origin is "
                   "admitted)")
        ->delimiter(',')
        // "a, b" must list "b", not " b", which no browser sends.
        ->transform([](std::string s) {
            const auto first = s.find_first_not_of(" \t");
            return first == std::string::npos
                       ? std::string()
                       : s.substr(first, s.find_last_not_of(" \t") - first + 1);
        });
    // websocketpp answers 431 past 16000 bytes of request line and headers,
    // before the guard sees the request: a larger bound would never apply.
    app.add_option("--max-uri-bytes", g.max_uri_bytes,
                   "Longest upgrade request URI; longer gets 414 (at most 16000: websocketpp "
                   "answers 431 past 16000 bytes of request head)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{16000}));
    app.add_option("--max-http-body-bytes", g.max_http_body_bytes,
                   "Largest HTTP request body read; larger gets 413 (an upgrade with a body: 400)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30));
    app.add_option("--max-rooms", g.rooms.max_rooms, "Rooms on this server, all members together")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
    app.add_option("--max-rooms-per-connection", g.rooms.max_rooms_per_member,
                   "Rooms one connection may be in")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
    app.add_option("--max-room-name-bytes", g.rooms.max_room_name_length,
                   "Longest room name; longer joins get an error reply")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
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
    app.add_option("--bridge-down-warning-seconds", bridge_down_s,
                   "The health row \"bridge\" turns warning once Redis has been unusable this "
                   "long (/readyz answers 503 whenever it is not connected)")
        ->check(CLI::Range(0LL, 86400LL));
    auto* tls_cert = app.add_option("--tls-cert", options.tls_cert_file,
                                    "PEM certificate chain: serve wss and https on --port (needs "
                                    "--tls-key)");
    auto* tls_key = app.add_option("--tls-key", options.tls_key_file,
                                   "PEM private key of --tls-cert (needs --tls-cert)");
    tls_cert->needs(tls_key);
    tls_key->needs(tls_cert);

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
    options.bridge_down_warning = std::chrono::seconds(bridge_down_s);
    options.log_level = *wsguard::wspp::parse_log_level(log_level);
    if (const auto rc =
            fit_max_connections(g.max_connections, app.count("--max-connections") > 0)) {
        return *rc;
    }

    const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
    if (tls && !chat::tls_available) {
        std::fprintf(stderr,
                     "chat_server: --tls-cert/--tls-key: this chat_server was built without TLS "
                     "(OpenSSL was not found at build time; Debian: libssl-dev)\n");
        return 2;
    }

    try {
#ifdef WSGUARD_HAVE_OPENSSL
        if (tls) {
            if (options.threads == 1) {
                return serve<wsguard::NullMutex, chat::Transport::tls>(options);
            }
            return serve<std::mutex, chat::Transport::tls>(options);
        }
#endif
        if (options.threads == 1) {
            return serve<wsguard::NullMutex, chat::Transport::plain>(options);
        }
        return serve<std::mutex, chat::Transport::plain>(options);
#ifdef WSGUARD_HAVE_OPENSSL
    } catch (const wsguard::wspp::TlsContextError& e) {
        // An unreadable or mismatched certificate or key: refused like a bad value.
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 2;
#endif
    } catch (const std::invalid_argument& e) {
        // A value the flags' own checks could not judge (--bind, --redis): a usage error.
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
}
