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
// hiredis has no asio event loop adapter; asio_redis_adapter.hpp is that
// adapter. Written against hiredis 0.14 (Debian 12) and later. Two
// connections: a subscribed connection cannot PUBLISH.
// hiredis resolves the host with a blocking getaddrinfo() at each (re)connect:
// give an IP address, or a name the resolver answers locally (/etc/hosts).
#pragma once

#include <wsguard/bounded_message_queue.hpp>
#include <wsguard/null_mutex.hpp>
#include <wsguard/redis/asio_redis_adapter.hpp>
#include <wsguard/scoped_listener.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
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

/// Where Redis listens.
struct RedisAddress {
    std::string host = "127.0.0.1";
    int port = 6379;
    /// AUTH on every connection when not empty (Redis 6 ACL user when
    /// username is set too). Never logged, never in stats.
    std::string username;
    std::string password;
};

/// Effect: `s` with every %XX decoded; std::nullopt on a bad escape.
inline std::optional<std::string> percent_decoded(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) {
            return std::nullopt;
        }
        const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

/// Effect: parses "redis://[[user]:password@]host[:port][/]" (port 6379 when
/// absent; an IPv6 host in brackets, "redis://[::1]:6379"; user and password
/// percent-decoded).
/// Fails: std::nullopt on any other shape, with the reason in `*error` when
/// given: another scheme (rediss://, TLS, is not supported), a bad port, a
/// database number (pub/sub ignores databases), a query.
/// Thread safety: Safe. Exceptions: std::bad_alloc.
inline std::optional<RedisAddress> parse_redis_url(std::string_view url,
                                                   std::string* error = nullptr) {
    const auto fail = [error](const char* why) -> std::optional<RedisAddress> {
        if (error != nullptr) {
            *error = why;
        }
        return std::nullopt;
    };
    constexpr std::string_view scheme = "redis://";
    if (url.substr(0, 9) == "rediss://") {
        return fail(
            "rediss:// (TLS to Redis) is not supported: reach Redis over a private network or "
            "a TLS tunnel (stunnel, spiped) and give its redis:// address");
    }
    if (url.substr(0, scheme.size()) != scheme) {
        return fail("a Redis URL starts with redis://");
    }
    url.remove_prefix(scheme.size());
    RedisAddress credentials;
    if (const auto at = url.rfind('@'); at != std::string_view::npos) {
        const std::string_view userinfo = url.substr(0, at);
        url.remove_prefix(at + 1);
        const auto colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            return fail("credentials in a Redis URL are user:password@ or :password@");
        }
        const auto user = percent_decoded(userinfo.substr(0, colon));
        const auto password = percent_decoded(userinfo.substr(colon + 1));
        if (!user || !password) {
            return fail("bad percent-encoding in the Redis URL's credentials");
        }
        if (password->empty()) {
            return fail("the Redis URL names credentials with an empty password");
        }
        credentials.username = *user;
        credentials.password = *password;
    }
    if (url.find_first_of("?#") != std::string_view::npos) {
        return fail("a Redis URL for the bridge takes no query or fragment");
    }
    if (const auto slash = url.find('/');
        slash != std::string_view::npos && slash + 1 < url.size()) {
        return fail("a database number is meaningless for pub/sub: give redis://host[:port]");
    }
    if (!url.empty() && url.back() == '/') {
        url.remove_suffix(1);
    }
    RedisAddress a;
    std::string_view port;
    if (!url.empty() && url.front() == '[') {
        const auto close = url.find(']');
        if (close == std::string_view::npos) {
            return std::nullopt;
        }
        a.host = std::string(url.substr(1, close - 1));
        url.remove_prefix(close + 1);
        if (!url.empty()) {
            if (url.front() != ':') {
                return std::nullopt;
            }
            port = url.substr(1);
        }
    } else {
        const auto colon = url.find(':');
        a.host = std::string(url.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = url.substr(colon + 1);
        }
    }
    if (a.host.empty() || a.host.find_first_of("/@?#") != std::string::npos) {
        return fail("the Redis URL has no usable host");
    }
    if (!port.empty() || url.find(':') != std::string_view::npos) {
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string_view::npos) {
            return fail("the Redis URL's port is not a number from 1 to 65535");
        }
        a.port = std::stoi(std::string(port));
        if (a.port < 1 || a.port > 65535) {
            return fail("the Redis URL's port is not a number from 1 to 65535");
        }
    }
    a.username = std::move(credentials.username);
    a.password = std::move(credentials.password);
    return a;
}

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
    /// One reply from Redis larger than this (a message is at most the
    /// payload plus its channel and node id) breaks the connection as a
    /// protocol error instead of being buffered. 16 MiB.
    std::size_t max_reply_bytes = 16u << 20;
    /// Called with one line when the bridge loses Redis or cannot reach it
    /// (once per outage, with the reason) and when it is back (with how long it
    /// was down). Under the bridge's lock: do not call the bridge from it.
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
class RedisBridge final : public RoomBridge {
public:
    /// Effect: validates the options, attaches the bridge to `guard` and
    /// starts connecting to Redis on `io` (asynchronously: returns at once,
    /// also when Redis is down). `io` and `guard` must outlive the bridge.
    /// Fails: std::invalid_argument on a node id with '\n', an empty host, a
    /// zero max_in_flight, a zero or inverted backoff, or bad queue options.
    /// Thread safety: construct before the io_context runs, or on its thread.
    /// Exceptions: std::invalid_argument, std::bad_alloc.
    RedisBridge(asio::io_context& io, Guard& guard, RedisBridgeOptions options = {},
                DeliverFunction deliver = {})
        : io_(io),
          guard_(guard),
          options_(validated(std::move(options))),
          deliver_(deliver ? std::move(deliver) : broadcast_to(guard)),
          queue_(options_.queue),
          timer_(io),
          lock_(std::make_shared<Lock>()),
          alive_(std::make_shared<char>()),
          backoff_(options_.reconnect_min) {
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
    /// bound allows; while Redis is away it waits in the queue (bounded, aged).
    /// Fails: rejected_too_large, stopped; queued_dropped_oldest when older
    /// messages made room (each counted in dropped and failed). Never blocks.
    /// Thread safety: as the class. Exceptions: std::bad_alloc.
    PublishStatus publish(const std::string& room, std::string_view payload) override {
        detail::RedisOutgoing out{options_.channel_prefix + room, std::string()};
        out.message.reserve(options_.node_id.size() + 1 + payload.size());
        out.message.append(options_.node_id).append(1, '\n').append(payload);
        std::lock_guard<Lock> guard(*lock_);
        ++publish_calls_;
        if (state_ == BridgeState::stopped) {
            ++failed_;
            return PublishStatus::stopped;
        }
        const PushResult pushed = queue_.try_push(std::move(out));
        if (pushed == PushResult::rejected_too_large) {
            ++failed_;
            return PublishStatus::rejected_too_large;
        }
        flush();
        return pushed == PushResult::pushed_dropped_oldest ? PublishStatus::queued_dropped_oldest
                                                           : PublishStatus::queued;
    }

    /// Effect: disconnects from Redis (commands in flight and queued messages
    /// count as failed), cancels the reconnect timer; later publishes return
    /// stopped. Idempotent. Never fails. Thread safety: as the class.
    /// Exceptions: nothrow.
    void stop() noexcept override {
        std::lock_guard<Lock> guard(*lock_);
        if (state_ == BridgeState::stopped) {
            return;
        }
        state_ = BridgeState::stopped;
        alive_.reset();
        std::error_code ec;
        timer_.cancel(ec);
        teardown(nullptr);
        const std::size_t left = queue_.size();
        queue_.clear();
        failed_ += left;
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
        s.in_flight = in_flight_;
        s.received = received_;
        s.delivered = delivered_;
        s.ignored_own = ignored_own_;
        s.malformed = malformed_;
        s.queue = queue_.stats();
        s.dropped = s.queue.dropped_oldest + s.queue.dropped_expired;
        s.failed_in_flight = failed_in_flight_;
        s.failed = failed_ + failed_in_flight_ + s.dropped;
        s.connects = connects_;
        s.disconnects = disconnects_;
        s.connect_failures = connect_failures_;
        return s;
    }

    /// Effect: the options in force (node_id filled in).
    const RedisBridgeOptions& options() const noexcept { return options_; }

private:
    // What Redis knows of one room's channel. A room is never SUBSCRIBEd and
    // UNSUBSCRIBEd at once: hiredis (0.14) keys its subscription callbacks by
    // channel and would drop the callback of a resubscription that crosses an
    // unsubscribe, so each change waits for the previous one's confirmation.
    enum class Sub { none, subscribing, subscribed, unsubscribing };

    struct Connection {
        redisAsyncContext* ac = nullptr;
        std::shared_ptr<detail::AsioRedisAdapter<Lock>> adapter;
        bool up = false;
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
        if (o.max_in_flight == 0) {
            throw std::invalid_argument("wsguard::RedisBridge: max_in_flight must be at least 1");
        }
        if (o.reconnect_min.count() <= 0 || o.reconnect_max < o.reconnect_min ||
            o.connect_timeout.count() <= 0) {
            throw std::invalid_argument(
                "wsguard::RedisBridge: reconnect_min and connect_timeout must be positive and "
                "reconnect_max >= reconnect_min");
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
            return;  // connect() subscribes to every room in rooms_
        }
        const bool wanted = rooms_.count(room) != 0;
        auto it = subs_.find(room);
        const Sub now = it == subs_.end() ? Sub::none : it->second;
        if (wanted && now == Sub::none) {
            subs_[room] = Sub::subscribing;
            command(sub_, "SUBSCRIBE", room);
        } else if (!wanted && now == Sub::subscribed) {
            it->second = Sub::unsubscribing;
            --confirmed_;
            command(sub_, "UNSUBSCRIBE", room);
        }
    }

    void command(Connection& c, const char* verb, const std::string& room) {
        const std::string channel = options_.channel_prefix + room;
        redisAsyncCommand(c.ac, &RedisBridge::on_subscription, this, "%s %b", verb, channel.data(),
                          channel.size());
    }

    // --- connection -------------------------------------------------------

    void connect() {
        state_ = BridgeState::connecting;
        if (!open(pub_) || !open(sub_)) {
            ++connect_failures_;
            teardown(nullptr);
            schedule_retry();
            return;
        }
        arm_timer(options_.connect_timeout, [this] {
            if (state_ == BridgeState::connecting) {
                ++connect_failures_;
                teardown(nullptr);
                schedule_retry();
            }
        });
    }

    bool open(Connection& c) {
        redisAsyncContext* ac =
            redisAsyncConnect(options_.address.host.c_str(), options_.address.port);
        if (ac == nullptr) {
            return false;
        }
        if (ac->err) {
            redisAsyncFree(ac);  // refused at once (loopback); no callback was set
            return false;
        }
        ac->data = this;
        c.ac = ac;
        c.up = false;
        c.adapter = detail::AsioRedisAdapter<Lock>::attach(io_, ac, lock_);
        redisAsyncSetDisconnectCallback(ac, &RedisBridge::on_disconnect);
        redisAsyncSetConnectCallback(ac, &RedisBridge::on_connect);
        return true;
    }

    // Frees every context but `dying` (which hiredis is freeing itself) and
    // forgets Redis-side state. Commands in flight fail with the connection.
    void teardown(const redisAsyncContext* dying) {
        if (state_ == BridgeState::connected) {
            ++disconnects_;
        }
        if (state_ != BridgeState::stopped) {
            state_ = BridgeState::disconnected;
        }
        subs_.clear();
        confirmed_ = 0;
        for (Connection* c : {&pub_, &sub_}) {
            redisAsyncContext* ac = std::exchange(c->ac, nullptr);
            c->up = false;
            if (ac != nullptr && ac != dying) {
                // Runs pending callbacks with a null reply, then the adapter's
                // cleanup hook: the adapter must still be alive here.
                redisAsyncFree(ac);
            }
            // A dying context's adapter stays alive through the handler that
            // is running hiredis (it holds the adapter).
            c->adapter.reset();
        }
        failed_in_flight_ += in_flight_;
        in_flight_ = 0;
    }

    void schedule_retry() {
        if (state_ == BridgeState::stopped) {
            return;
        }
        const auto delay = backoff_;
        backoff_ = std::min(options_.reconnect_max, backoff_ * 2);
        arm_timer(delay, [this] {
            if (state_ == BridgeState::disconnected) {
                connect();
            }
        });
    }

    template <class F>
    void arm_timer(std::chrono::milliseconds delay, F f) {
        timer_.expires_after(delay);
        timer_.async_wait([alive = std::weak_ptr<char>(alive_), lock = lock_,
                           f = std::move(f)](const std::error_code& ec) {
            std::lock_guard<Lock> guard(*lock);
            if (!ec && alive.lock()) {
                f();
            }
        });
    }

    Connection* connection_of(const redisAsyncContext* ac) noexcept {
        if (ac != nullptr && ac == pub_.ac) {
            return &pub_;
        }
        if (ac != nullptr && ac == sub_.ac) {
            return &sub_;
        }
        return nullptr;
    }

    // hiredis callbacks: they run inside redisAsyncHandleRead/Write or
    // redisAsyncFree, always under the lock.

    static void on_connect(const redisAsyncContext* ac, int status) {
        static_cast<RedisBridge*>(ac->data)->connected(ac, status == REDIS_OK);
    }

    void connected(const redisAsyncContext* ac, bool ok) {
        Connection* c = connection_of(ac);
        if (c == nullptr) {
            return;
        }
        if (!ok) {
            // hiredis frees this context after the callback.
            c->ac = nullptr;
            ++connect_failures_;
            teardown(ac);
            schedule_retry();
            return;
        }
        c->up = true;
        redisEnableKeepAlive(&c->ac->c);
        if (!(pub_.up && sub_.up)) {
            return;
        }
        std::error_code ec;
        timer_.cancel(ec);
        state_ = BridgeState::connected;
        ++connects_;
        backoff_ = options_.reconnect_min;
        for (const std::string& room : rooms_) {
            reconcile(room);
        }
        flush();
    }

    static void on_disconnect(const redisAsyncContext* ac, int) {
        static_cast<RedisBridge*>(ac->data)->disconnected(ac);
    }

    void disconnected(const redisAsyncContext* ac) {
        Connection* c = connection_of(ac);
        if (c == nullptr) {
            return;  // one we freed ourselves
        }
        c->ac = nullptr;  // hiredis frees it after the callback
        teardown(ac);
        schedule_retry();
    }

    void flush() {
        if (state_ != BridgeState::connected) {
            return;
        }
        detail::RedisOutgoing out;
        while (in_flight_ < options_.max_in_flight && queue_.try_pop(out)) {
            const int rc = redisAsyncCommand(
                pub_.ac, &RedisBridge::on_published, this, "PUBLISH %b %b", out.channel.data(),
                out.channel.size(), out.message.data(), out.message.size());
            if (rc == REDIS_OK) {
                ++in_flight_;
            } else {
                ++failed_;
            }
        }
    }

    static void on_published(redisAsyncContext*, void* reply, void* self) {
        static_cast<RedisBridge*>(self)->published(static_cast<redisReply*>(reply));
    }

    void published(const redisReply* reply) {
        if (in_flight_ == 0) {
            return;  // counted as failed by teardown() already
        }
        --in_flight_;
        if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
            ++failed_in_flight_;
            return;
        }
        ++published_;
        flush();
    }

