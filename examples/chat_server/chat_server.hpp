// wsguard reference chat server — the server, apart from its command line, so
// tests can run it in-process on an ephemeral port.
// SPDX-License-Identifier: MIT
#pragma once

#include "chat_router.hpp"
#include "http_endpoints.hpp"
#include "telemetry.hpp"

#include <wsguard/websocketpp/acceptor.hpp>
#include <wsguard/websocketpp/asio_ticker.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#ifdef WSGUARD_HAVE_OPENSSL
#include <wsguard/websocketpp/lean_tls_config.hpp>
#include <wsguard/websocketpp/tls_context.hpp>
#endif
#include <wsguard/websocketpp/logger.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>
#ifdef WSGUARD_HAVE_HIREDIS
#include <wsguard/redis/redis_bridge.hpp>
#endif
#include <wsguard/websocketpp/server_guard.hpp>
#include <wsguard/websocketpp/socket_pool.hpp>

#include <websocketpp/server.hpp>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace chat {

/// Everything the command line sets. Defaults match `chat_server --help`.
struct ServerOptions {
    std::uint16_t port = 8080;  ///< 0: pick a free port (tests)
    /// An address or a host name ("localhost"); a name listens on the first
    /// address it resolves to that can be bound.
    std::string bind_address = "0.0.0.0";
    /// With it, /, /stats, /metrics and /history answer only requests with
    /// "Authorization: Bearer <token>"; without it, only loopback peers.
    /// /healthz and /readyz answer anyone (the last error for admins only).
    std::string admin_token;
    /// What the server logs; every event of a single peer (a vanished
    /// client, a refused handshake) is debug (see wsguard/websocketpp/logger.hpp).
    wsguard::wspp::LogLevel log_level = wsguard::wspp::LogLevel::warn;
    std::ostream* log_stream = nullptr;  ///< where log lines go; nullptr: standard error
    /// The guard's limits; the reference server also drops the handshake's
    /// header maps once a connection is open (its protocol never reads them).
    wsguard::wspp::GuardOptions guard = [] {
        wsguard::wspp::GuardOptions g;
        g.release_handshake_headers = true;
        return g;
    }();
    std::chrono::milliseconds sample_interval{1000};  ///< memory and series sampling
    std::chrono::milliseconds tick_interval{250};     ///< housekeeping (idle, pings)
    unsigned threads = 1;
    /// Samples each growth detector keeps: the verdict covers
    /// window * sample_interval (2 minutes at the defaults).
    std::size_t growth_window = 120;
    /// Where a census is written when health turns critical (empty: never).
    std::string snapshot_dir;
    std::size_t snapshot_max_files = 10;
    bool quiet = false;  ///< no startup banner (tests)
    /// redis://host[:port]: rooms span every server on that Redis (needs a
    /// build with hiredis). Empty: this server's rooms are its own.
    std::string redis_url;
    std::string node_id;  ///< id on the Redis wire; empty: host name + pid
    /// The bridge's outgoing queue; empty: RedisBridgeOptions' default.
    std::optional<wsguard::QueueOptions> redis_queue;
    /// The health checklist's "bridge" row turns warning once the broker has
    /// been unusable for longer than this (--bridge-down-warning-seconds).
    std::chrono::milliseconds bridge_down_warning{std::chrono::seconds{10}};
    /// PEM certificate chain and private key (--tls-cert, --tls-key): both
    /// for a ChatServer<..., Transport::tls> (wss and https), neither for a
    /// plain one.
    std::string tls_cert_file;
    std::string tls_key_file;

    TelemetryOptions telemetry() const {
        TelemetryOptions t;
        t.max_connections = guard.max_connections;
        t.growth_window = growth_window;
        t.sample_interval = sample_interval;
        t.snapshot_dir = snapshot_dir;
        t.snapshot_max_files = snapshot_max_files;
        t.quiet = quiet;
        return t;
    }
};

#ifndef WSGUARD_CHAT_READ_BUFFER_BYTES
// Bytes each connection reads per call, held for its whole life. 512 is a
// trade-off, measured in benchmarks/RESULTS.md ("Read buffer"): against the
// lean configs' 1 KiB it saves 0.5 KiB per idle connection and keeps fan-out
// CPU per delivery (a read still takes in a busy publisher's four pipelined
// room messages, so every member's write carries as many), and costs 8% more
// CPU on 4 KiB and 64 KiB messages. 256 B saves another 0.25 KiB but fan-out
// costs 1.6x. Build with -DWSGUARD_CHAT_READ_BUFFER_BYTES=N to choose: 16384
// for large messages.
#define WSGUARD_CHAT_READ_BUFFER_BYTES 512
#endif

