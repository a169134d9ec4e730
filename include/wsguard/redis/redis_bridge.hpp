// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RedisBridge: rooms that span several servers, through Redis pub/sub. Needs
// hiredis (Debian: libhiredis-dev) and standalone asio; runs on the endpoint's
// io_context, so nothing blocks the io thread and no thread is added.
//
// Subscriptions follow membership: a node SUBSCRIBEs to a room's channel when
// the room's first local member joins (ServerGuard::on_room_created) and
// UNSUBSCRIBEs when its last local member leaves (on_room_emptied), so Redis
// holds exactly the rooms that have members on each node.
//
// Wire format (the contract between nodes; keep it stable):
//   channel  "wsguard:room:" + room name (the prefix is configurable)
//   message  origin node id + "\n" + the encoded payload, byte for byte
// A node id never contains "\n"; the payload may contain anything. A node
// hears its own publishes back and drops them (origin == its id): its own
// members got the message locally, so every member gets it exactly once.
//
// Failure: local rooms never depend on Redis. When Redis is unreachable or the
// connection drops, messages wait in a BoundedMessageQueue (bounded by count,
// bytes and age; drops counted), commands in flight are counted as failed, and
// the bridge reconnects with capped exponential backoff and re-subscribes to
// every room that has local members. Delivery is at most once, as Redis pub/sub
// itself: what a node misses while it is disconnected is lost.
//
// Redis is a peer like any other: what it sends is validated before use. A
// reply of the wrong shape, a parse error or a reply past max_reply_bytes
// drops that connection (protocol_errors) and the bridge reconnects; a
// command unanswered for reply_timeout does the same (reply_timeouts), so a
// stopped Redis holds at most max_in_flight_bytes plus the queue of this
// node's memory. Text from another node must be UTF-8 (invalid_utf8
// otherwise) and is read only for rooms with members here (not_followed).
// The connections are RedisLinks (redis_link.hpp): nothing blocks the io
// thread, name resolution included.
#pragma once

#include <wsguard/bounded_message_queue.hpp>
#include <wsguard/null_mutex.hpp>
#include <wsguard/redis/redis_address.hpp>
#include <wsguard/redis/redis_link.hpp>
#include <wsguard/scoped_listener.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/hiredis.h>
#include <websocketpp/utf8_validator.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace wsguard::wspp {

/// Effect: "<host name>-<pid>", unique per process on a machine; the default
/// node id. Fails: never ("node-<pid>" if the host name is unavailable).
/// Thread safety: Safe. Exceptions: std::bad_alloc.
inline std::string default_node_id() {
    char host[256] = {};
    std::string name = ::gethostname(host, sizeof host - 1) == 0 && host[0] ? host : "node";
    return name + "-" + std::to_string(static_cast<long long>(::getpid()));
}

/// Every limit and timing of a RedisBridge, each default explained.
struct RedisBridgeOptions {
    RedisAddress address{};
    /// This node's id on the wire. Empty: default_node_id(). Must not contain '\n'.
    std::string node_id;
    /// Channels are prefix + room name; nodes that share a Redis but not rooms
    /// (two applications) use different prefixes.
    std::string channel_prefix = "wsguard:room:";
    /// Messages waiting for Redis. 4096 messages / 4 MiB: a few seconds of a busy
    /// node; drop_oldest because the newest chat message is the useful one; 1 s
    /// max age so a message is not delivered long after the room moved on.
    QueueOptions queue{4096, 4u << 20, OverflowPolicy::drop_oldest, std::chrono::seconds(1)};
    /// PUBLISH commands sent but not acknowledged at most; the rest wait in the
    /// queue. Bounds hiredis' own (unbounded) output buffer. 1024 keeps loopback
    /// and LAN round trips busy.
    std::size_t max_in_flight = 1024;
    /// First reconnect delay; doubles per failed attempt up to reconnect_max.
    std::chrono::milliseconds reconnect_min{100};
    /// 1 s: remote delivery resumes within about a second of Redis returning.
    std::chrono::milliseconds reconnect_max{1000};
    /// A connection attempt (name resolution, TCP connect, AUTH and a PING
    /// answered) that takes longer is abandoned and retried with backoff.
    std::chrono::milliseconds connect_timeout{1000};
    /// Bytes of PUBLISH commands sent but not acknowledged at most, with
    /// max_in_flight: what a stalled Redis can hold of this node's memory
    /// beyond the queue. 1 MiB.
    std::size_t max_in_flight_bytes = 1u << 20;
    /// A command unanswered for this long means the connection is dead (a
    /// stopped or wedged Redis keeps TCP open): it is dropped, its publishes
    /// counted as connection_lost, and the bridge reconnects.
    std::chrono::milliseconds reply_timeout{2000};
    /// One message from Redis larger than this breaks the subscribed
    /// connection as a protocol error instead of being buffered (the
    /// publishing connection allows 64 KiB: its replies are a few bytes).
    /// 4 MiB + 64 KiB: the largest message another node's default queue
    /// lets through (queue.max_bytes) plus its channel and node id.
    std::size_t max_reply_bytes = (4u << 20) + (64u << 10);
    /// Called with one line (no prefix: the caller adds its own) when the bridge loses Redis or
    /// cannot reach it (once per outage, with the reason) and when it is back (with how long it was
    /// down). Under the bridge's lock: do not call the bridge from it.
    std::function<void(const std::string&)> on_warning;
};

