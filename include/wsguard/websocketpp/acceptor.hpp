// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Acceptor: an accept loop for a websocketpp asio server, in place of
// server.start_accept(), that survives running out of file descriptors.
//
// websocketpp's own loop (server::handle_accept, not virtual) starts the next
// accept at once after a failed one. Out of descriptors (EMFILE, ENFILE), the
// kernel still queues connections on the listening socket, so every accept
// fails at once and the loop spins a core (measured ~97%) until a descriptor
// is freed. Acceptor waits instead: 10 ms after the first failure, doubling up
// to 1 s, and accepts again at the first retry that finds a descriptor.
//
// Each accepted socket goes to an admission callback before websocketpp reads
// a byte of it (ServerGuard::note_accepted bounds the handshakes in progress);
// a refused one is closed at once and its connection object reused.
//
// Also fit_descriptor_limit(): how many connections RLIMIT_NOFILE leaves room
// for, raising the soft limit toward the hard one when that helps.
#pragma once

#include <websocketpp/error.hpp>

#include <asio/error.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#define WSGUARD_HAVE_RLIMIT 1
#endif

namespace wsguard::wspp {

/// How the accept loop backs off when the process is out of descriptors.
struct AcceptorOptions {
    /// First wait after an accept failed for want of descriptors (or memory).
    /// 10 ms: a descriptor freed by a closing connection is reused quickly,
    /// and a failed accept costs a few microseconds, so this is ~0.1% of a core.
    std::chrono::milliseconds first_backoff{10};
    /// The wait doubles up to this. 1 s: a server out of descriptors for long
    /// retries once a second (no measurable CPU) and accepts at most 1 s after
    /// descriptors are free again.
    std::chrono::milliseconds max_backoff{1000};
};

/// What the accept loop did.
struct AcceptorStats {
    std::uint64_t accepted = 0;   ///< sockets handed to websocketpp (start())
    std::uint64_t refused = 0;    ///< sockets the admission callback refused (closed at once)
    std::uint64_t exhausted = 0;  ///< accepts that failed for want of descriptors or memory
    std::uint64_t errors = 0;     ///< accepts that failed otherwise (e.g. peer reset first)
    std::error_code last_error;   ///< of the latest failed accept
    bool backing_off = false;     ///< waiting before the next accept
    bool running = false;         ///< an accept or a backoff is outstanding
};

/// Effect: whether accept's `ec` means the process (or system) is out of
/// descriptors or memory: waiting helps, retrying at once does not.
inline bool is_resource_exhaustion(const std::error_code& ec) noexcept {
    // Standalone asio reports errno values in its own system category, which
    // does not map them to std::errc conditions.
    if (ec.category() == asio::error::get_system_category() ||
        ec.category() == std::system_category()) {
        return ec.value() == EMFILE || ec.value() == ENFILE || ec.value() == ENOBUFS ||
               ec.value() == ENOMEM;
    }
    return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
           ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

/// The accept loop of a websocketpp::server over the asio transport.
///
/// Thread safety: Distinct objects: Safe. Shared objects: start(), stop() and
/// stats() may be called from any thread; the loop runs on the server's io
/// threads, one operation outstanding at a time.
template <class Server>
class Acceptor {
public:
    using connection_type = typename Server::connection_type;
    using connection_ptr = typename Server::connection_ptr;
    /// Called with each accepted socket before websocketpp reads from it;
    /// false refuses it (closed at once).
    using Admit = std::function<bool(connection_type&)>;

    /// Effect: an accept loop for `server` (which must outlive the loop's
    /// handlers: keep it alive until its io_context stopped). Nothing is
    /// accepted before start(). Exceptions: std::bad_alloc.
    explicit Acceptor(Server& server, Admit admit = nullptr, AcceptorOptions options = {})
        : state_(std::make_shared<State>(server, std::move(admit), options)) {}

    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

    /// Effect: stop().
    ~Acceptor() { stop(); }

    /// Effect: starts accepting on the server's listening socket (call
    /// listen() first). The loop ends by itself once the server stops
    /// listening (stop_listening(), ServerGuard::shutdown()); during a
    /// backoff it notices at the next retry, or at once with stop().
    /// Fails: std::system_error (websocketpp's async_accept_not_listening) if
    /// the server is not listening. Thread safety: as the class.
    /// Exceptions: std::system_error, std::bad_alloc.
    void start() {
        std::lock_guard<std::mutex> lock(state_->mutex);
        if (state_->running) {
            return;
        }
        if (!state_->server.is_listening()) {
            throw std::system_error(::websocketpp::error::make_error_code(
                ::websocketpp::error::async_accept_not_listening));
        }
        state_->stopped = false;
        state_->running = true;
        accept_locked(state_);
    }

    /// Effect: no accept is started any more and a pending backoff ends now;
    /// an accept already waiting ends when the server stops listening (a
    /// socket it still gets is closed). Idempotent. Never fails.
    /// Thread safety: as the class. Exceptions: nothrow.
    void stop() noexcept {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->stopped = true;
        std::error_code ignored;
        state_->timer.cancel(ignored);
    }

    /// Effect: a snapshot of the loop's counts. Never fails. Exceptions: nothrow.
    AcceptorStats stats() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        AcceptorStats s = state_->stats;
        s.backing_off = state_->backing_off;
        s.running = state_->running;
        return s;
    }

private:
    struct State {
        State(Server& s, Admit a, AcceptorOptions o)
            : server(s), admit(std::move(a)), options(o), timer(s.get_io_service()) {}

        Server& server;
        const Admit admit;
        const AcceptorOptions options;
        mutable std::mutex mutex;  // everything below
        asio::steady_timer timer;
        connection_ptr spare;  // made and not started: reused after a refusal or failure
        std::chrono::milliseconds backoff{0};
        AcceptorStats stats;
        bool stopped = false;
        bool running = false;
        bool backing_off = false;
    };

    // Starts the next accept, or ends the loop. With state->mutex held.
    static void accept_locked(const std::shared_ptr<State>& state) {
        State& st = *state;
        if (st.stopped || !st.server.is_listening()) {
            st.running = false;
            st.spare.reset();
            return;
        }
        if (!st.spare) {
            st.spare = st.server.get_connection();
            if (!st.spare) {
                // websocketpp could not set the connection up (e.g. out of memory).
                back_off_locked(state);
                return;
            }
        }
        connection_ptr con = st.spare;
        std::error_code ec;
        st.server.async_accept(
            con, [state, con](const std::error_code& e) { on_accept(state, con, e); }, ec);
        if (ec) {
            st.running = false;  // not listening any more
            st.spare.reset();
        }
    }

    static void on_accept(const std::shared_ptr<State>& state, const connection_ptr& con,
                          const std::error_code& ec) {
        State& st = *state;
        std::unique_lock<std::mutex> lock(st.mutex);
        if (!ec) {
            st.backoff = std::chrono::milliseconds{0};
            std::error_code ignored;
            if (st.stopped) {
                con->get_raw_socket().close(ignored);
            } else {
                lock.unlock();
                const bool admitted = !st.admit || st.admit(*con);
                if (admitted) {
                    con->start();
                } else {
                    con->get_raw_socket().close(ignored);  // before reading a byte
                }
                lock.lock();
                if (admitted) {
                    st.spare.reset();
                    ++st.stats.accepted;
                } else {
                    ++st.stats.refused;
                }
            }
            accept_locked(state);
            return;
        }
        st.stats.last_error = ec;
        if (ec == ::websocketpp::error::operation_canceled ||
            ec == asio::error::operation_aborted) {
            accept_locked(state);  // ends the loop unless still listening (a spurious cancel)
            return;
        }
        if (is_resource_exhaustion(ec)) {
            ++st.stats.exhausted;
            back_off_locked(state);
            return;
        }
        // Another failure (the peer reset before the accept, ...) concerns
        // one connection: accept the next at once, unless failures repeat.
        ++st.stats.errors;
        if (st.backoff.count() > 0) {
            back_off_locked(state);
        } else {
            st.backoff = std::chrono::milliseconds{1};  // a second failure in a row waits
            accept_locked(state);
        }
    }

    static void back_off_locked(const std::shared_ptr<State>& state) {
        State& st = *state;
        st.backoff = st.backoff < st.options.first_backoff
                         ? st.options.first_backoff
                         : std::min(st.backoff * 2, st.options.max_backoff);
        st.backing_off = true;
        st.timer.expires_after(st.backoff);
        st.timer.async_wait([state](const std::error_code&) {
            std::lock_guard<std::mutex> lock(state->mutex);
            state->backing_off = false;
            accept_locked(state);  // a cancel comes from stop(): that ends the loop
        });
    }

    std::shared_ptr<State> state_;
};

/// Descriptors a server keeps besides its connections: 64 covers stdio, the
/// listening socket, asio's epoll, eventfd and timerfd, a Redis connection,
/// snapshot and log files, and a few handshakes still in progress when the
/// server is full (so its last connections can complete).
inline constexpr std::size_t default_descriptor_reserve = 64;

/// What the process's descriptor limit (RLIMIT_NOFILE) leaves room for.
struct DescriptorBudget {
    bool known = false;           ///< false: no RLIMIT_NOFILE here; the rest is 0
    std::size_t soft = 0;         ///< the soft limit, after raising it
    std::size_t hard = 0;         ///< the hard limit (SIZE_MAX: unlimited)
    bool raised = false;          ///< the soft limit was raised (toward the hard one)
    std::size_t connections = 0;  ///< soft - reserve: connections that fit (0 if none)
};

/// Effect: when `max_connections` + `reserve` descriptors exceed the soft
/// RLIMIT_NOFILE, raises the soft limit as far as needed, up to the hard
/// limit; returns what the limit now leaves room for.
/// Fails: never; if raising fails the budget says so (raised false).
/// Thread safety: changes a process-wide limit: call at start-up.
/// Exceptions: nothrow.
inline DescriptorBudget fit_descriptor_limit(std::size_t max_connections,
                                             std::size_t reserve = default_descriptor_reserve) {
    DescriptorBudget b;
#ifdef WSGUARD_HAVE_RLIMIT
    ::rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return b;
    }
    const auto size_of = [](rlim_t v) {
        return v == RLIM_INFINITY ? SIZE_MAX : static_cast<std::size_t>(v);
    };
    const std::size_t wanted =
        max_connections > SIZE_MAX - reserve ? SIZE_MAX : max_connections + reserve;
    if (size_of(lim.rlim_cur) < wanted && lim.rlim_cur != lim.rlim_max) {
        ::rlimit raised = lim;
        raised.rlim_cur =
            size_of(lim.rlim_max) <= wanted ? lim.rlim_max : static_cast<rlim_t>(wanted);
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            lim = raised;
            b.raised = true;
        }
    }
    b.known = true;
    b.soft = size_of(lim.rlim_cur);
    b.hard = size_of(lim.rlim_max);
    b.connections = b.soft > reserve ? b.soft - reserve : 0;
#else
    (void)max_connections;
    (void)reserve;
#endif
    return b;
}

}  // namespace wsguard::wspp
