// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Handshake admission: what ServerGuard checks in websocketpp's validate
// handler, before the connection opens (no registry entry, no frame reads,
// no close handshake). In order:
//  1. shutting down: 503;
//  2. RFC 6455 only (Sec-WebSocket-Version: 13): Hixie-76 (draft-00) and the
//     hybi drafts websocketpp still speaks are answered 426 Upgrade Required
//     with Sec-WebSocket-Version: 13 (RFC 6455 section 4.4). A version
//     websocketpp has no processor for (9, 14, ...) never reaches the guard:
//     websocketpp answers it 400 itself, listing "0,7,8,13"; it is counted
//     as a version refusal all the same (see end());
//  3. no request body on an upgrade (Content-Length > 0 or any
//     Transfer-Encoding): 400. websocketpp keeps a request's body for the
//     connection's life, and a chunked body would be read as frames;
//  4. the request URI within max_uri_bytes: 414;
//  5. the Origin in the allow-list, when there is one: 403;
//  6. connections per IP address within max_connections_per_ip: 503 (see
//     peer_key() for what an address is);
//  7. the user's hook (ServerGuard::set_admission_hook), which may refuse
//     with a 4xx or 5xx status; a hook that throws refuses with 500.
// Every refusal is counted by reason. The pure parts (check_handshake,
// peer_address, peer_key, PeerCounts) need no websocketpp connection: they are unit
// tested alone (tests/test_admission_policy.cpp).
#pragma once

#include <websocketpp/common/connection_hdl.hpp>
#include <websocketpp/error.hpp>
#include <websocketpp/http/constants.hpp>

#include <array>
#include <atomic>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#if __has_include(<arpa/inet.h>)
#include <arpa/inet.h>
#include <sys/socket.h>
#define WSGUARD_ADMISSION_HAS_INET_PTON 1
#endif

namespace wsguard::wspp {

/// Why a handshake was refused; each reason is counted in GuardStats::refused.
enum class RefusalReason : std::uint8_t {
    version,        ///< not RFC 6455 (Sec-WebSocket-Version other than 13): 426
    body,           ///< an upgrade with a body (400), or any request body over max_http_body_bytes
                    ///< (websocketpp's 413)
    uri_too_long,   ///< request URI over max_uri_bytes: 414
    origin,         ///< Origin not in allowed_origins: 403
    per_ip,         ///< max_connections_per_ip reached for the peer's address: 503
    user_hook,      ///< the admission hook refused, with its own status, or threw: 500
    shutting_down,  ///< shutdown() began: 503
};

inline constexpr std::size_t refusal_reason_count = 7;

inline const char* to_string(RefusalReason r) noexcept {
    switch (r) {
        case RefusalReason::version:
            return "version";
        case RefusalReason::body:
            return "body";
        case RefusalReason::uri_too_long:
            return "uri_too_long";
        case RefusalReason::origin:
            return "origin";
        case RefusalReason::per_ip:
            return "per_ip";
        case RefusalReason::user_hook:
            return "user_hook";
        case RefusalReason::shutting_down:
            return "shutting_down";
    }
    return "unknown";
}

/// Handshakes refused, by reason (index: RefusalReason).
struct RefusalStats {
    std::array<std::uint64_t, refusal_reason_count> by_reason{};

    std::uint64_t of(RefusalReason r) const noexcept {
        return by_reason[static_cast<std::size_t>(r)];
    }
    std::uint64_t total() const noexcept {
        std::uint64_t t = 0;
        for (std::uint64_t n : by_reason) {
            t += n;
        }
        return t;
    }
};

/// What an admission hook decided. A refusal answers the handshake with
/// `status` and `reason` as the status line's phrase and body. A status
/// outside 400..599 is answered 403: websocketpp opens the connection on a
/// 101, and a 1xx, 2xx or 3xx would tell the client it was not refused.
struct AdmissionVerdict {
    bool admitted = true;
    std::uint16_t status = 0;
    std::string reason;

    static AdmissionVerdict admit() { return {}; }
    static AdmissionVerdict refuse(std::uint16_t status, std::string reason) {
        return {false, status, std::move(reason)};
    }
};

/// The user's check, run after the guard's own on every handshake they let
/// through. It is given the connection's handle (get_con_from_hdl() reads the
/// request) and runs on the io thread that read the request. What it throws
/// refuses the handshake with 500 (websocketpp would not catch it).
using AdmissionHook = std::function<AdmissionVerdict(::websocketpp::connection_hdl)>;

/// One refused handshake: why, the HTTP status and a short text.
struct Refusal {
    RefusalReason reason;
    std::uint16_t status;
    std::string message;
};

/// The parts of an upgrade request admission reads (empty: header absent).
struct HandshakeRequest {
    std::string_view version;            ///< Sec-WebSocket-Version
    std::string_view content_length;     ///< Content-Length
    std::string_view transfer_encoding;  ///< Transfer-Encoding
    std::string_view uri;                ///< request target, as sent
    std::string_view origin;             ///< Origin
};

/// The request checks of GuardOptions (see there for each default).
struct AdmissionPolicy {
    std::size_t max_uri_bytes = 8 * 1024;
    std::vector<std::string> allowed_origins;  ///< empty: any Origin
};

namespace detail {

inline bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(a[i])) !=
            std::tolower(static_cast<unsigned char>(b[i]))) {
            return false;
        }
    }
    return true;
}