/// What a ChatServer speaks on its port: ws and http, or wss and https (a
/// build with OpenSSL; see ServerOptions::tls_cert_file).
enum class Transport { plain, tls };

/// True in a build with OpenSSL, where Transport::tls servers exist.
#ifdef WSGUARD_HAVE_OPENSSL
inline constexpr bool tls_available = true;
#else
inline constexpr bool tls_available = false;
#endif

namespace detail {

// The endpoint config: one io thread needs no locks and no strands (the
// *_single_thread configs).
template <class Lock, std::size_t ReadBufferBytes, Transport T>
struct ChatConfig {
    static_assert(T == Transport::plain, "Transport::tls needs a build with OpenSSL");
    using type = std::conditional_t<std::is_same_v<Lock, wsguard::NullMutex>,
                                    wsguard::wspp::basic_asio_lean_single_thread<ReadBufferBytes>,
                                    wsguard::wspp::basic_asio_lean<ReadBufferBytes>>;
};
#ifdef WSGUARD_HAVE_OPENSSL
template <class Lock, std::size_t ReadBufferBytes>
struct ChatConfig<Lock, ReadBufferBytes, Transport::tls> {
    using type =
        std::conditional_t<std::is_same_v<Lock, wsguard::NullMutex>,
                           wsguard::wspp::basic_asio_tls_lean_single_thread<ReadBufferBytes>,
                           wsguard::wspp::basic_asio_tls_lean<ReadBufferBytes>>;
};
#endif

}  // namespace detail

/// The reference server: websocketpp asio endpoint + ServerGuard (which owns
/// rooms and fan-out, through a Redis bridge with --redis) + ChatRouter +
/// Telemetry + HTTP endpoints on the same port (wss and https with
/// Transport::tls: one shared OpenSSL context, see tls_context.hpp). Lock = NullMutex for one io
/// thread, std::mutex when several threads run the io_context; the server
/// itself holds no lock: the guard, the router's counters and the telemetry's
/// monitor synchronize themselves, and shutdown runs on one strand.
///
/// Thread safety: Distinct objects: Safe. Shared objects: run() on one thread;
/// request_shutdown() and port() from any thread.
template <class Lock = wsguard::NullMutex,
          std::size_t ReadBufferBytes = WSGUARD_CHAT_READ_BUFFER_BYTES,
          Transport T = Transport::plain>
class ChatServer {
public:
    using Config = typename detail::ChatConfig<Lock, ReadBufferBytes, T>::type;
    using Server = websocketpp::server<Config>;
    using Guard = wsguard::wspp::ServerGuard<Config, Lock>;

    explicit ChatServer(ServerOptions options)
        : options_(std::move(options)),
          guard_(server_, options_.guard),
          router_(guard_),
          telemetry_(options_.telemetry()) {
        init_tls();
        // Every log line on one stream (websocketpp's access lines default to stdout).
        std::ostream* log = options_.log_stream != nullptr ? options_.log_stream : &std::cerr;
        server_.get_elog().set_ostream(log);
        server_.get_alog().set_ostream(log);
        wsguard::wspp::set_log_level(server_, options_.log_level);
        server_.init_asio();
        strand_.emplace(asio::make_strand(server_.get_io_service()));
        // Lets resident memory fall after a wave of closes (see socket_pool.hpp).
        wsguard::wspp::prewarm_socket_pool(server_.get_io_service(),
                                           options_.guard.max_connections);
        // No "Server: WebSocket++/0.8.2" header: it tells a scanner the exact
        // version, and websocketpp keeps every connection's raw handshake
        // response (and a copy of this string) for the connection's life.
        server_.set_user_agent("");
        server_.set_reuse_addr(true);
        server_.set_listen_backlog(1024);
        server_.set_http_handler([this](websocketpp::connection_hdl h) {
            serve_http(*server_.get_con_from_hdl(h), *this, options_.admin_token);
        });
        on_message_ = guard_.on_message.subscribe(
            [this](wsguard::ConnectionId id, const typename Guard::message_ptr& msg) {
                if (msg->get_opcode() == websocketpp::frame::opcode::text) {
                    router_.handle_text(id, msg->get_payload());
                } else {
                    router_.handle_binary(id);
                }
            });
        on_close_ = guard_.on_close.subscribe(
            [this](wsguard::ConnectionId, const wsguard::wspp::CloseInfo&) {
                // The last close of a graceful shutdown ends the grace period early.
                if (guard_.shutting_down() && guard_.registry().size() == 0) {
                    asio::post(*strand_, [this] { cancel_grace(); });
                }
            });
        listen();
        // Not server_.start_accept(): out of descriptors, its loop spins a core.
        acceptor_.emplace(server_, [this](typename Server::connection_type& con) {
            return guard_.note_accepted(con);
        });
        acceptor_->start();
        websocketpp::lib::error_code ec;
        local_ = server_.get_local_endpoint(ec);
        port_ = local_.port();
        redis_ = make_redis_bridge();
        ticker_ =
            std::make_unique<wsguard::wspp::AsioTicker<Guard>>(guard_, options_.tick_interval);
        sampler_ = std::make_unique<wsguard::wspp::AsioTicker<Guard>>(
            guard_, options_.sample_interval, [this] { sample(); },
            wsguard::wspp::TickerMode::callback_only);
        sample();
    }