namespace detail {

/// One message waiting for Redis: the channel and the wire message.
struct RedisOutgoing {
    std::string channel;
    std::string message;
};

struct RedisOutgoingSize {
    std::size_t operator()(const RedisOutgoing& m) const noexcept {
        return m.channel.size() + m.message.size();
    }
};

}  // namespace detail

/// Carries room messages between nodes through Redis pub/sub (see the header
/// comment for the wire format and failure behaviour). Attaches itself to
/// `guard` (guard.set_bridge(this)), so every room broadcast through the guard
/// reaches the other nodes; follows the guard's rooms through its
/// on_room_created / on_room_emptied events; delivers what other nodes publish
/// with `deliver` (default: guard.broadcast_local(room, payload, 0)).
///
/// @tparam Guard a ServerGuard (anything with those two events, member_count(),
///               set_bridge(), detach_bridge() and broadcast_local()).
/// @tparam Lock  NullMutex: one io thread runs the io_context and makes every
///               call; std::mutex: several may.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe with NullMutex
/// (io thread only); Safe with std::mutex. Destroy it on the io thread of a
/// NullMutex bridge, or after every thread running the io_context stopped.
template <class Guard, class Lock = NullMutex>
class RedisBridge final : public RoomBridge, private RedisLink<Lock>::Owner {
public:
    using clock = std::chrono::steady_clock;

    /// Effect: validates the options, attaches the bridge to `guard` and
    /// starts connecting to Redis on `io` (asynchronously: returns at once,
    /// also when Redis is down). `io` and `guard` must outlive the bridge.
    /// Fails: std::invalid_argument on a node id with '\n', an empty host, a
    /// zero max_in_flight or max_in_flight_bytes, a zero or inverted backoff,
    /// a zero timeout, or bad queue options.
    /// Thread safety: construct before the io_context runs, or on its thread.
    /// Exceptions: std::invalid_argument, std::bad_alloc.
    RedisBridge(asio::io_context& io, Guard& guard, RedisBridgeOptions options = {},
                DeliverFunction deliver = {})
        : io_(io),
          guard_(guard),
          options_(validated(std::move(options))),
          deliver_(deliver ? std::move(deliver) : broadcast_to(guard)),
          queue_(options_.queue),
          retry_timer_(io),
          watchdog_(io),
          lock_(std::make_shared<Lock>()),
          alive_(std::make_shared<char>()),
          backoff_(options_.reconnect_min),
          down_since_(clock::now()) {
        auto& owner = static_cast<typename RedisLink<Lock>::Owner&>(*this);
        // PUBLISH, AUTH and PING answer a few bytes: only the subscribed
        // connection needs room for a message.
        pub_ = std::make_shared<RedisLink<Lock>>(io_, lock_, owner, publish_reply_bytes);
        sub_ = std::make_shared<RedisLink<Lock>>(io_, lock_, owner, options_.max_reply_bytes);
        created_ =
            guard_.on_room_created.subscribe([this](const std::string& room) { follow(room); });
        emptied_ =
            guard_.on_room_emptied.subscribe([this](const std::string& room) { follow(room); });
        {
            std::lock_guard<Lock> guard_lock(*lock_);
            connect();
        }
        // Last: a constructor that threw must leave no pointer to it in the guard.
        guard_.set_bridge(this);
    }

    RedisBridge(const RedisBridge&) = delete;
    RedisBridge& operator=(const RedisBridge&) = delete;

