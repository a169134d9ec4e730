// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The adapter's vocabulary: the options a ServerGuard enforces and the values
// it reports (send and broadcast outcomes, close details, counts). Apart from
// server_guard.hpp so that code which only configures a guard or reads its
// stats (an HTTP endpoint, a metrics writer) does not need the guard's story.
#pragma once

#include <wsguard/connection_registry.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/websocketpp/admission.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace wsguard::wspp {

/// What happens when a send would push a connection's buffered outgoing bytes
/// over GuardOptions::max_buffered_bytes.
enum class SlowConsumerPolicy {
    drop,  ///< the message is not queued for that connection; counted in dropped_messages
    close  ///< the connection is closed with 1008 "Slow consumer"; counted in closed_slow_consumer
};

/// Every limit the guard enforces. Defaults suit a chat-like server with many
/// mostly idle connections; each says why.
struct GuardOptions {
    /// Connections beyond this are accepted, then closed with 1013 "Try again
    /// later" so a client sees why. 10,000 fits comfortably in a few hundred MiB.
    std::size_t max_connections = 10000;
    /// Largest incoming message; a bigger one closes the connection with 1009.
    /// 1 MiB: websocketpp's 32 MB default lets one peer make the server buffer
    /// 32 MB before anything checks it.
    std::size_t max_message_bytes = 1 << 20;
    /// A connection with no application message for this long is closed with
    /// 1000 "Idle timeout": none received, nor (see sends_count_as_activity)
    /// sent. Pongs do not count. 5 min, Beast's suggestion for servers. Zero
    /// disables.
    std::chrono::milliseconds idle_timeout{300000};
    /// A message the server sends to a connection (send, send_prepared, a
    /// broadcast delivery; counted when attempted, dropped or not) restarts its
    /// idle clock: a member that only reads a busy room is not idle
    /// (uWebSockets counts "sending or getting a message" too). Pings and pongs
    /// never count, or a browser tab left open would never be idle; a stalled
    /// reader is found by its missing pongs. False: only received messages count.
    bool sends_count_as_activity = true;
    /// How often each connection is pinged. 30 s keeps NAT mappings alive and
    /// finds dead peers within a minute. Zero disables pings and dead-peer checks.
    std::chrono::milliseconds ping_interval{30000};
    /// A ping unanswered for this long means the peer is dead: the connection
    /// is terminated (no close handshake, the peer is gone). Zero: the ping
    /// interval, so a dead peer is gone within two intervals.
    std::chrono::milliseconds pong_timeout{0};
    /// A peer that connects but does not finish the opening handshake (HTTP
    /// request included) within this long is dropped: a slowloris holds a
    /// socket and a connection object only this long. 5 s, websocketpp's
    /// default. Zero disables (websocketpp's meaning), leaving stalls unbounded.
    std::chrono::milliseconds open_handshake_timeout{5000};
    /// Sockets accepted whose opening handshake has not finished (open or
    /// failed) yet, counted apart from max_connections: past this many, an
    /// accept loop that asks (Acceptor with note_accepted()) closes a new
    /// socket at once, unread. 1024: far more than honest clients have in
    /// flight (a handshake takes a round trip or two), while a slowloris
    /// holds at most 1024 sockets, each for open_handshake_timeout.
    std::size_t max_pending_handshakes = 1024;
    /// Per-connection bound on bytes queued in websocketpp's send queue. 1 MiB
    /// (Centrifugo's default): a few seconds of a busy room, not enough to
    /// matter at 10,000 connections unless many readers stall at once.
    std::size_t max_buffered_bytes = 1 << 20;
    /// What a send over max_buffered_bytes does. Drop suits chat (a stalled
    /// reader misses messages); close suits in-order streams.
    SlowConsumerPolicy slow_consumer = SlowConsumerPolicy::drop;
    /// Limits on rooms: per member, name length, total.
    RoomOptions rooms{};
    /// After this many connections closed since the last trim, the first tick
    /// that sees no new close (the wave is over) hands freed heap back to the
    /// system, so resident memory falls after a wave of disconnects instead of
    /// staying at the peak. Zero disables.
    std::size_t trim_after_closes = 256;
    /// After the on_open listeners ran, drop the header maps of the opening
    /// handshake's request and response, which websocketpp keeps for the
    /// connection's life (about 1 KB per connection with browser-like
    /// clients). Afterwards get_request_header() and friends return empty.
    /// For servers that hold many mostly idle connections.
    bool release_handshake_headers = false;
    /// websocketpp parses a URI per connection and keeps it for the
    /// connection's life (~130 B on the heap). Connections that asked for the
    /// same URI share one parsed copy (a URI is immutable once parsed) from a
    /// table of at most this many distinct URIs; entries no connection uses
    /// are dropped when the table is full. Connections whose URI finds no room
    /// keep their own. Zero disables sharing.
    std::size_t max_shared_uris = 64;

