// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Endpoint configs sized for many mostly idle connections. websocketpp's
// defaults give every connection a 16 KiB read buffer, allocated for the whole
// life of the connection even when the peer sends nothing: at 10,000 idle
// connections that is 160 MiB of buffers holding no data. A 1 KiB read buffer
// costs a few more read calls for a large message and nothing else: frames are
// reassembled in the message buffer, not in the read buffer.
#pragma once

#include <cstddef>

#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/config/core.hpp>
#include <websocketpp/logger/basic.hpp>
#include <websocketpp/logger/levels.hpp>

namespace wsguard::wspp {

namespace detail {

/// The knobs wsguard changes, applied on top of any websocketpp config.
template <class Base>
struct Lean : Base {
    using type = Lean;
    using base = Base;

    /// Bytes read from the socket per read call, held per connection for its
    /// whole life. 1 KiB: a mostly idle connection should cost little; see
    /// benchmarks/RESULTS.md for the large-message trade-off.
    static const std::size_t connection_read_buffer_size = 1024;

    /// Logging off but for fatal errors: a line per connect, message or peer
    /// that vanished costs more than the server's own work at high rates, and
    /// the guard counts every one of those events in stats().
    static const ::websocketpp::log::level alog_level = ::websocketpp::log::alevel::none;
    static const ::websocketpp::log::level elog_level = ::websocketpp::log::elevel::fatal;
};

}  // namespace detail

/// Asio (plain TCP) server config for many mostly idle connections; safe
/// with several threads running the io_context.
using asio_lean = detail::Lean<::websocketpp::config::asio>;

/// asio_lean for a server whose io_context runs on one thread: no mutexes and
/// no strand per connection (a strand is a heap object per connection, and
/// every handler is wrapped through it). Use it only with a single io thread.
struct asio_lean_single_thread : detail::Lean<::websocketpp::config::asio> {
    using type = asio_lean_single_thread;
    using base = ::websocketpp::config::asio;

    typedef ::websocketpp::concurrency::none concurrency_type;
    typedef ::websocketpp::log::basic<concurrency_type, ::websocketpp::log::elevel> elog_type;
    typedef ::websocketpp::log::basic<concurrency_type, ::websocketpp::log::alevel> alog_type;

    struct transport_config : base::transport_config {
        typedef type::concurrency_type concurrency_type;
        typedef type::alog_type alog_type;
        typedef type::elog_type elog_type;
        static const bool enable_multithreading = false;
    };
    typedef ::websocketpp::transport::asio::endpoint<transport_config> transport_type;
};

/// iostream-transport config (no sockets, no timers): what the tests drive.
using core_lean = detail::Lean<::websocketpp::config::core>;

}  // namespace wsguard::wspp