    /// Effect: stop(), and the guard's room broadcasts stay on this node again
    /// (unless another bridge replaced this one); nothing of the bridge runs
    /// afterwards. With several io threads, destroy it only once they stopped
    /// (a broadcast already running may still be in publish()).
    ~RedisBridge() override {
        guard_.detach_bridge(this);
        stop();
    }

    /// Effect: queues `payload` for room's channel and sends what the in-flight
    /// bounds allow; while Redis is away it waits in the queue (bounded, aged).
    /// Fails: rejected_too_large, stopped; queued_dropped_oldest when older
    /// messages made room (each counted in failures and failed). Never blocks.
    /// Thread safety: as the class. Exceptions: std::bad_alloc.
    PublishStatus publish(const std::string& room, std::string_view payload) override {
        detail::RedisOutgoing out{options_.channel_prefix + room, std::string()};
        out.message.reserve(options_.node_id.size() + 1 + payload.size());
        out.message.append(options_.node_id).append(1, '\n').append(payload);
        std::lock_guard<Lock> guard(*lock_);
        ++publish_calls_;
        if (state_ == BridgeState::stopped) {
            ++failures_.stopped;
            return PublishStatus::stopped;
        }
        const PushResult pushed = queue_.try_push(std::move(out));
        if (pushed == PushResult::rejected_too_large) {
            ++failures_.too_large;
            return PublishStatus::rejected_too_large;
        }
        flush();
        return pushed == PushResult::pushed_dropped_oldest ? PublishStatus::queued_dropped_oldest
                                                           : PublishStatus::queued;
    }

    /// Effect: disconnects from Redis (commands in flight and queued messages
    /// count as failed), cancels the timers; later publishes return stopped.
    /// Idempotent. Never fails. Thread safety: as the class. Exceptions: nothrow.
    void stop() noexcept override {
        std::lock_guard<Lock> guard(*lock_);
        if (state_ == BridgeState::stopped) {
            return;
        }
        state_ = BridgeState::stopped;
        alive_.reset();
        std::error_code ec;
        retry_timer_.cancel(ec);
        watchdog_.cancel(ec);
        teardown();
        const std::size_t left = queue_.size();
        queue_.clear();
        failures_.stopped += left;
    }

    /// Effect: a snapshot of every count (see BridgeStats); rooms is the number
    /// of rooms this node follows. Never fails. Thread safety: as the class.
    /// Exceptions: std::bad_alloc.
    BridgeStats stats() const override {
        std::lock_guard<Lock> guard(*lock_);
        BridgeStats s;
        s.state = state_;
        s.node_id = options_.node_id;
        s.rooms = rooms_.size();
        s.subscriptions = confirmed_;
        s.publish_calls = publish_calls_;
        s.published = published_;
        s.in_flight = in_flight_.size();
        s.in_flight_bytes = in_flight_bytes_;
        s.received = received_;
        s.delivered = delivered_;
        s.ignored_own = ignored_own_;
        s.malformed = malformed_;
        s.invalid_utf8 = invalid_utf8_;
        s.not_followed = not_followed_;
        s.queue = queue_.stats();
        s.failures = failures_;
        s.failures.queue_full = s.queue.dropped_oldest;
        s.failures.expired = s.queue.dropped_expired;
        s.dropped = s.queue.dropped_oldest + s.queue.dropped_expired;
        s.failed_in_flight = failures_.connection_lost + failures_.refused;
        s.failed = s.failures.too_large + s.failures.queue_full + s.failures.expired +
                   s.failures.connection_lost + s.failures.refused + s.failures.stopped;
        s.connects = connects_;
        s.disconnects = disconnects_;
        s.connect_failures = connect_failures_;
        s.protocol_errors = protocol_errors_;
        s.reply_timeouts = reply_timeouts_;
        if (state_ != BridgeState::connected && state_ != BridgeState::stopped) {
            s.down_for =
                std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - down_since_);
        }
        s.last_error = last_error_;
        return s;
    }

    /// Effect: the options in force (node_id filled in).
    const RedisBridgeOptions& options() const noexcept { return options_; }