// A Content-Length of only zeros declares no body; anything else (a number,
// or a value that is not one) may carry one.
inline bool declares_body(std::string_view content_length) noexcept {
    return content_length.find_first_not_of('0') != std::string_view::npos;
}

}  // namespace detail

/// Effect: whether `origin` is one of `allowed` (ASCII case-insensitive, as
/// scheme and host are). An empty list allows every Origin.
/// Never fails. Exceptions: nothrow.
inline bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
    if (allowed.empty()) {
        return true;
    }
    for (const std::string& a : allowed) {
        if (detail::equal_ignoring_case(origin, a)) {
            return true;
        }
    }
    return false;
}

/// Effect: the guard's request checks (steps 2 to 5 of the header comment)
/// applied to `r`: the first that fails, or nullopt when all pass. A request
/// without Origin passes the allow-list: browsers always send one, so its
/// absence means a non-browser client, which could send any Origin anyway.
/// Never fails. Exceptions: std::bad_alloc (the refusal's text).
inline std::optional<Refusal> check_handshake(const HandshakeRequest& r,
                                              const AdmissionPolicy& policy) {
    if (r.version != "13") {
        return Refusal{RefusalReason::version, 426, "Upgrade Required"};
    }
    if (detail::declares_body(r.content_length) || !r.transfer_encoding.empty()) {
        return Refusal{RefusalReason::body, 400, "Bad Request: no body on an upgrade"};
    }
    if (r.uri.size() > policy.max_uri_bytes) {
        return Refusal{RefusalReason::uri_too_long, 414, "URI Too Long"};
    }
    if (!r.origin.empty() && !origin_allowed(r.origin, policy.allowed_origins)) {
        return Refusal{RefusalReason::origin, 403, "Forbidden: Origin not allowed"};
    }
    return std::nullopt;
}

/// Effect: the address part of a transport's remote endpoint text:
/// "192.0.2.1:5000" -> "192.0.2.1", "[2001:db8::1]:5000" -> "2001:db8::1";
/// text without a port (the iostream transport's) is returned whole.
/// Never fails. Exceptions: nothrow.
inline std::string_view peer_address(std::string_view endpoint) noexcept {
    const auto colon = endpoint.rfind(':');
    if (colon == std::string_view::npos || colon + 1 == endpoint.size() ||
        endpoint.find_first_not_of("0123456789", colon + 1) != std::string_view::npos) {
        return endpoint;
    }
    std::string_view host = endpoint.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        return host.substr(1, host.size() - 2);
    }
    // A bare IPv6 address without a port ends in digits after its last colon.
    return host.find(':') == std::string_view::npos ? host : endpoint;
}

/// Effect: the key a peer's connections are counted under, from a
/// transport's remote endpoint text: the address (peer_address()), with an
/// IPv4-mapped IPv6 address as its IPv4 address ("::ffff:192.0.2.1" ->
/// "192.0.2.1") and any other IPv6 address as its /64 prefix
/// ("2001:db8:1:2::5" -> "2001:db8:1:2::/64"): one subscriber is commonly
/// given a whole /64, so keying per address would give it 2^64 keys. Text
/// that is not an address (the iostream transport's) is the key whole, as is
/// everything where <arpa/inet.h> is missing. nullopt for websocketpp's
/// "Unknown", what the asio transport says when the peer is gone already
/// (getpeername failed): all such peers would otherwise share one key.
/// Never fails. Exceptions: std::bad_alloc.
inline std::optional<std::string> peer_key(std::string_view endpoint) {
    if (endpoint == "Unknown") {
        return std::nullopt;
    }
    const std::string_view address = peer_address(endpoint);
#ifdef WSGUARD_ADMISSION_HAS_INET_PTON
    if (address.find(':') != std::string_view::npos) {
        // inet_pton refuses a zone ("fe80::1%eth0"); the prefix has none anyway.
        const std::string text(address.substr(0, address.find('%')));
        unsigned char bytes[16] = {};
        char out[INET6_ADDRSTRLEN] = {};
        if (::inet_pton(AF_INET6, text.c_str(), bytes) == 1) {
            static constexpr unsigned char v4_mapped[12] = {0, 0, 0, 0, 0,    0,
                                                            0, 0, 0, 0, 0xff, 0xff};
            bool mapped = true;
            for (std::size_t i = 0; i < 12; ++i) {
                mapped = mapped && bytes[i] == v4_mapped[i];
            }
            if (mapped) {
                if (::inet_ntop(AF_INET, bytes + 12, out, sizeof out) != nullptr) {
                    return std::string(out);
                }
            } else {
                for (std::size_t i = 8; i < 16; ++i) {
                    bytes[i] = 0;
                }
                if (::inet_ntop(AF_INET6, bytes, out, sizeof out) != nullptr) {
                    return std::string(out) + "/64";
                }
            }
        }
    }
#endif
    return std::string(address);
}

