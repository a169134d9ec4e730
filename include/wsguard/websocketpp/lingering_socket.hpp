// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A lingering close for websocketpp's asio transport (plain TCP).
//
// websocketpp ends every connection with the socket policy's async_shutdown,
// which in the stock policy shuts both directions down at once. After a close
// the server started with a terminal code (1002, 1007, 1008, 1009, 1011),
// websocketpp ends the connection as soon as the close frame is written, often
// with the rest of the peer's message still unread: closing a socket with
// unread bytes makes the kernel send a reset, and a client that gets the reset
// while it is still writing (most do: they write the big message that was
// refused) fails with 1006 and never sees the close frame. The same happens to
// an HTTP error answer sent to a handshake that is not read to its end.
//
// LingeringSocket's async_shutdown stops writing only (FIN after the close
// frame), then reads and discards what the peer still sends until it closes
// its side, so the close frame reaches it. Bounded twice: by time (websocketpp
// arms a timer of transport_config::timeout_socket_shutdown around every
// async_shutdown, which cancels the socket when it fires) and by bytes
// (MaxDiscardBytes; past it the socket is shut down both ways as before). A
// small discard buffer exists only while a connection lingers.
//
// websocketpp runs the close handler once async_shutdown completes, so a
// lingering connection is still counted by the guard (connections) until it
// ends: a peer that never closes holds its slot for the socket-shutdown timeout.
// websocketpp's own reads, which go on after a close, are cancelled while a
// connection lingers (see end_other_reads()); a cancelled read reads as EOF
// (see translate_ec()).
#pragma once

#include <websocketpp/common/asio.hpp>
#include <websocketpp/transport/asio/endpoint.hpp>
#include <websocketpp/transport/asio/security/none.hpp>

#include <cstddef>
#include <memory>
#include <system_error>
#include <utility>

namespace wsguard::wspp {

/// Bytes a lingering connection reads and discards at most before it gives
/// up and resets: 16 MiB. The time bound usually ends a linger first; this
/// one bounds the CPU a fast peer can make the server spend on bytes it
/// throws away, yet covers the rest of any message a client was writing
/// when the close came (a client stops writing once it reads the close frame,
/// one round trip later, so 16 MiB is a round trip at 1.3 Gbit/s over 100 ms).
inline constexpr std::size_t default_linger_discard_bytes = std::size_t{16} << 20;

/// A socket policy for websocketpp::transport::asio (the `socket_type` of a
/// config's transport_config) whose shutdown lingers; see the header comment.
/// Drop-in for websocketpp::transport::asio::basic_socket::endpoint.
template <std::size_t MaxDiscardBytes = default_linger_discard_bytes>
struct basic_lingering_socket {
    static_assert(MaxDiscardBytes > 0, "wsguard lingering socket: a zero bound never lingers");

    /// The connection side: basic_socket::connection with a lingering
    /// async_shutdown. websocketpp calls the policy's members by name from
    /// its transport connection, which derives from this class, so hiding
    /// them here is enough.
    ///
    /// Thread safety: as basic_socket::connection: each connection's
    /// handlers run on its strand (several io threads) or on the one io thread.
    class connection : public ::websocketpp::transport::asio::basic_socket::connection {
        using base = ::websocketpp::transport::asio::basic_socket::connection;

    public:
        /// Effect: whether this connection is lingering now (tests, stats).
        bool lingering() const noexcept { return discard_ != nullptr; }

        /// Effect: as basic_socket's, but a read cancelled by the linger (see
        /// end_other_reads()) reads as EOF, which websocketpp ignores once
        /// the connection is closed; as operation_aborted it would record a
        /// 1006 "Operation canceled" over the connection's real close code
        /// before the close handler reads it. Only the linger and websocketpp's
        /// shutdown timer cancel reads on a server socket, both after the
        /// connection closed. Exceptions: nothrow.
        static ::websocketpp::lib::error_code translate_ec(::websocketpp::lib::error_code ec) {
            if (ec == ::websocketpp::lib::asio::error::operation_aborted) {
                return ::websocketpp::transport::error::make_error_code(
                    ::websocketpp::transport::error::eof);
            }
            return ec;
        }
        template <class ErrorCode>
        static ::websocketpp::lib::error_code translate_ec(ErrorCode ec) {
            return base::translate_ec(ec);
        }

    protected:
        /// Effect: as the base, and keeps the strand the linger's reads run on.
        std::error_code init_asio(io_service_ptr service, strand_ptr strand, bool is_server) {
            strand_ = strand;
            return base::init_asio(service, std::move(strand), is_server);
        }

        /// Effect: shuts the sending side down, then reads and discards until
        /// the peer closes its side (EOF), an error, MaxDiscardBytes, or the
        /// transport's shutdown timer (cancel_socket()); then calls `h` once.
        /// Fails: `h` gets the error of shutdown(send) if the socket was not
        /// connected (never opened, or the peer is gone: no linger then); read
        /// errors end the linger without error (the peer is gone).
        /// Exceptions: std::bad_alloc (the discard buffer).
        void async_shutdown(::websocketpp::transport::asio::socket::shutdown_handler h) {
            ::websocketpp::lib::asio::error_code ec;
            get_socket().shutdown(::websocketpp::lib::asio::ip::tcp::socket::shutdown_send, ec);
            if (ec) {
                h(ec);
                return;
            }
            cancelled_ = false;
            discarded_ = 0;
            discard_.reset(new char[discard_buffer_bytes]);
            end_other_reads();
            read_some(std::move(h));
        }