    // Admission: checked at the handshake, before a connection is opened
    // (admission.hpp). Each refusal is counted by
    // reason in GuardStats::refused.

    /// Largest HTTP request body websocketpp reads, upgrade or not (it reads
    /// the body before any handler runs, and keeps it for the connection's
    /// life): past it websocketpp answers 413 without reading it. An upgrade
    /// with any body is refused (400) anyway. 64 KiB: websocketpp's 32 MB
    /// default let one upgrade pin ~30 MiB for as long as it stayed open.
    std::size_t max_http_body_bytes = 64 * 1024;
    /// Longest request URI of an upgrade; longer is answered 414. 8 KiB, the
    /// common server default (nginx, Apache); websocketpp parses and keeps it.
    /// websocketpp answers 431 itself, before the guard sees the request, once
    /// the request line and headers pass its fixed 16000 bytes
    /// (http::max_header_size): a bound above about 16000 never applies.
    std::size_t max_uri_bytes = 8 * 1024;
    /// Origins whose browser pages may connect ("https://chat.example.com",
    /// scheme://host[:port], case-insensitive); any other Origin gets 403.
    /// validated() trims each entry's whitespace and one trailing '/', and
    /// drops a default port (":443" of https and wss, ":80" of http and ws),
    /// as browsers send none of them; an entry with a path or a '*', or
    /// without "scheme://host", is an error. A
    /// request without Origin (not a browser) is admitted: a non-browser
    /// client could send any Origin, so the list only stops other sites'
    /// pages from riding on a user's cookies (cross-site WebSocket
    /// hijacking). Empty (the default): every Origin, since the guard cannot
    /// know a deployment's own; set it when sessions use cookies.
    std::vector<std::string> allowed_origins{};
    /// WebSocket connections per peer IP address, counted from admission
    /// until the connection closes or fails; past it the handshake is
    /// answered 503 (plain HTTP requests are not counted). An IPv6 peer is
    /// counted by its /64 prefix, an IPv4-mapped one by its IPv4 address: an
    /// ISP gives one subscriber a whole /64, so counting per IPv6 address
    /// would let one host use 2^64 counts (peer_key() in admission.hpp). A
    /// peer whose address the transport cannot read (it is gone) is refused.
    /// Refused at the handshake, not with 1013 like max_connections, because
    /// a refused handshake never becomes an open WebSocket connection (no
    /// registry entry, no frame reading, no close handshake to wait for), and
    /// a close code such as 1013 needs an open connection. Zero (the default): no limit, because
    /// behind a reverse proxy or a carrier NAT every client has the same address; set it when peers
    /// connect directly. The address is the transport's (a proxy's X-Forwarded-For is not trusted).
    std::size_t max_connections_per_ip = 0;
};

