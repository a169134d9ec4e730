// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A websocketpp logger policy for servers that meet the open internet.
// websocketpp logs what one peer did at the levels of server faults: every
// abrupt disconnect is "[fatal] handle_write_frame error" or "[error]
// handle_read_frame error", every refused handshake "[error] Handshake ended
// with HTTP error". A server with churn writes tens of thousands of such lines
// a minute (29,759 in 15 s measured), which hides the lines that matter and
// costs more than the server's own work. GuardLogger files every line a single
// peer causes under debug (the guard counts each of those events in stats()),
// keeps websocketpp's level for the rest (accept failures, library errors),
// and writes a line that repeats at most about once a second, with the count
// of those it held back.
#pragma once

#include <websocketpp/logger/levels.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

namespace wsguard::wspp {

/// How much a server logs, from least to most.
enum class LogLevel { error, warn, info, debug };

inline const char* to_string(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::error:
            return "error";
        case LogLevel::warn:
            return "warn";
        case LogLevel::info:
            return "info";
        case LogLevel::debug:
            return "debug";
    }
    return "unknown";
}

/// Effect: the level named `name` ("error", "warn", "info", "debug").
/// Fails: std::nullopt for any other name.
inline std::optional<LogLevel> parse_log_level(std::string_view name) noexcept {
    for (LogLevel l : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug}) {
        if (name == to_string(l)) {
            return l;
        }
    }
    return std::nullopt;
}

/// Effect: the websocketpp error channels a server at `level` writes.
constexpr ::websocketpp::log::level error_channels(LogLevel level) noexcept {
    using e = ::websocketpp::log::elevel;
    return e::rerror | e::fatal | (level >= LogLevel::warn ? e::warn : 0) |
           (level >= LogLevel::info ? e::info : 0) |
           (level >= LogLevel::debug ? e::devel | e::library : 0);
}

/// Effect: the websocketpp access channels a server at `level` writes: none
/// but at debug, where each connection's open, close and failure is a line.
constexpr ::websocketpp::log::level access_channels(LogLevel level) noexcept {
    using a = ::websocketpp::log::alevel;
    return level >= LogLevel::debug ? a::connect | a::disconnect | a::fail : a::none;
}

/// Effect: `endpoint` (any websocketpp endpoint) logs at `level` from now on.
/// With GuardLogger as its loggers, peer events are debug lines; with
/// websocketpp's own loggers only the channels change.
template <class Endpoint>
void set_log_level(Endpoint& endpoint, LogLevel level) {
    endpoint.clear_error_channels(::websocketpp::log::elevel::all);
    endpoint.set_error_channels(error_channels(level));
    endpoint.clear_access_channels(::websocketpp::log::alevel::all);
    endpoint.set_access_channels(access_channels(level));
}

/// Effect: whether `msg` is an error-log line websocketpp writes in the
/// normal course of things: the accept it had pending when the server
/// stopped listening (a shutdown) is not an error.
inline bool is_routine(std::string_view msg) noexcept {
    // Its wording depends on which error the transport reports.
    constexpr std::string_view aborted = "handle_accept error: Operation aborted";
    constexpr std::string_view canceled = "handle_accept error: Operation canceled";
    return msg.substr(0, aborted.size()) == aborted || msg.substr(0, canceled.size()) == canceled;
}

/// Effect: whether websocketpp wrote error-log line `msg` because of what one
/// connection's peer did (vanished, reset, sent garbage, failed its
/// handshake), or as routine (is_routine()), as opposed to a fault of the
/// server or the library: those are the lines GuardLogger writes at debug.
inline bool is_peer_event(std::string_view msg) noexcept {
    // The sites in websocketpp 0.8's connection and asio transport that log a
    // connection's I/O or protocol error and then terminate that connection.
    static constexpr std::string_view sites[] = {
        "handle_read_frame",
        "handle_write_frame",
        "handle_read_handshake",
        "handle_write_http",
        "handle_transport_init",
        "handle_terminate",
        "consume",
        "Protocol error close frame",
        "got non-close frame",
        "got frame in state",
        "Got close frame",
        "Got control frame",
        "Received invalid close",
        "send_close_ack",
        "Failed to send response pong",
        "Bad request",
        "Extension negotiation",
        "Handshake ended with HTTP error",
        "asio async_read",
        "asio async_write",
        "asio async_shutdown",
        "asio handle_timer",
        "asio handle_proxy",
        "asio handle_post_init",
        "pong_timeout",
        "read operation aborted",
        "write operation aborted",
    };
    for (std::string_view site : sites) {
        if (msg.substr(0, site.size()) == site) {
            return true;
        }
    }
    return is_routine(msg);
}

/// Holds back a line that repeats within `interval` of the last one written;
/// the next one written after that carries the count held back. Lines are
/// told apart by their site (the text before " error:", else the first 40
/// characters), over a fixed table of `Slots` sites: a flood of distinct
/// lines costs no memory, the oldest site is forgotten.
template <class Clock = std::chrono::steady_clock, std::size_t Slots = 16>
class LineRateLimiter {
public:
    using duration = typename Clock::duration;

    explicit LineRateLimiter(duration interval = std::chrono::seconds(1), Clock clock = Clock{})
        : interval_(interval), clock_(clock) {}

