// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Endpoint configs sized for many mostly idle connections. websocketpp's
// defaults give every connection a 16 KiB read buffer, allocated for the whole
// life of the connection even when the peer sends nothing: at 10,000 idle
// connections that is 160 MiB of buffers holding no data. A smaller buffer
// costs more read calls for a message larger than it (frames are reassembled
// in the message buffer, not here), and a read takes in fewer of a busy peer's
// pipelined messages, so fewer replies share a write. The lean configs read
// 1 KiB per call; basic_*<N> read N bytes. Measured against 16 KiB
// (benchmarks/RESULTS.md, "Read buffer"): 1 KiB costs +11% server CPU on 64 KiB
// messages and +15% on 4 KiB ones, 256 B +41% and +44% and +50% per fan-out
// delivery. Each KiB saved is a KiB of every open connection.
//
// The asio lean configs also close by lingering (lingering_socket.hpp), so a
// close code the server sends reaches the client instead of a TCP reset, with
// a 1 s socket-shutdown bound instead of websocketpp's 5 s (why: see
// default_lean_socket_shutdown_ms).
#pragma once

#include <wsguard/websocketpp/connection_memory.hpp>
#include <wsguard/websocketpp/lingering_socket.hpp>
#include <wsguard/websocketpp/logger.hpp>

#include <cstddef>

#include <websocketpp/concurrency/none.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/config/core.hpp>
#include <websocketpp/logger/basic.hpp>
#include <websocketpp/logger/levels.hpp>

namespace wsguard::wspp {

/// Bytes the lean configs read from the socket per read call; every connection
/// holds a buffer of this size for its whole life.
inline constexpr std::size_t default_lean_read_buffer_bytes = 1024;

namespace detail {

/// The transport template `Transport` is an instance of, over `Config`.
template <class Transport, class Config>
struct RebindTransport;
template <template <class> class Transport, class Old, class Config>
struct RebindTransport<Transport<Old>, Config> {
    using type = Transport<Config>;
};

/// The knobs wsguard changes, applied on top of any websocketpp config.
template <class Base, std::size_t ReadBufferBytes>
struct Lean : Base {
    static_assert(ReadBufferBytes >= 64,
                  "wsguard lean config: a read buffer under 64 bytes multiplies read calls for "
                  "every frame and saves almost nothing");

    using type = Lean;
    using base = Base;

    static const std::size_t connection_read_buffer_size = ReadBufferBytes;
    typedef GuardConnectionBase connection_base;

    /// Warnings and errors of the server, never a line per peer event: a line
    /// per connect, message or peer that vanished costs more than the server's
    /// own work at high rates, and the guard counts every one of those events
    /// in stats(). GuardLogger files peer events under debug (set_log_level()
    /// turns it on at run time) and holds back repeated lines.
    typedef GuardLogger<typename Base::concurrency_type, ::websocketpp::log::elevel> elog_type;
    typedef GuardLogger<typename Base::concurrency_type, ::websocketpp::log::alevel> alog_type;
    static const ::websocketpp::log::level alog_level = ::websocketpp::log::alevel::none;
    static const ::websocketpp::log::level elog_level = error_channels(LogLevel::warn);

    // The transport logs through the endpoint's loggers: same types.
    struct transport_config : Base::transport_config {
        typedef typename Lean::elog_type elog_type;
        typedef typename Lean::alog_type alog_type;
    };
    typedef typename RebindTransport<typename Base::transport_type, transport_config>::type
        transport_type;
};

}  // namespace detail

/// Asio (plain TCP) server config for many mostly idle connections, reading
/// ReadBufferBytes per call, closing by lingering; safe with several threads
/// running the io_context.
template <std::size_t ReadBufferBytes = default_lean_read_buffer_bytes>
using basic_asio_lean =
    detail::Lean<with_lingering_close<::websocketpp::config::asio>, ReadBufferBytes>;
using asio_lean = basic_asio_lean<>;

/// basic_asio_lean for a server whose io_context runs on one thread: no mutexes
/// and no strand per connection (a strand is a heap object per connection, and
/// every handler is wrapped through it). Use it only with a single io thread.
template <std::size_t ReadBufferBytes = default_lean_read_buffer_bytes>
struct basic_asio_lean_single_thread
    : detail::Lean<with_lingering_close<::websocketpp::config::asio>, ReadBufferBytes> {
    using type = basic_asio_lean_single_thread;
    using base = with_lingering_close<::websocketpp::config::asio>;

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
using asio_lean_single_thread = basic_asio_lean_single_thread<>;

/// iostream-transport config (no sockets, no timers): what the tests drive.
template <std::size_t ReadBufferBytes = default_lean_read_buffer_bytes>
using basic_core_lean = detail::Lean<::websocketpp::config::core, ReadBufferBytes>;
using core_lean = basic_core_lean<>;

}  // namespace wsguard::wspp
