// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// AsioTicker: calls ServerGuard::tick() on the endpoint's own io_context, so
// housekeeping runs on the io thread with no extra thread and no lock.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace wsguard::wspp {

/// Schedules `guard.tick()` (and an optional extra callback, e.g. sampling)
/// every `period` through the asio endpoint's set_timer. Stops when stop() is
/// called, when it is destroyed, or once the guard is shutting down, so the
/// io loop can end after a graceful shutdown.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe; use it from
/// the io thread (its timer handlers run there).
template <class Guard>
class AsioTicker {
public:
    using timer_ptr = typename Guard::server_type::timer_ptr;

    /// Effect: schedules the first tick `period` from now.
    /// Fails: std::invalid_argument if period is not positive.
    /// Exceptions: std::invalid_argument, std::bad_alloc.
    AsioTicker(Guard& guard, std::chrono::milliseconds period,
               std::function<void()> also = nullptr)
        : state_(std::make_shared<State>(State{guard, period, std::move(also), nullptr, false})) {
        if (period.count() <= 0) {
            throw std::invalid_argument("wsguard::AsioTicker: period must be positive");
        }
        schedule(state_);
    }

    AsioTicker(const AsioTicker&) = delete;
    AsioTicker& operator=(const AsioTicker&) = delete;
    ~AsioTicker() { stop(); }

    /// Effect: cancels the pending tick; no tick runs after this returns.
    void stop() noexcept {
        state_->stopped = true;
        if (state_->timer) {
            try {
                state_->timer->cancel();
            } catch (...) {
                // Cancelling a finished timer may throw on old asio; it is stopped either way.
            }
        }
    }

private:
    struct State {
        Guard& guard;
        std::chrono::milliseconds period;
        std::function<void()> also;
        timer_ptr timer;
        bool stopped;
    };

    // The handler holds a weak_ptr: a ticker destroyed while a tick is pending
    // leaves a handler that does nothing.
    static void schedule(const std::shared_ptr<State>& state) {
        std::weak_ptr<State> weak = state;
        state->timer = state->guard.server().set_timer(
            static_cast<long>(state->period.count()), [weak](const std::error_code& ec) {
                auto s = weak.lock();
                if (!s || ec || s->stopped) {
                    return;
                }
                s->guard.tick();
                if (s->also) {
                    s->also();
                }
                if (!s->guard.shutting_down()) {
                    schedule(s);
                }
            });
    }

    std::shared_ptr<State> state_;
};

}  // namespace wsguard::wspp