    /// Effect: std::nullopt when `line` must be held back; else how many
    /// lines of its site were held back since the last one written.
    std::optional<std::uint64_t> admit(std::string_view line) {
        const std::string_view key = site_of(line);
        const std::size_t h = std::hash<std::string_view>{}(key);
        const auto now = clock_.now();
        Slot* victim = nullptr;  // a free slot, else the one written longest ago
        for (Slot& s : slots_) {
            if (s.used && s.hash == h) {
                if (now - s.last_written < interval_) {
                    ++s.held_back;
                    return std::nullopt;
                }
                const std::uint64_t held = s.held_back;
                s.held_back = 0;
                s.last_written = now;
                return held;
            }
            if (victim == nullptr || (victim->used && !s.used) ||
                (victim->used && s.last_written < victim->last_written)) {
                victim = &s;
            }
        }
        *victim = Slot{h, now, 0, true};
        return std::uint64_t{0};
    }

    /// Effect: the part of `line` that names where it comes from.
    static std::string_view site_of(std::string_view line) noexcept {
        const std::size_t at = line.find(" error:");
        return line.substr(0, at != std::string_view::npos ? at : 40);
    }

private:
    struct Slot {
        std::size_t hash = 0;
        typename Clock::time_point last_written{};
        std::uint64_t held_back = 0;
        bool used = false;
    };
    duration interval_;
    Clock clock_;
    std::array<Slot, Slots> slots_{};
};

/// A websocketpp logger policy (the `elog_type`/`alog_type` of a config; the
/// lean configs use it): websocketpp::log::basic's interface and line format,
/// with every error-log line a peer causes (is_peer_event()) written on the
/// debug channel, and repeated lines held back by a LineRateLimiter.
/// Channels are not masked at compile time: set_log_level() can turn on
/// debug at run time in any build, and a line on a channel that is off is
/// never built (static_test() answers for the channels on now).
///
/// Thread safety: as websocketpp::log::basic with the same concurrency policy.
template <class Concurrency, class Names>
class GuardLogger {
public:
    using level = ::websocketpp::log::level;
    using hint = ::websocketpp::log::channel_type_hint;

    explicit GuardLogger(hint::value h = hint::access)
        : out_(h == hint::error ? &std::cerr : &std::cout) {}
    explicit GuardLogger(std::ostream* out) : out_(out) {}
    GuardLogger(level, hint::value h) : GuardLogger(h) {}
    GuardLogger(level, std::ostream* out) : out_(out) {}
    GuardLogger(const GuardLogger& other)
        : dynamic_(other.dynamic_.load(std::memory_order_relaxed)), out_(other.out_) {}
    GuardLogger& operator=(const GuardLogger&) = delete;

    void set_ostream(std::ostream* out = &std::cout) {
        scoped_lock lock(mutex_);
        out_ = out;
    }
    void set_channels(level channels) {
        if (channels == Names::none) {
            dynamic_.store(0, std::memory_order_relaxed);
        } else {
            dynamic_.fetch_or(channels, std::memory_order_relaxed);
        }
    }
    void clear_channels(level channels) {
        dynamic_.fetch_and(~channels, std::memory_order_relaxed);
    }

    void write(level channel, const std::string& msg) { write(channel, std::string_view(msg)); }
    void write(level channel, const char* msg) { write(channel, std::string_view(msg)); }

    void write(level channel, std::string_view msg) {
        if (is_error_log && is_peer_event(msg)) {
            channel = ::websocketpp::log::elevel::devel;
        }
        if (!dynamic_test(channel)) {
            return;  // before the lock: a line nobody reads costs no contention
        }
        scoped_lock lock(mutex_);
        if (out_ == nullptr) {
            return;
        }
        std::optional<std::uint64_t> held{0};
        if (!is_debug(channel)) {
            held = limiter_.admit(msg);
            if (!held) {
                return;
            }
        }
        char stamp[24];
        const std::time_t t = std::time(nullptr);
        std::tm tm{};
        ::localtime_r(&t, &tm);
        std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        *out_ << '[' << stamp << "] [" << Names::channel_name(channel) << "] " << msg;
        if (*held > 0) {
            *out_ << " (" << *held << " like it held back)";
        }
        *out_ << '\n';
        out_->flush();
    }

    /// websocketpp builds a line only when this is true (its debug lines
    /// hex-dump every read): the channels on now, not every channel, so a
    /// line nobody reads is never built.
    bool static_test(level channel) const {
        return (channel & dynamic_.load(std::memory_order_relaxed)) != 0;
    }
    bool dynamic_test(level channel) const { return static_test(channel); }

private:
    using scoped_lock = typename Concurrency::scoped_lock_type;
    static constexpr bool is_error_log = std::is_same_v<Names, ::websocketpp::log::elevel>;

    static bool is_debug(level channel) {
        if constexpr (is_error_log) {
            return (channel &
                    (::websocketpp::log::elevel::devel | ::websocketpp::log::elevel::library)) != 0;
        } else {
            return true;  // access lines exist only at debug (access_channels())
        }
    }

    typename Concurrency::mutex_type mutex_;
    std::atomic<level> dynamic_{0};
    std::ostream* out_;
    LineRateLimiter<> limiter_;
};

}  // namespace wsguard::wspp
