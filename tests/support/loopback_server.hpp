// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A websocketpp asio server with a ServerGuard on 127.0.0.1 (ephemeral port),
// its io_context on its own thread, for the adapter's transport tests; and a
// raw client's pieces (handshake request, masked frames, server frame parser).
// Every wait is bounded; the destructor stops the loop and joins the thread.
#pragma once

#include <wsguard/websocketpp/server_guard.hpp>

#include <websocketpp/server.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

namespace wsguard::test {

/// Server + guard on their own io thread. `start` begins accepting (default:
/// websocketpp's start_accept()); it runs before the thread starts.
template <class Config, class Lock = NullMutex>
class LoopbackServer {
public:
    using Server = ::websocketpp::server<Config>;
    using Guard = wspp::ServerGuard<Config, Lock>;

    explicit LoopbackServer(wspp::GuardOptions options,
                            std::function<void(LoopbackServer&)> start = nullptr) {
        server_.clear_access_channels(::websocketpp::log::alevel::all);
        server_.clear_error_channels(::websocketpp::log::elevel::all);
        server_.init_asio();
        guard_.emplace(server_, options);
        server_.set_reuse_addr(true);
        server_.listen(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        if (start) {
            start(*this);
        } else {
            server_.start_accept();
        }
        std::error_code ec;
        port_ = server_.get_local_endpoint(ec).port();
        work_.emplace(asio::make_work_guard(server_.get_io_service()));
        thread_ = std::thread([this] { server_.run(); });
    }

    LoopbackServer(const LoopbackServer&) = delete;
    LoopbackServer& operator=(const LoopbackServer&) = delete;

    ~LoopbackServer() { stop(); }

    /// Stops the loop at once and joins the thread (no graceful close).
    void stop() {
        if (!thread_.joinable()) {
            return;
        }
        on_io([this] {
            std::error_code ec;
            if (server_.is_listening()) {
                server_.stop_listening(ec);
            }
        });
        work_.reset();
        server_.stop();
        thread_.join();
    }

    std::uint16_t port() const noexcept { return port_; }
    Server& server() noexcept { return server_; }
    Guard& guard() noexcept { return *guard_; }

    /// Runs `f` on the io thread and returns its result.
    template <class F>
    auto on_io(F f) -> decltype(f()) {
        auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
        auto result = task->get_future();
        asio::post(server_.get_io_service(), [task] { (*task)(); });
        return result.get();
    }

    /// The guard's stats, read on the io thread.
    wspp::GuardStats stats() {
        return on_io([this] { return guard_->stats(); });
    }

private:
    Server server_;
    std::optional<Guard> guard_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::thread thread_;
    std::uint16_t port_ = 0;
};

/// The opening handshake a raw client sends.
inline std::string upgrade_request(std::uint16_t port) {
    return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

/// The header of one masked client frame carrying `payload_size` bytes; the
/// payload that follows must be masked with `mask` (all zero: sent as is).
inline std::string client_frame_header(std::uint8_t opcode, std::uint64_t payload_size,
                                       const char (&mask)[4]) {
    std::string out;
    out.push_back(static_cast<char>(0x80 | opcode));
    if (payload_size < 126) {
        out.push_back(static_cast<char>(0x80 | payload_size));
    } else if (payload_size <= 0xFFFF) {
        out.push_back(static_cast<char>(0x80 | 126));
        out.push_back(static_cast<char>((payload_size >> 8) & 0xFF));
        out.push_back(static_cast<char>(payload_size & 0xFF));
    } else {
        out.push_back(static_cast<char>(0x80 | 127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            out.push_back(static_cast<char>((payload_size >> shift) & 0xFF));
        }
    }
    out.append(mask, 4);
    return out;
}

/// One server frame taken off the front of `inbox` (after the handshake
/// response), if a whole one is there: {opcode, payload}.
inline std::optional<std::pair<std::uint8_t, std::string>> take_server_frame(std::string& inbox) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(inbox[i]); };
    if (inbox.size() < 2) {
        return std::nullopt;
    }
    std::size_t at = 2;
    std::uint64_t n = byte(1) & 0x7F;
    const std::size_t extra = n == 126 ? 2 : n == 127 ? 8 : 0;
    if (inbox.size() < at + extra) {
        return std::nullopt;
    }
    if (extra > 0) {
        n = 0;
        for (std::size_t i = 0; i < extra; ++i) {
            n = (n << 8) | byte(at + i);
        }
        at += extra;
    }
    if (inbox.size() - at < n) {
        return std::nullopt;
    }
    std::pair<std::uint8_t, std::string> f{static_cast<std::uint8_t>(byte(0) & 0x0F),
                                           inbox.substr(at, static_cast<std::size_t>(n))};
    inbox.erase(0, at + static_cast<std::size_t>(n));
    return f;
}

/// The status code of a close frame's payload; 1005 (none) if it is empty.
inline std::uint16_t close_code_of(const std::string& payload) {
    if (payload.size() < 2) {
        return 1005;
    }
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                      static_cast<unsigned char>(payload[1]));
}

}  // namespace wsguard::test