namespace detail {

// One allowed_origins entry as a browser would send it: trimmed, without a
// trailing '/' and without its scheme's default port. Fails: std::invalid_argument.
inline std::string normalized_origin(const std::string& entry) {
    const auto fail = [&entry](const char* why) {
        throw std::invalid_argument("wsguard::ServerGuard: allowed_origins entry \"" + entry +
                                    "\" " + why + " (want scheme://host[:port])");
    };
    constexpr const char* space = " \t\r\n\f\v";
    const auto first = entry.find_first_not_of(space);
    if (first == std::string::npos) {
        fail("is empty");
    }
    std::string o = entry.substr(first, entry.find_last_not_of(space) - first + 1);
    if (o.back() == '/') {
        o.pop_back();
    }
    const auto scheme_end = o.find("://");
    if (scheme_end == std::string::npos || scheme_end == 0) {
        fail("has no scheme://");
    }
    if (o.size() == scheme_end + 3) {
        fail("has no host");
    }
    if (o.find('/', scheme_end + 3) != std::string::npos) {
        fail("has a path; an Origin never does");
    }
    if (o.find('*') != std::string::npos) {
        fail("has a '*'; every Origin is listed whole");
    }
    const std::string_view scheme(o.data(), scheme_end);
    const bool secure = equal_ignoring_case(scheme, "https") || equal_ignoring_case(scheme, "wss");
    const bool plain = equal_ignoring_case(scheme, "http") || equal_ignoring_case(scheme, "ws");
    const std::string_view port = secure ? ":443" : plain ? ":80" : "";
    if (!port.empty() && o.size() > scheme_end + 3 + port.size() &&
        std::string_view(o).substr(o.size() - port.size()) == port) {
        o.resize(o.size() - port.size());
    }
    return o;
}

}  // namespace detail

/// Effect: `o`, checked, with allowed_origins normalised (see there).
/// Fails: std::invalid_argument naming the first option that is zero but
/// must be at least 1 (max_connections, max_message_bytes, max_uri_bytes,
/// max_buffered_bytes, max_pending_handshakes), or an allowed_origins entry that is not an Origin.
/// Exceptions: std::invalid_argument, std::bad_alloc.
inline GuardOptions validated(GuardOptions o) {
    if (o.max_connections == 0) {
        throw std::invalid_argument("wsguard::ServerGuard: max_connections must be at least 1");
    }
    if (o.max_message_bytes == 0) {
        throw std::invalid_argument("wsguard::ServerGuard: max_message_bytes must be at least 1");
    }
    if (o.max_uri_bytes == 0) {
        throw std::invalid_argument("wsguard::ServerGuard: max_uri_bytes must be at least 1");
    }
    if (o.max_buffered_bytes == 0) {
        throw std::invalid_argument("wsguard::ServerGuard: max_buffered_bytes must be at least 1");
    }
    if (o.max_pending_handshakes == 0) {
        throw std::invalid_argument(
            "wsguard::ServerGuard: max_pending_handshakes must be at least 1");
    }
    for (std::string& origin : o.allowed_origins) {
        origin = detail::normalized_origin(origin);
    }
    return o;
}

/// What a send did. Every value but `sent` is also counted in stats().
enum class SendStatus {
    sent,                  ///< queued on the connection
    dropped,               ///< not queued: slow consumer under the drop policy
    closed_slow_consumer,  ///< not queued: slow consumer, the connection is being closed (1008)
    not_connected,         ///< unknown id, or the connection is closing or closed
    failed                 ///< websocketpp refused the send (the error is logged by websocketpp)
};

inline const char* to_string(SendStatus s) noexcept {
    switch (s) {
        case SendStatus::sent:
            return "sent";
        case SendStatus::dropped:
            return "dropped";
        case SendStatus::closed_slow_consumer:
            return "closed_slow_consumer";
        case SendStatus::not_connected:
            return "not_connected";
        case SendStatus::failed:
            return "failed";
    }
    return "unknown";
}

/// What one broadcast did, recipient by recipient.
struct BroadcastResult {
    std::size_t recipients = 0;  ///< members of the room, less the excluded sender
    std::size_t sent = 0;
    std::size_t dropped = 0;
    std::size_t closed = 0;         ///< closed as slow consumers
    std::size_t not_connected = 0;  ///< members whose connection was already closing
    /// The payload cannot be a frame (text that is not UTF-8, a control
    /// opcode): nobody, here or on another node, got it; the members are
    /// counted in GuardStats::send_failed.
    bool invalid_payload = false;
    /// What the guard's RoomBridge did with the message for the other nodes:
    /// local_only with the in-process default (one node), and for binary
    /// messages (a bridge carries text) and broadcast_local().
    PublishStatus bridge = PublishStatus::local_only;
};