/// Connections per peer address, each counted from admission until its close
/// or fail. An address is erased when its last connection ends, so the table
/// holds only addresses with a live connection.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe with a real
/// Lock; Unsafe with NullMutex.
template <class Lock>
class PeerCounts {
public:
    /// Effect: counts connection `con` against `address` unless that address
    /// already has `limit` connections. A connection counted already is not
    /// counted again. Fails: false at the limit. Exceptions: std::bad_alloc.
    bool try_acquire(const void* con, std::string_view address, std::size_t limit) {
        std::lock_guard<Lock> lock(mutex_);
        if (owners_.count(con) != 0) {
            return true;
        }
        std::string key(address);
        auto it = counts_.find(key);
        bool added = false;
        if (it == counts_.end()) {
            if (limit == 0) {
                return false;
            }
            it = counts_.emplace(std::move(key), 0).first;
            added = true;
        } else if (it->second >= limit) {
            return false;
        }
        // Owner first, count after: a bad_alloc here must leave no count behind.
        // Pointers to elements stay valid across rehashing; iterators do not.
        try {
            owners_.emplace(con, &*it);
        } catch (...) {
            if (added) {
                counts_.erase(it);
            }
            throw;
        }
        ++it->second;
        return true;
    }

    /// Effect: ends `con`'s count, if it has one. Idempotent.
    /// Never fails. Exceptions: nothrow, but for std::system_error from a real Lock.
    void release(const void* con) {
        std::lock_guard<Lock> lock(mutex_);
        const auto owner = owners_.find(con);
        if (owner == owners_.end()) {
            return;
        }
        auto* entry = owner->second;
        owners_.erase(owner);
        if (--entry->second == 0) {
            counts_.erase(entry->first);
        }
    }

    /// Effect: addresses with at least one counted connection.
    std::size_t addresses() const {
        std::lock_guard<Lock> lock(mutex_);
        return counts_.size();
    }

    /// Effect: connections counted, all addresses together.
    std::size_t connections() const {
        std::lock_guard<Lock> lock(mutex_);
        return owners_.size();
    }

    /// Effect: connections counted against `address`.
    std::size_t count(std::string_view address) const {
        std::lock_guard<Lock> lock(mutex_);
        const auto it = counts_.find(std::string(address));
        return it == counts_.end() ? 0 : it->second;
    }

private:
    using Counts = std::unordered_map<std::string, std::size_t>;
    mutable Lock mutex_;
    Counts counts_;
    std::unordered_map<const void*, Counts::value_type*> owners_;
};

/// The guard's admission: the checks above on a websocketpp connection, the
/// per-address table, the user's hook and the refusal counts. ServerGuard
/// calls admit() from its validate handler and end() from its close and fail
/// handlers.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe with a real
/// Lock; Unsafe with NullMutex (use from the io thread only).
template <class Lock>
class HandshakeAdmission {
public:
    HandshakeAdmission(AdmissionPolicy policy, std::size_t max_connections_per_ip)
        : policy_(std::move(policy)), per_ip_limit_(max_connections_per_ip) {}

    /// Effect: from now on `hook` runs after the guard's checks on every
    /// handshake they admit; an empty hook removes it.
    /// Never fails. Exceptions: std::bad_alloc.
    void set_hook(AdmissionHook hook) {
        auto shared = hook ? std::make_shared<const AdmissionHook>(std::move(hook)) : nullptr;
        std::lock_guard<Lock> lock(hook_mutex_);
        hook_ = std::move(shared);
    }

