// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// AsioTicker: calls ServerGuard::tick() on the endpoint's own io_context, so
// housekeeping runs on the io thread with no extra thread and no lock.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>

namespace wsguard::wspp {

/// What each period of an AsioTicker runs.
enum class TickerMode {
    tick_guard,    ///< guard.tick(), then the extra callback if any
    callback_only  ///< only the extra callback (e.g. sampling beside a ticker)
};

/// Schedules `guard.tick()` (and an optional extra callback, e.g. sampling)
/// every `period` through the asio endpoint's set_timer. Stops when stop() is
/// called, when it is destroyed, or once the guard is shutting down, so the
/// io loop can end after a graceful shutdown. Give a guard one tick_guard
/// ticker: two would tick it twice per period, concurrently with several io
/// threads.
///
/// Thread safety: Distinct objects: Safe. Shared objects: stop() from any
/// thread; construct and destroy it on one thread. Its ticks run on the io
/// threads, one at a time.
template <class Guard>
class AsioTicker {
public:
    using timer_ptr = typename Guard::server_type::timer_ptr;

    /// Effect: schedules the first period `period` from now.
    /// Fails: std::invalid_argument if period is not positive, or if mode is
    /// callback_only without a callback.
    /// Exceptions: std::invalid_argument, std::bad_alloc.
    AsioTicker(Guard& guard, std::chrono::milliseconds period, std::function<void()> also = nullptr,
               TickerMode mode = TickerMode::tick_guard)
        : state_(std::make_shared<State>(guard, period, std::move(also),
                                         mode == TickerMode::tick_guard)) {
        if (period.count() <= 0) {
            throw std::invalid_argument("wsguard::AsioTicker: period must be positive");
        }
        if (!state_->tick_guard && !state_->also) {
            throw std::invalid_argument("wsguard::AsioTicker: callback_only needs a callback");
        }
        schedule(state_);
    }

    AsioTicker(const AsioTicker&) = delete;
    AsioTicker& operator=(const AsioTicker&) = delete;
    ~AsioTicker() { stop(); }

    /// Effect: cancels the pending tick; no tick starts after this returns
    /// (one already running on another io thread finishes).
    /// Thread safety: Safe from any thread.
    void stop() noexcept {
        std::lock_guard<std::mutex> lock(state_->m);
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
        State(Guard& g, std::chrono::milliseconds p, std::function<void()> a, bool t)
            : guard(g), period(p), also(std::move(a)), tick_guard(t) {}
        Guard& guard;
        std::chrono::milliseconds period;
        std::function<void()> also;
        bool tick_guard;
        // With several io threads the handler runs on any of them and stop()
        // may come from another: the timer and the flag are shared.
        std::mutex m;
        timer_ptr timer;
        bool stopped = false;
    };

    // The handler holds a weak_ptr: a ticker destroyed while a tick is pending
    // leaves a handler that does nothing.
    static void schedule(const std::shared_ptr<State>& state) {
        std::weak_ptr<State> weak = state;
        std::lock_guard<std::mutex> lock(state->m);
        if (state->stopped) {
            return;
        }
        state->timer = state->guard.server().set_timer(
            static_cast<long>(state->period.count()), [weak](const std::error_code& ec) {
                auto s = weak.lock();
                if (!s || ec) {
                    return;
                }
                {
                    std::lock_guard<std::mutex> lock(s->m);
                    if (s->stopped) {
                        return;
                    }
                }
                if (s->tick_guard) {
                    s->guard.tick();
                }
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