private:
    // What Redis knows of one room's channel. A room is never SUBSCRIBEd and
    // UNSUBSCRIBEd at once: each change waits for the previous one's
    // confirmation, so confirmations match requests one to one.
    enum class Sub { none, subscribing, subscribed, unsubscribing };

    static constexpr std::size_t publish_reply_bytes = 64u << 10;

    struct InFlight {
        std::size_t bytes;
        clock::time_point sent;
    };

    static RedisBridgeOptions validated(RedisBridgeOptions o) {
        if (o.node_id.empty()) {
            o.node_id = default_node_id();
        }
        if (o.node_id.find('\n') != std::string::npos) {
            throw std::invalid_argument("wsguard::RedisBridge: node_id must not contain '\\n'");
        }
        if (o.address.host.empty()) {
            throw std::invalid_argument("wsguard::RedisBridge: the Redis host is empty");
        }
        if (o.max_in_flight == 0 || o.max_in_flight_bytes == 0) {
            throw std::invalid_argument(
                "wsguard::RedisBridge: max_in_flight and max_in_flight_bytes must be at least 1");
        }
        if (o.reconnect_min.count() <= 0 || o.reconnect_max < o.reconnect_min ||
            o.connect_timeout.count() <= 0 || o.reply_timeout.count() <= 0) {
            throw std::invalid_argument(
                "wsguard::RedisBridge: reconnect_min, connect_timeout and reply_timeout must be "
                "positive and reconnect_max >= reconnect_min");
        }
        if (o.max_reply_bytes < 1024) {
            throw std::invalid_argument("wsguard::RedisBridge: max_reply_bytes must be >= 1024");
        }
        return o;
    }

    // --- membership -------------------------------------------------------

    // Called on both events: reads the room's current local membership rather
    // than trusting the event, so events that cross on two threads still end
    // in the right state.
    void follow(const std::string& room) {
        const bool wanted = guard_.member_count(room) != 0;
        std::lock_guard<Lock> guard(*lock_);
        if (state_ == BridgeState::stopped) {
            return;
        }
        if (wanted) {
            rooms_.insert(room);
        } else {
            rooms_.erase(room);
        }
        reconcile(room);
    }

    // Brings Redis' view of `room` one step towards rooms_, if no step is pending.
    void reconcile(const std::string& room) {
        if (state_ != BridgeState::connected) {
            return;  // link_up() subscribes to every room in rooms_
        }
        const bool wanted = rooms_.count(room) != 0;
        auto it = subs_.find(room);
        const Sub now = it == subs_.end() ? Sub::none : it->second;
        if (wanted && now == Sub::none) {
            subs_[room] = Sub::subscribing;
            command("SUBSCRIBE", room);
        } else if (!wanted && now == Sub::subscribed) {
            it->second = Sub::unsubscribing;
            --confirmed_;
            command("UNSUBSCRIBE", room);
        }
    }

    void command(std::string_view verb, const std::string& room) {
        const std::string channel = options_.channel_prefix + room;
        sub_->send({verb, channel});
        sub_pending_.push_back(clock::now());
        arm_watchdog();
    }

    // --- connection -------------------------------------------------------

    void connect() {
        state_ = BridgeState::connecting;
        pub_->connect(options_.address, options_.connect_timeout);
        if (state_ == BridgeState::connecting) {  // pub_ may have failed at once
            sub_->connect(options_.address, options_.connect_timeout);
        }
    }

    // Both links closed, Redis-side state forgotten; what was in flight failed.
    void teardown() {
        pub_->close();
        sub_->close();
        subs_.clear();
        confirmed_ = 0;
        sub_pending_.clear();
        failures_.connection_lost += in_flight_.size();
        in_flight_.clear();
        in_flight_bytes_ = 0;
    }

    void schedule_retry() {
        if (state_ == BridgeState::stopped) {
            return;
        }
        const auto delay = backoff_;
        backoff_ = std::min(options_.reconnect_max, backoff_ * 2);
        retry_timer_.expires_after(delay);
        retry_timer_.async_wait(guarded([this](const std::error_code& ec) {
            if (!ec && state_ == BridgeState::disconnected) {
                connect();
            }
        }));
    }

    template <class F>
    auto guarded(F f) {
        return [alive = std::weak_ptr<char>(alive_), lock = lock_,
                f = std::move(f)](const std::error_code& ec) mutable {
            std::lock_guard<Lock> guard(*lock);
            if (alive.lock()) {
                f(ec);
            }
        };
    }

    void warn(const std::string& line) {
        if (options_.on_warning) {
            try {
                options_.on_warning(line);
            } catch (...) {
                // A logger that throws must not take the bridge down with it.
            }
        }
    }

    std::string where() const { return "redis://" + host_port(options_.address); }

    // RedisLink::Owner: every call under the lock.

    // An outage lasts from the first failure until a connection has stayed up
    // for reply_timeout: a Redis that accepts and then breaks every
    // connection is one outage, with one warning, a growing backoff and
    // down_for counting from its start, not a fresh one per cycle.
    void link_up(RedisLink<Lock>&) override {
        if (state_ != BridgeState::connecting || !pub_->up() || !sub_->up()) {
            return;
        }
        state_ = BridgeState::connected;
        ++connects_;
        connected_at_ = clock::now();
        if (in_outage_ && !recovery_announced_) {
            const auto down =
                std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - down_since_);
            warn("connected to " + where() + " again after " + std::to_string(down.count()) +
                 " ms");
            recovery_announced_ = true;
        }
        for (const std::string& room : rooms_) {
            reconcile(room);
        }
        flush();
    }

    void link_down(RedisLink<Lock>&, LinkFailure why, const std::string& error) override {
        if (state_ == BridgeState::stopped || state_ == BridgeState::disconnected) {
            return;  // the other link of an attempt that already failed
        }
        const auto now = clock::now();
        const bool was_connected = state_ == BridgeState::connected;
        const bool stable = was_connected && now - connected_at_ >= options_.reply_timeout;
        if (was_connected) {
            ++disconnects_;
        } else {
            ++connect_failures_;
        }
        if (why == LinkFailure::protocol) {
            ++protocol_errors_;
        } else if (why == LinkFailure::timeout) {
            ++reply_timeouts_;
        }
        last_error_ = error;
        state_ = BridgeState::disconnected;
        teardown();
        std::error_code ec;
        watchdog_.cancel(ec);
        if (!in_outage_ || stable) {
            in_outage_ = true;
            recovery_announced_ = false;
            if (connects_ != 0) {
                down_since_ = now;  // else: down since the bridge started
            }
            backoff_ = options_.reconnect_min;
            warn(error + "; room messages stay on this node until " + where() +
                 " is back (retrying with backoff)");
        }
        schedule_retry();
    }

    bool link_reply(RedisLink<Lock>& link, const redisReply& reply) override {
        return &link == pub_.get() ? published(reply) : subscription(reply);
    }

    void flush() {
        if (state_ != BridgeState::connected) {
            return;
        }
        queue_.expire();
        while (in_flight_.size() < options_.max_in_flight) {
            const detail::RedisOutgoing* next = queue_.front();
            if (next == nullptr) {
                break;
            }
            const std::size_t bytes = next->channel.size() + next->message.size();
            if (!in_flight_.empty() && in_flight_bytes_ + bytes > options_.max_in_flight_bytes) {
                break;
            }
            detail::RedisOutgoing out;
            if (!queue_.try_pop(out)) {
                break;
            }
            pub_->send({"PUBLISH", out.channel, out.message});
            in_flight_.push_back(InFlight{bytes, clock::now()});
            in_flight_bytes_ += bytes;
        }
        arm_watchdog();
    }

    // The oldest command unanswered for reply_timeout ends the connection.
    void arm_watchdog() {
        if (watchdog_armed_ || (in_flight_.empty() && sub_pending_.empty())) {
            return;
        }
        watchdog_armed_ = true;
        watchdog_.expires_after(options_.reply_timeout / 4 + std::chrono::milliseconds(1));
        watchdog_.async_wait(guarded([this](const std::error_code& ec) {
            watchdog_armed_ = false;
            if (ec || state_ != BridgeState::connected) {
                return;
            }
            const auto now = clock::now();
            const bool publish_late =
                !in_flight_.empty() && now - in_flight_.front().sent > options_.reply_timeout;
            const bool subscribe_late =
                !sub_pending_.empty() && now - sub_pending_.front() > options_.reply_timeout;
            if (publish_late || subscribe_late) {
                (publish_late ? pub_ : sub_)
                    ->fail(LinkFailure::timeout,
                           std::string("no reply to ") + (publish_late ? "PUBLISH" : "SUBSCRIBE") +
                               " from " + where() + " within " +
                               std::to_string(options_.reply_timeout.count()) + " ms");
                return;
            }
            arm_watchdog();
        }));
    }

    // A reply on the publishing connection: PUBLISH answers an integer (the
    // receivers), or an error; anything else, or a reply nobody asked for,
    // is outside the protocol.
    bool published(const redisReply& reply) {
        if (in_flight_.empty()) {
            return false;
        }
        if (reply.type != REDIS_REPLY_INTEGER && reply.type != REDIS_REPLY_ERROR) {
            return false;
        }
        in_flight_bytes_ -= in_flight_.front().bytes;
        in_flight_.pop_front();
        if (reply.type == REDIS_REPLY_ERROR) {
            ++failures_.refused;
        } else {
            ++published_;
        }
        flush();
        return true;
    }

    static bool is_string(const redisReply* r) noexcept {
        return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
    }

    // A reply on the subscribed connection: ["subscribe"|"unsubscribe", channel,
    // count] answering our request in order, or ["message", channel, payload]
    // for a channel we follow. Anything else is outside the protocol.
    bool subscription(const redisReply& reply) {
        if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 3 ||
            !is_string(reply.element[0]) || !is_string(reply.element[1])) {
            return false;
        }
        const std::string_view kind(reply.element[0]->str, reply.element[0]->len);
        std::string_view channel(reply.element[1]->str, reply.element[1]->len);
        if (channel.substr(0, options_.channel_prefix.size()) != options_.channel_prefix) {
            return false;
        }
        channel.remove_prefix(options_.channel_prefix.size());
        const std::string room(channel);
        if (kind == "message") {
            if (!is_string(reply.element[2])) {
                return false;
            }
            ++received_;
            deliver(room, std::string_view(reply.element[2]->str, reply.element[2]->len));
            return true;
        }
        if (reply.element[2] == nullptr || reply.element[2]->type != REDIS_REPLY_INTEGER ||
            sub_pending_.empty()) {
            return false;
        }
        auto it = subs_.find(room);
        if (kind == "subscribe") {
            if (it == subs_.end() || it->second != Sub::subscribing) {
                return false;
            }
            sub_pending_.pop_front();
            it->second = Sub::subscribed;
            ++confirmed_;
            reconcile(room);  // the last member may have left meanwhile
            return true;
        }
        if (kind == "unsubscribe") {
            if (it == subs_.end() || it->second != Sub::unsubscribing) {
                return false;
            }
            sub_pending_.pop_front();
            subs_.erase(it);
            reconcile(room);  // a member may have joined meanwhile
            return true;
        }
        return false;
    }

    void deliver(const std::string& room, std::string_view message) {
        if (rooms_.count(room) == 0) {
            ++not_followed_;  // left meanwhile: nobody here to read it
            return;
        }
        const auto sep = message.find('\n');
        if (sep == std::string_view::npos) {
            ++malformed_;
            return;
        }
        if (message.substr(0, sep) == options_.node_id) {
            ++ignored_own_;  // our members got it locally
            return;
        }
        const std::string_view payload = message.substr(sep + 1);
        ::websocketpp::utf8_validator::validator utf8;
        if (!utf8.decode(payload.begin(), payload.end()) || !utf8.complete()) {
            ++invalid_utf8_;  // a text frame must be UTF-8 (RFC 6455 8.1)
            return;
        }
        ++delivered_;
        deliver_(room, payload);
    }

    asio::io_context& io_;
    Guard& guard_;
    const RedisBridgeOptions options_;
    DeliverFunction deliver_;
    BoundedMessageQueue<detail::RedisOutgoing, detail::RedisOutgoingSize> queue_;
    asio::steady_timer retry_timer_;
    asio::steady_timer watchdog_;
    std::shared_ptr<Lock> lock_;   // shared with the links' and timers' handlers
    std::shared_ptr<char> alive_;  // handlers hold it weakly: reset by stop()
    std::chrono::milliseconds backoff_;
    clock::time_point down_since_;
    BridgeState state_ = BridgeState::connecting;
    std::shared_ptr<RedisLink<Lock>> pub_, sub_;
    std::unordered_set<std::string> rooms_;      // rooms with local members
    std::unordered_map<std::string, Sub> subs_;  // what Redis knows, on the live connection
    std::deque<InFlight> in_flight_;             // PUBLISHes awaiting their reply, in order
    std::deque<clock::time_point> sub_pending_;  // (UN)SUBSCRIBEs awaiting confirmation
    std::size_t in_flight_bytes_ = 0;
    std::size_t confirmed_ = 0;
    bool watchdog_armed_ = false;
    clock::time_point connected_at_{};
    bool in_outage_ = false;
    bool recovery_announced_ = false;
    std::string last_error_;
    PublishFailures failures_{};
    std::uint64_t publish_calls_ = 0, published_ = 0, received_ = 0, delivered_ = 0,
                  ignored_own_ = 0, malformed_ = 0, invalid_utf8_ = 0, not_followed_ = 0,
                  connects_ = 0, disconnects_ = 0, connect_failures_ = 0, protocol_errors_ = 0,
                  reply_timeouts_ = 0;
    ScopedListener created_, emptied_;
};

}  // namespace wsguard::wspp