    ChatServer(const ChatServer&) = delete;
    ChatServer& operator=(const ChatServer&) = delete;

    /// Effect: the guard's broadcasts stay on this node before the bridge goes.
    ~ChatServer() { guard_.set_bridge(nullptr); }

    std::uint16_t port() const noexcept { return port_; }

    /// Effect: the host part of a URL that reaches this server from this
    /// machine: the bound address, brackets around IPv6, loopback for an
    /// any-address bind ("ws://" + url_host() + ":" + port).
    std::string url_host() const {
        const asio::ip::address a = local_.address();
        if (a.is_unspecified()) {
            return a.is_v6() ? "[::1]" : "127.0.0.1";
        }
        return a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
    }

    /// "wss" or "ws": the scheme of this server's WebSocket URL.
    static constexpr const char* ws_scheme() noexcept { return T == Transport::tls ? "wss" : "ws"; }
    /// "https" or "http": the scheme of its HTTP endpoints.
    static constexpr const char* http_scheme() noexcept {
        return T == Transport::tls ? "https" : "http";
    }

    /// The address and port the server listens on.
    asio::ip::tcp::endpoint local_endpoint() const { return local_; }

    /// Runs the io loop on `options.threads` threads until shutdown completes.
    void run() {
        std::vector<std::thread> extra;
        for (unsigned i = 1; i < options_.threads; ++i) {
            extra.emplace_back([this] { server_.run(); });
        }
        server_.run();
        for (auto& t : extra) {
            t.join();
        }
    }

    /// Graceful shutdown from any thread: close every connection with 1001,
    /// stop the timers; run() returns once the close handshakes are done (or
    /// after a 5 s grace period).
    void request_shutdown() {
        asio::post(*strand_, [this] {
            if (guard_.shutting_down()) {
                return;
            }
            ticker_->stop();
            sampler_->stop();
            acceptor_->stop();       // a backoff in progress must not hold the loop
            guard_.bridge().stop();  // the Redis connection would keep the io loop alive
            guard_.shutdown();
            // A peer that never answers our close must not hold the process.
            grace_ = server_.set_timer(5000, [this](const websocketpp::lib::error_code& ec) {
                if (!ec) {
                    server_.stop();
                }
            });
            // The last close may have come before grace_ was set.
            if (guard_.registry().size() == 0) {
                cancel_grace();
            }
        });
    }

    /// Effect: every count the HTTP endpoints report, gathered now.
    ServerSnapshot snapshot() const {
        ServerSnapshot s;
        s.guard = guard_.stats();
        s.router = router_.stats();
        s.bridge = guard_.bridge().stats();
        telemetry_.fill(s);
        add_bridge_check(s.health, s.bridge, options_.bridge_down_warning);
        return s;
    }

    /// Effect: what GET /readyz needs, gathered now (cheaper than snapshot()).
    Readiness readiness() const {
        Readiness r;
        r.shutting_down = guard_.shutting_down();
        r.bridge = guard_.bridge().stats();
        return r;
    }

    /// The kept samples, oldest first (GET /history).
    std::string history_json() const {
        return chat::history_json(telemetry_.history(), options_.sample_interval);
    }

