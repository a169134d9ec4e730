// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The lean endpoint configs of lean_config.hpp on websocketpp's asio_tls
// transport (wss): the same read buffer, loggers and connection base. Pair
// them with make_server_tls_context() (tls_context.hpp), whose
// SSL_MODE_RELEASE_BUFFERS keeps OpenSSL's ~34 KiB of buffers off idle
// connections; without it they dwarf every saving here.
//
// What differs from the plain lean configs: no lingering close (a TLS stream
// ends with close_notify, which websocketpp's TLS socket sends and waits for
// itself; lingering_socket.hpp is for plain TCP), but the same 1 s bound on
// that shutdown instead of websocketpp's 5 s. The TLS handshake is bounded by
// websocketpp's timeout_socket_post_init (5 s): a peer that stops mid-handshake
// is dropped then.
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

/// Mixin for websocketpp's asio_tls config: the TLS shutdown (close_notify
/// and the wait for the peer's) bounded by SocketShutdownMs.
template <class Base, long SocketShutdownMs = default_lean_socket_shutdown_ms>
struct with_tls_shutdown_bound : Base {
    using type = with_tls_shutdown_bound;
    using base = Base;

    struct transport_config : Base::transport_config {
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