        /// Effect: as the base; a linger in progress ends at its next read
        /// completion (websocketpp cancels the socket when the shutdown timer
        /// fires: a read that completed just before must not start another).
        ::websocketpp::lib::asio::error_code cancel_socket() {
            cancelled_ = lingering();
            return base::cancel_socket();
        }

    private:
        // 4 KiB: a page, allocated per linger only; reads of a peer that
        // keeps writing cost a call per 4 KiB for at most the linger's bounds.
        static constexpr std::size_t discard_buffer_bytes = 4096;

        void read_some(::websocketpp::transport::asio::socket::shutdown_handler h) {
            // `h` holds the transport connection (and so this object) alive.
            auto on_read = [this, h = std::move(h)](const ::websocketpp::lib::asio::error_code& e,
                                                    std::size_t n) mutable {
                discarded_ += n;
                if (cancelled_) {
                    finish(std::move(h), ::websocketpp::lib::asio::error::operation_aborted);
                } else if (e || discarded_ >= MaxDiscardBytes) {
                    if (!e) {
                        // Over the bound: stop reading; what the peer still
                        // sends is refused (a reset), as without lingering.
                        ::websocketpp::lib::asio::error_code ignored;
                        get_socket().shutdown(
                            ::websocketpp::lib::asio::ip::tcp::socket::shutdown_both, ignored);
                    }
                    // EOF is the clean end; a reset means the peer is gone: done either way.
                    finish(std::move(h), {});
                } else {
                    end_other_reads();
                    read_some(std::move(h));
                }
            };
            auto buffer = ::websocketpp::lib::asio::buffer(discard_.get(), discard_buffer_bytes);
            if (strand_) {
                get_socket().async_read_some(buffer, strand_->wrap(std::move(on_read)));
            } else {
                get_socket().async_read_some(buffer, std::move(on_read));
            }
        }

        // websocketpp may have a read of its own outstanding (it reads on
        // after a close it handled in a read handler, and until the close
        // handshake ends). Two reads cannot both see the peer's EOF: asio
        // stops at the first read that gets it and epoll does not signal it
        // again, so the other waits forever (holding the connection and the
        // io loop, or the linger until its timeout). Cancel every other
        // operation: only the linger's read is left.
        void end_other_reads() { base::cancel_socket(); }

        void finish(::websocketpp::transport::asio::socket::shutdown_handler h,
                    const ::websocketpp::lib::asio::error_code& ec) {
            discard_.reset();
            cancelled_ = false;
            h(ec);  // websocketpp's close or fail handler runs here
            // A read websocketpp started since the last end_other_reads()
            // would wait forever: closing ends it, and frees the descriptor
            // now. `h` still holds the connection, so this object is alive.
            ::websocketpp::lib::asio::error_code ignored;
            get_socket().close(ignored);
        }

        strand_ptr strand_;
        std::unique_ptr<char[]> discard_;  // only while lingering
        std::size_t discarded_ = 0;
        bool cancelled_ = false;  // the shutdown timer fired during the linger
    };

    /// The endpoint side: basic_socket::endpoint making lingering connections.
    class endpoint : public ::websocketpp::transport::asio::basic_socket::endpoint {
    public:
        typedef connection socket_con_type;
        typedef typename socket_con_type::ptr socket_con_ptr;
    };
};

/// The lingering socket policy with the default discard bound.
using lingering_socket = basic_lingering_socket<>;

/// How long a lingering close waits for the peer to close its side, in the
/// lean configs: 1 s (websocketpp's default is 5 s). A client that reads gets
/// the close frame within a round trip and closes at once; the wait is for
/// peers that never close (dead, or hostile), and each holds a socket and a
/// connection slot that long, so a short bound keeps a wave of such closes
/// (a dead-peer sweep, a flood of oversized messages) from piling up.
inline constexpr long default_lean_socket_shutdown_ms = 1000;

/// Mixin for a stock websocketpp asio config (plain TCP): the same config
/// with lingering closes. E.g.
///   struct my_config : wsguard::wspp::with_lingering_close<websocketpp::config::asio> {};
/// For a config whose transport_config is already customised, set
/// `typedef wsguard::wspp::lingering_socket::endpoint socket_type;` in it and
/// rebuild transport_type, as this mixin does.
template <class Base, long SocketShutdownMs = default_lean_socket_shutdown_ms,
          std::size_t MaxDiscardBytes = default_linger_discard_bytes>
struct with_lingering_close : Base {
    using type = with_lingering_close;
    using base = Base;

    struct transport_config : Base::transport_config {
        typedef typename basic_lingering_socket<MaxDiscardBytes>::endpoint socket_type;
        static const long timeout_socket_shutdown = SocketShutdownMs;
    };
    typedef ::websocketpp::transport::asio::endpoint<transport_config> transport_type;
};

}  // namespace wsguard::wspp
