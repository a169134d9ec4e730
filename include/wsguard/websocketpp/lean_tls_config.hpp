// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The lean endpoint configs of lean_config.hpp on websocketpp's asio_tls
// transport (wss): the same read buffer, loggers and connection base. Pair
// them with make_server_tls_context() (tls_context.hpp). An idle wss
// connection still costs ~70 KiB against ~6 KiB for ws: asio's ssl::stream
// keeps its own record buffers whatever OpenSSL's mode (benchmarks/RESULTS.md,
// "wss").
//
// What differs from the plain lean configs: no lingering close (a TLS stream
// ends with close_notify, which websocketpp's TLS socket sends, then waits for
// the peer's; lingering_socket.hpp is for plain TCP), but the same 1 s bound on
// that wait instead of websocketpp's 5 s, and the TCP socket is closed once
// the TLS shutdown ends, answered or timed out (closing_tls_socket): with
// websocketpp's own TLS socket, a peer that never answers close_notify and
// never closes kept the descriptor open for good after the connection was
// closed (test_tls: a peer that completes TLS, then says nothing). The TLS
// handshake is bounded by websocketpp's timeout_socket_post_init (5 s): a peer
// that stops mid-handshake is dropped then.
#pragma once

#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/lingering_socket.hpp>
#include <wsguard/websocketpp/logger.hpp>

#include <cstddef>

#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/asio.hpp>
#include <websocketpp/transport/asio/endpoint.hpp>
#include <websocketpp/transport/asio/security/tls.hpp>

namespace wsguard::wspp {

/// A socket policy for websocketpp's asio transport over TLS: websocketpp's
/// tls_socket whose TCP socket is closed as soon as the TLS shutdown ends
/// (see the header comment). Drop-in for tls_socket::endpoint.
struct closing_tls_socket {
    /// Thread safety: as tls_socket::connection: each connection's handlers
    /// run on its strand (several io threads) or on the one io thread.
    class connection : public ::websocketpp::transport::asio::tls_socket::connection {
        using base = ::websocketpp::transport::asio::tls_socket::connection;

    public:
        /// Effect: as the base; while the TLS shutdown runs (websocketpp's
        /// shutdown timer fired), closes the TCP socket instead: that ends
        /// the shutdown and every other pending operation, and frees the
        /// descriptor. Exceptions: nothrow.
        ::websocketpp::lib::asio::error_code cancel_socket() {
            if (!shutting_down_) {
                return base::cancel_socket();
            }
            ::websocketpp::lib::asio::error_code ec;
            get_raw_socket().close(ec);
            return ec;
        }

    protected:
        /// Effect: as the base (close_notify, then the wait for the peer's),
        /// then closes the TCP socket, however the shutdown ended.
        /// Exceptions: std::bad_alloc (the handler).
        void async_shutdown(::websocketpp::transport::asio::socket::shutdown_handler h) {
            shutting_down_ = true;
            // `h` holds the transport connection (and so this object) alive.
            base::async_shutdown(
                [this, h = std::move(h)](const ::websocketpp::lib::asio::error_code& ec) {
                    h(ec);
                    ::websocketpp::lib::asio::error_code ignored;
                    get_raw_socket().close(ignored);
                });
        }

    private:
        bool shutting_down_ = false;
    };

    /// The endpoint side: tls_socket::endpoint making closing connections.
    class endpoint : public ::websocketpp::transport::asio::tls_socket::endpoint {
    public:
        typedef connection socket_con_type;
        typedef socket_con_type::ptr socket_con_ptr;
    };
};

/// Mixin for websocketpp's asio_tls config: closing_tls_socket, and the TLS
/// shutdown (close_notify and the wait for the peer's) bounded by
/// SocketShutdownMs.
template <class Base, long SocketShutdownMs = default_lean_socket_shutdown_ms>
struct with_tls_shutdown_bound : Base {
    using type = with_tls_shutdown_bound;
    using base = Base;

    struct transport_config : Base::transport_config {
        typedef closing_tls_socket::endpoint socket_type;
        static const long timeout_socket_shutdown = SocketShutdownMs;
    };
    typedef ::websocketpp::transport::asio::endpoint<transport_config> transport_type;
};

/// Asio TLS server config for many mostly idle connections, reading
/// ReadBufferBytes per call; safe with several threads running the io_context.
/// Needs a tls init handler returning a shared context (make_server_tls_context()).
template <std::size_t ReadBufferBytes = default_lean_read_buffer_bytes>
using basic_asio_tls_lean =
    detail::Lean<with_tls_shutdown_bound<::websocketpp::config::asio_tls>, ReadBufferBytes>;
using asio_tls_lean = basic_asio_tls_lean<>;

/// basic_asio_tls_lean for one io thread: no mutexes and no strand per
/// connection (see basic_asio_lean_single_thread). One io thread only.
template <std::size_t ReadBufferBytes = default_lean_read_buffer_bytes>
struct basic_asio_tls_lean_single_thread
    : detail::Lean<with_tls_shutdown_bound<::websocketpp::config::asio_tls>, ReadBufferBytes> {
    using type = basic_asio_tls_lean_single_thread;
    using base = with_tls_shutdown_bound<::websocketpp::config::asio_tls>;

    typedef ::websocketpp::concurrency::none concurrency_type;
    typedef GuardLogger<concurrency_type, ::websocketpp::log::elevel> elog_type;
    typedef GuardLogger<concurrency_type, ::websocketpp::log::alevel> alog_type;

    struct transport_config : base::transport_config {
        typedef typename type::concurrency_type concurrency_type;
        typedef typename type::alog_type alog_type;
        typedef typename type::elog_type elog_type;
        static const bool enable_multithreading = false;
    };
    typedef ::websocketpp::transport::asio::endpoint<transport_config> transport_type;
};
using asio_tls_lean_single_thread = basic_asio_tls_lean_single_thread<>;

}  // namespace wsguard::wspp