    Guard& guard() noexcept { return guard_; }
    /// The accept loop (its counts: backoffs when out of descriptors).
    const wsguard::wspp::Acceptor<Server>& acceptor() const noexcept { return *acceptor_; }
    /// The bridge room messages go to: Redis with --redis, else the guard's
    /// in-process default.
    wsguard::wspp::RoomBridge& bridge() noexcept { return guard_.bridge(); }
    Server& endpoint() noexcept { return server_; }

private:
    // Transport::tls: every connection gets the one context built from the
    // options' files (an SSL_CTX per connection would cost tens of KiB each).
    // Plain: TLS files are a mistake the caller must hear about.
    void init_tls() {
        if constexpr (T == Transport::tls) {
#ifdef WSGUARD_HAVE_OPENSSL
            if (options_.tls_cert_file.empty() || options_.tls_key_file.empty()) {
                throw std::invalid_argument("wss needs both a certificate and a private key file");
            }
            auto context = wsguard::wspp::make_server_tls_context(options_.tls_cert_file,
                                                                  options_.tls_key_file);
            server_.set_tls_init_handler(
                [context = std::move(context)](websocketpp::connection_hdl) { return context; });
#endif
        } else if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
            throw std::invalid_argument("TLS files given to a plain (ws) server");
        }
    }

    // bind_address may be a name: listen on the first address it resolves to
    // that binds. What looks like an address but is not one is refused
    // without asking a resolver about it.
    void listen() {
        const std::string& host = options_.bind_address;
        std::error_code ec;
        std::vector<asio::ip::tcp::endpoint> candidates;
        const asio::ip::address literal = asio::ip::make_address(host, ec);
        if (!ec) {
            candidates.emplace_back(literal, options_.port);
        } else if (host.empty() || host.find(':') != std::string::npos ||
                   host.find_first_not_of("0123456789.") == std::string::npos) {
            throw std::invalid_argument("bad bind address '" + host + "': " + ec.message());
        } else {
            asio::ip::tcp::resolver resolver(server_.get_io_service());
            for (const auto& entry : resolver.resolve(
                     host, std::to_string(options_.port),
                     asio::ip::resolver_base::passive | asio::ip::resolver_base::numeric_service,
                     ec)) {
                candidates.push_back(entry.endpoint());
            }
            if (ec || candidates.empty()) {
                throw std::invalid_argument("bad bind address '" + host +
                                            "': " + (ec ? ec.message() : "no address"));
            }
        }
        for (const auto& endpoint : candidates) {
            server_.listen(endpoint, ec);
            if (!ec) {
                return;
            }
        }
        throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(options_.port) +
                                 ": " + ec.message());
    }

    // Null without --redis: the guard's own LocalBridge serves.
    std::unique_ptr<wsguard::wspp::RoomBridge> make_redis_bridge() {
        if (options_.redis_url.empty()) {
            return nullptr;
        }
#ifdef WSGUARD_HAVE_HIREDIS
        std::string why;
        const auto address = wsguard::wspp::parse_redis_url(options_.redis_url, &why);
        if (!address) {
            // The URL is echoed only when it cannot hold a password.
            const bool secret = options_.redis_url.find('@') != std::string::npos;
            throw std::invalid_argument(
                "bad Redis URL" + (secret ? std::string() : " '" + options_.redis_url + "'") +
                ": " + why + " (expected redis://[[user]:password@]host[:port])");
        }
        wsguard::wspp::RedisBridgeOptions bo;
        bo.address = *address;
        bo.node_id = options_.node_id;
        if (options_.redis_queue) {
            bo.queue = *options_.redis_queue;
        }
        // One line per outage and recovery, at warning level in the server's
        // log. Called under the bridge's lock: it only writes a line.
        bo.on_warning = [this](const std::string& line) {
            server_.get_elog().write(websocketpp::log::elevel::warn, "redis bridge: " + line);
        };
        // Attaches itself to the guard: every room broadcast reaches the other nodes.
        return std::make_unique<wsguard::wspp::RedisBridge<Guard, Lock>>(server_.get_io_service(),
                                                                         guard_, std::move(bo));
#else
        throw std::invalid_argument("--redis needs a build with hiredis (Debian: libhiredis-dev)");
#endif
    }

    // On the strand, as request_shutdown()'s handler that sets grace_.
    void cancel_grace() {
        if (grace_) {
            grace_->cancel();
        }
    }

    void sample() {
        // The one O(connections) count, taken once per sample interval:
        // /stats then reports it from guard_.stats() at O(1).
        guard_.queued_bytes_scan();
        telemetry_.sample(guard_.stats(), [this] { return stats_json(snapshot()); });
    }

    ServerOptions options_;
    Server server_;
    Guard guard_;
    ChatRouter<Guard> router_;
    Telemetry<Lock> telemetry_;
    std::optional<wsguard::wspp::Acceptor<Server>> acceptor_;  // once server_ has its io_context
    wsguard::ScopedListener on_message_;
    wsguard::ScopedListener on_close_;
    std::unique_ptr<wsguard::wspp::AsioTicker<Guard>> ticker_;
    std::unique_ptr<wsguard::wspp::AsioTicker<Guard>> sampler_;
    // The shutdown handler sets grace_ and the last close cancels it: with
    // several io threads both run on this strand, never at once.
    std::optional<asio::strand<asio::io_context::executor_type>> strand_;
    typename Server::timer_ptr grace_;
    // After server_ (its io_context) and guard_: destroyed before both.
    std::unique_ptr<wsguard::wspp::RoomBridge> redis_;
    asio::ip::tcp::endpoint local_;
    std::uint16_t port_ = 0;
};

}  // namespace chat
