// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RoomBridge: the seam between one server's rooms and the rooms of the other
// servers behind the same load balancer. One process holds one machine's
// connections; when a room's members are spread over several nodes, a message
// sent on one node must reach the members on every node, once. The bridge
// carries it: publish() hands a room message (already encoded, the same bytes
// the local members got) to the other nodes, and a bridge delivers what other
// nodes published to this node's members through its deliver function.
//
// A ServerGuard owns its bridge's use: every room broadcast through the guard
// is published to it (ServerGuard::set_bridge), and a bridge hands what other
// nodes published to the guard's broadcast_local(), which publishes nothing.
// LocalBridge is the guard's default: one node, no broker, nothing to carry.
// RedisBridge (wsguard/redis/redis_bridge.hpp, the only header that needs
// hiredis) carries messages over Redis pub/sub.
#pragma once

#include <wsguard/bounded_message_queue.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace wsguard::wspp {

/// Where a bridge stands with its broker.
enum class BridgeState {
    local,         ///< no broker: LocalBridge, messages stay on this node
    connecting,    ///< connecting (or reconnecting) to the broker
    connected,     ///< connected: publishes go out, subscriptions are live
    disconnected,  ///< lost the broker; a reconnect is scheduled (backoff)
    stopped        ///< stop() was called; nothing goes out any more
};

/// Effect: the enumerator's name, e.g. "connected"; "unknown" outside the enum.
/// Never fails. Thread safety: Safe. Exceptions: nothrow.
inline const char* to_string(BridgeState s) noexcept {
    switch (s) {
        case BridgeState::local:
            return "local";
        case BridgeState::connecting:
            return "connecting";
        case BridgeState::connected:
            return "connected";
        case BridgeState::disconnected:
            return "disconnected";
        case BridgeState::stopped:
            return "stopped";
    }
    return "unknown";
}

/// What publish() did with a message for the other nodes. Every value but
/// `queued` and `local_only` is also counted in BridgeStats::failed.
enum class PublishStatus {
    queued,                 ///< on its way to the broker (stored in the outgoing queue)
    queued_dropped_oldest,  ///< queued after dropping older messages (queue full)
    local_only,             ///< no broker (LocalBridge): there are no other nodes to reach
    rejected_too_large,     ///< larger than the outgoing queue's max_bytes; not sent
    stopped                 ///< the bridge was stopped; not sent
};

/// Effect: the enumerator's name, e.g. "queued"; "unknown" outside the enum.
/// Never fails. Thread safety: Safe. Exceptions: nothrow.
inline const char* to_string(PublishStatus s) noexcept {
    switch (s) {
        case PublishStatus::queued:
            return "queued";
        case PublishStatus::queued_dropped_oldest:
            return "queued_dropped_oldest";
        case PublishStatus::local_only:
            return "local_only";
        case PublishStatus::rejected_too_large:
            return "rejected_too_large";
        case PublishStatus::stopped:
            return "stopped";
    }
    return "unknown";
}

/// Why publishes never reached the broker, one count per cause; they sum to
/// BridgeStats::failed.
struct PublishFailures {
    std::uint64_t too_large = 0;        ///< larger than the outgoing queue's max_bytes
    std::uint64_t queue_full = 0;       ///< dropped (oldest first) from the full outgoing queue
    std::uint64_t expired = 0;          ///< waited in the queue longer than its max_age
    std::uint64_t connection_lost = 0;  ///< in flight when the connection dropped or timed out
    std::uint64_t refused = 0;          ///< the broker answered with an error
    std::uint64_t stopped = 0;          ///< published after stop(), or queued when it came
};

/// A snapshot of every count a bridge holds. Balance, once the queue is empty
/// and nothing is in flight: publish_calls == published + failed (+ local_only
/// for LocalBridge).
struct BridgeStats {
    BridgeState state = BridgeState::local;
    std::string node_id;                 ///< this node's id on the wire ("" for LocalBridge)
    std::size_t rooms = 0;               ///< rooms with members on this node
    std::size_t subscriptions = 0;       ///< rooms the broker confirmed this node follows
    std::uint64_t publish_calls = 0;     ///< calls of publish()
    std::uint64_t local_only = 0;        ///< publishes with no broker to go to (LocalBridge)
    std::uint64_t published = 0;         ///< messages the broker acknowledged
    std::uint64_t in_flight = 0;         ///< sent to the broker, not acknowledged yet
    std::uint64_t received = 0;          ///< messages from the broker, own echoes included
    std::uint64_t delivered = 0;         ///< received from other nodes and handed to deliver
    std::uint64_t ignored_own = 0;       ///< received messages this node published itself
    std::uint64_t malformed = 0;         ///< received messages not in the wire format
    std::uint64_t failed = 0;            ///< messages that never reached the broker (every cause)
    std::uint64_t failed_in_flight = 0;  ///< of failed: lost with the connection or refused by it
    std::uint64_t dropped = 0;           ///< of failed: dropped by the queue (overflow or age)
    std::uint64_t connects = 0;          ///< successful connections to the broker
    std::uint64_t disconnects = 0;       ///< established connections lost
    std::uint64_t connect_failures = 0;  ///< connection attempts that failed or timed out
    QueueStats queue{};                  ///< the outgoing queue (zeros for LocalBridge)
    PublishFailures failures{};          ///< failed, by cause
    std::uint64_t in_flight_bytes = 0;   ///< bytes of the commands in flight
    std::uint64_t invalid_utf8 = 0;      ///< received text that is not UTF-8: dropped
    std::uint64_t not_followed = 0;      ///< received for a room with no member here: skipped
    std::uint64_t protocol_errors = 0;   ///< connections dropped for a reply outside the protocol
    std::uint64_t reply_timeouts = 0;    ///< connections dropped for a reply that came too late
    /// How long the broker has been unusable (since the bridge started, or since
    /// the connection was lost); zero while connected, and for LocalBridge.
    std::chrono::milliseconds down_for{0};
    std::string last_error;  ///< why the last connection failed or dropped; "" if none
};