/// How a connection ended, as the close event reports it.
struct CloseInfo {
    std::uint16_t local_code = 0;   ///< code we sent (or 1006 when terminated)
    std::uint16_t remote_code = 0;  ///< code the peer sent (1005 when none)
    std::string reason;             ///< the peer's reason, else ours
    bool failed = false;            ///< the connection never opened (handshake failed)
};

/// The close codes GuardStats::closes_by_code counts one by one; every other
/// code falls in its last slot, "other". A fixed table: a peer choosing codes
/// cannot grow it.
inline constexpr std::array<std::uint16_t, 10> counted_close_codes = {1000, 1001, 1002, 1003, 1006,
                                                                      1007, 1008, 1009, 1011, 1013};
inline constexpr std::size_t close_code_slots = counted_close_codes.size() + 1;

/// Effect: the slot of close code `code` in GuardStats::closes_by_code: its
/// index in counted_close_codes, else the last ("other").
constexpr std::size_t close_code_slot(std::uint16_t code) noexcept {
    for (std::size_t i = 0; i < counted_close_codes.size(); ++i) {
        if (counted_close_codes[i] == code) {
            return i;
        }
    }
    return counted_close_codes.size();
}

/// A snapshot of every count the guard holds.
struct GuardStats {
    std::size_t connections = 0;  ///< open and registered
    std::size_t rooms = 0;
    std::size_t memberships = 0;
    std::size_t listeners = 0;  ///< ScopedListeners attached to the guard's events
    /// Sum of get_buffered_amount() over connections at the last
    /// ServerGuard::queued_bytes_scan() (0 before the first): a scan is O(n),
    /// so stats() reports the last one instead of walking every connection.
    std::size_t queued_bytes = 0;
    std::uint64_t dropped_messages = 0;
    std::uint64_t rejected_connections = 0;  ///< refused at max_connections (1013)
    std::size_t pending_handshakes = 0;      ///< accepted, handshake not finished (note_accepted)
    std::uint64_t refused_pending = 0;       ///< closed unread at max_pending_handshakes
    std::uint64_t closed_slow_consumer = 0;  ///< 1008
    std::uint64_t closed_idle = 0;           ///< 1000 "Idle timeout"
    std::uint64_t terminated_dead = 0;       ///< missed a pong
    std::uint64_t closed_oversized = 0;      ///< 1009
    std::uint64_t closed_shutdown = 0;       ///< 1001
    std::uint64_t opened = 0;
    std::uint64_t closed = 0;
    /// Admitted connections that closed, by the code this side sent (the
    /// peer's echoed, or 1006 when the TCP connection ended without a close
    /// handshake); slots as close_code_slot(). Sums to `closed`.
    std::array<std::uint64_t, close_code_slots> closes_by_code{};
    std::uint64_t failed = 0;  ///< handshakes that never opened
    std::uint64_t messages_in = 0;
    std::uint64_t messages_out = 0;  ///< successful sends, broadcast deliveries included
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t pings_sent = 0;
    std::uint64_t pongs_received = 0;
    std::uint64_t memory_trims = 0;
    std::uint64_t send_not_connected = 0;  ///< sends to an unknown, closing or closed connection
    std::uint64_t send_failed = 0;         ///< sends websocketpp refused for another reason
    std::size_t shared_uris = 0;           ///< distinct parsed URIs the connections share
    bool shutting_down = false;
    /// Handshakes refused at admission, by reason (admission.hpp).
    RefusalStats refused{};
    /// Addresses with an admitted connection (with max_connections_per_ip;
    /// 0 without): returns to 0 once every connection ended.
    std::size_t peer_addresses = 0;
    RegistryStats registry{};
    RoomStats room_index{};
};

}  // namespace wsguard::wspp