    /// Effect: runs the checks on `con`'s request; on a refusal sets the
    /// response (status, reason, body, and Sec-WebSocket-Version: 13 for a
    /// version refusal), counts it and returns false. An admitted connection
    /// stays counted against its address until end(). A hook that throws
    /// refuses with 500 "Internal Server Error", counted as user_hook: it
    /// runs in websocketpp's read handler, which does not catch, so the
    /// exception would leave io_context::run() and stop the server.
    /// Fails: false for a refusal. Exceptions: std::bad_alloc.
    template <class Connection>
    bool admit(Connection& con, const ::websocketpp::connection_hdl& hdl, bool shutting_down) {
        std::optional<Refusal> refusal;
        if (shutting_down) {
            refusal =
                Refusal{RefusalReason::shutting_down, 503, "Service Unavailable: shutting down"};
        } else {
            const auto& req = con.get_request();
            refusal = check_handshake(HandshakeRequest{req.get_header("Sec-WebSocket-Version"),
                                                       req.get_header("Content-Length"),
                                                       req.get_header("Transfer-Encoding"),
                                                       req.get_uri(), req.get_header("Origin")},
                                      policy_);
        }
        if (!refusal && per_ip_limit_ > 0) {
            const auto key = peer_key(con.get_remote_endpoint());
            if (!key) {
                // The peer is gone: nothing to answer, but it must not share a key.
                refusal = Refusal{RefusalReason::per_ip, 503,
                                  "Service Unavailable: peer address unknown"};
            } else if (!peers_.try_acquire(&con, *key, per_ip_limit_)) {
                refusal = Refusal{RefusalReason::per_ip, 503,
                                  "Service Unavailable: too many connections from this address"};
            }
        }
        if (!refusal) {
            std::shared_ptr<const AdmissionHook> hook;
            {
                std::lock_guard<Lock> lock(hook_mutex_);
                hook = hook_;
            }
            if (hook) {
                AdmissionVerdict v;
                bool threw = false;
                try {
                    v = (*hook)(hdl);
                } catch (...) {
                    threw = true;  // nothing that allocates here: the count is released first
                }
                if (threw || !v.admitted) {
                    peers_.release(&con);
                    refusal =
                        threw ? Refusal{RefusalReason::user_hook, 500, "Internal Server Error"}
                              : Refusal{RefusalReason::user_hook, v.status, std::move(v.reason)};
                }
            }
        }
        if (!refusal) {
            return true;
        }
        count(refusal->reason);
        respond(con, *refusal);
        return false;
    }

    /// Effect: `con` closed or failed: its address count ends. A failed
    /// handshake that websocketpp itself answered 413 (a body over
    /// max_http_body_bytes, read before any handler runs) is counted as a
    /// body refusal, and one it answered 400 naming the versions it speaks
    /// (a version it has no processor for) as a version refusal. A refusal
    /// of admit() (which websocketpp fails with error::rejected) was counted
    /// there already, whatever its status.
    /// Never fails. Exceptions: nothrow, but for std::system_error from a real Lock.
    template <class Connection>
    void end(Connection& con, bool failed) {
        peers_.release(&con);
        if (!failed ||
            con.get_ec() == ::websocketpp::error::make_error_code(::websocketpp::error::rejected)) {
            return;
        }
        const auto status = con.get_response_code();
        if (status == ::websocketpp::http::status_code::request_entity_too_large) {
            count(RefusalReason::body);
        } else if (status == ::websocketpp::http::status_code::bad_request &&
                   !con.get_response_header("Sec-WebSocket-Version").empty()) {
            count(RefusalReason::version);
        }
    }

    /// Effect: the refusal counts so far. Never fails. Exceptions: nothrow.
    RefusalStats refused() const noexcept {
        RefusalStats s;
        for (std::size_t i = 0; i < refusal_reason_count; ++i) {
            s.by_reason[i] = refused_[i].load(std::memory_order_relaxed);
        }
        return s;
    }

    /// Effect: addresses with an admitted connection (0 without a per-IP limit).
    std::size_t peer_addresses() const { return peers_.addresses(); }

    const PeerCounts<Lock>& peers() const noexcept { return peers_; }

private:
    void count(RefusalReason r) noexcept {
        refused_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    }

    template <class Connection>
    static void respond(Connection& con, const Refusal& r) {
        // A status line cannot carry CR or LF: a hook's reason could.
        std::string phrase = r.message;
        for (char& c : phrase) {
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
                c = ' ';
            }
        }
        // Only an error status refuses: websocketpp opens the connection on 101.
        const auto status = r.status >= 400 && r.status <= 599 ? r.status : 403;
        con.set_status(static_cast<::websocketpp::http::status_code::value>(status), phrase);
        if (r.reason == RefusalReason::version) {
            con.replace_header("Sec-WebSocket-Version", "13");
        }
        con.set_body(phrase + "\n");
    }

    const AdmissionPolicy policy_;
    const std::size_t per_ip_limit_;
    PeerCounts<Lock> peers_;
    mutable Lock hook_mutex_;
    std::shared_ptr<const AdmissionHook> hook_;
    std::array<std::atomic<std::uint64_t>, refusal_reason_count> refused_{};
};

}  // namespace wsguard::wspp