/// Effect: true when the bridge can carry room messages: no broker needed
/// (local) or connected. What a readiness probe asks.
/// Never fails. Thread safety: Safe. Exceptions: nothrow.
inline bool bridge_ready(const BridgeStats& s) noexcept {
    return s.state == BridgeState::local || s.state == BridgeState::connected;
}

/// Effect: hands `payload`, published by another node to `room`, to this
/// node's members of `room` (typically guard.broadcast_local(room, payload, 0)).
/// Runs under the bridge's lock: it must not publish (guard.broadcast() would
/// take that lock again).
using DeliverFunction = std::function<void(const std::string& room, std::string_view payload)>;

/// Effect: a DeliverFunction that broadcasts to `guard`'s local members of the
/// room, excluding nobody (the sender is on another node), and publishes
/// nothing back (broadcast_local). `guard` must outlive the function.
/// Never fails. Thread safety: as Guard::broadcast_local. Exceptions: std::bad_alloc.
template <class Guard>
DeliverFunction broadcast_to(Guard& guard) {
    return [&guard](const std::string& room, std::string_view payload) {
        guard.broadcast_local(room, payload, 0);
    };
}

/// The bridge interface: publish a room message to the other nodes; deliver
/// (through the DeliverFunction the implementation was given) what they publish.
///
/// Thread safety: Distinct objects: Safe. Shared objects: as the implementation
/// says (LocalBridge: Unsafe; RedisBridge: its lock policy).
class RoomBridge {
public:
    virtual ~RoomBridge() = default;

    /// Effect: hands `payload`, already encoded (the bytes this node's members
    /// of `room` got), to every other node's members of `room`.
    /// Fails: by the returned status (see PublishStatus); never blocks.
    /// Thread safety: as the implementation. Exceptions: std::bad_alloc.
    virtual PublishStatus publish(const std::string& room, std::string_view payload) = 0;

    /// Effect: stops for good: drops the broker connection and every timer so an
    /// io loop with nothing else to do can return. Idempotent.
    /// Never fails. Thread safety: as the implementation. Exceptions: nothrow.
    virtual void stop() noexcept = 0;

    /// Effect: a snapshot of every count (see BridgeStats).
    /// Never fails. Thread safety: as the implementation. Exceptions: std::bad_alloc.
    virtual BridgeStats stats() const = 0;

protected:
    RoomBridge() = default;
    RoomBridge(const RoomBridge&) = default;
    RoomBridge& operator=(const RoomBridge&) = default;
};

/// The in-process default: one node, no broker. publish() has nobody to reach
/// and only counts; nothing is ever delivered from elsewhere.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe (relaxed
/// counters: a guard's broadcasts publish from every io thread).
class LocalBridge final : public RoomBridge {
public:
    /// Effect: counts the call; returns local_only (stopped after stop()).
    /// Never fails. Thread safety: Safe. Exceptions: nothrow.
    PublishStatus publish(const std::string&, std::string_view) noexcept override {
        publish_calls_.fetch_add(1, std::memory_order_relaxed);
        if (stopped_.load(std::memory_order_relaxed)) {
            failed_.fetch_add(1, std::memory_order_relaxed);
            return PublishStatus::stopped;
        }
        local_only_.fetch_add(1, std::memory_order_relaxed);
        return PublishStatus::local_only;
    }

    /// Effect: later publishes return stopped. Never fails. Thread safety: Safe.
    /// Exceptions: nothrow.
    void stop() noexcept override { stopped_.store(true, std::memory_order_relaxed); }

    /// Effect: state local (or stopped), the publish counts, zeros elsewhere.
    /// Never fails. Thread safety: Safe. Exceptions: std::bad_alloc (never in practice).
    BridgeStats stats() const override {
        BridgeStats s;
        s.state =
            stopped_.load(std::memory_order_relaxed) ? BridgeState::stopped : BridgeState::local;
        s.publish_calls = publish_calls_.load(std::memory_order_relaxed);
        s.local_only = local_only_.load(std::memory_order_relaxed);
        s.failed = failed_.load(std::memory_order_relaxed);
        return s;
    }

private:
    std::atomic<std::uint64_t> publish_calls_{0};
    std::atomic<std::uint64_t> local_only_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<bool> stopped_{false};
};

}  // namespace wsguard::wspp