    static void on_subscription(redisAsyncContext*, void* reply, void* self) {
        static_cast<RedisBridge*>(self)->subscription(static_cast<redisReply*>(reply));
    }

    // One reply on the subscribed connection: ["subscribe"|"unsubscribe"|"message", channel, x].
    void subscription(const redisReply* reply) {
        if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_STRING) {
            return;  // freed with the connection, or not a pub/sub reply
        }
        const std::string_view kind(reply->element[0]->str, reply->element[0]->len);
        std::string_view channel(reply->element[1]->str, reply->element[1]->len);
        if (channel.substr(0, options_.channel_prefix.size()) != options_.channel_prefix) {
            return;
        }
        channel.remove_prefix(options_.channel_prefix.size());
        const std::string room(channel);
        if (kind == "message" && reply->element[2]->type == REDIS_REPLY_STRING) {
            ++received_;
            deliver(room, std::string_view(reply->element[2]->str, reply->element[2]->len));
        } else if (kind == "subscribe") {
            auto it = subs_.find(room);
            if (it != subs_.end() && it->second == Sub::subscribing) {
                it->second = Sub::subscribed;
                ++confirmed_;
                reconcile(room);  // the last member may have left meanwhile
            }
        } else if (kind == "unsubscribe") {
            auto it = subs_.find(room);
            if (it != subs_.end() && it->second == Sub::unsubscribing) {
                subs_.erase(it);
                reconcile(room);  // a member may have joined meanwhile
            }
        }
    }

    void deliver(const std::string& room, std::string_view message) {
        const auto sep = message.find('\n');
        if (sep == std::string_view::npos) {
            ++malformed_;
            return;
        }
        if (message.substr(0, sep) == options_.node_id) {
            ++ignored_own_;  // our members got it locally
            return;
        }
        ++delivered_;
        deliver_(room, message.substr(sep + 1));
    }

    asio::io_context& io_;
    Guard& guard_;
    const RedisBridgeOptions options_;
    DeliverFunction deliver_;
    BoundedMessageQueue<detail::RedisOutgoing, detail::RedisOutgoingSize> queue_;
    asio::steady_timer timer_;
    std::shared_ptr<Lock> lock_;   // shared with the adapters' and timer's handlers
    std::shared_ptr<char> alive_;  // handlers hold it weakly: reset by stop()
    std::chrono::milliseconds backoff_;
    BridgeState state_ = BridgeState::connecting;
    Connection pub_, sub_;
    std::unordered_set<std::string> rooms_;      // rooms with local members
    std::unordered_map<std::string, Sub> subs_;  // what Redis knows, on the live connection
    std::size_t confirmed_ = 0;
    std::uint64_t publish_calls_ = 0, published_ = 0, in_flight_ = 0, received_ = 0, delivered_ = 0,
                  ignored_own_ = 0, malformed_ = 0, failed_ = 0, failed_in_flight_ = 0,
                  connects_ = 0, disconnects_ = 0, connect_failures_ = 0;
    ScopedListener created_, emptied_;
};

}  // namespace wsguard::wspp
