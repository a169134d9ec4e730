// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A websocketpp asio server with a ServerGuard on 127.0.0.1 (ephemeral port),
// its io_context on its own thread, for the adapter's transport tests; and a
// bounded wait; a raw client's pieces are in ws_frames.hpp.
// Every wait is bounded; the destructor stops the loop and joins the thread.
#pragma once

#include <wsguard/websocketpp/server_guard.hpp>

#include "ws_frames.hpp"

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

/// Calls `pred` every 5 ms until it returns true or `timeout` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

}  // namespace wsguard::test
