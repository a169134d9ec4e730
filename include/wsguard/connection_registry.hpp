// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// ConnectionRegistry: the one owner of per-connection state. State keyed by a
// connection that outlives the connection is the classic WebSocket server leak, and a
// strong pointer to the connection kept in such a map keeps the whole connection (its
// socket and buffers) alive too. The registry assigns each connection an id, holds only
// the handle it is given (in the websocketpp adapter a connection_hdl, i.e. a weak_ptr),
// refuses adds beyond a capacity, and finds the connections to drop: idle ones (no
// message for a while) and dead ones (a ping left unanswered). Both sweeps cost
// O(expired), not O(connections), because entries sit on intrusive lists kept in
// activity order and in ping order.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <wsguard/null_mutex.hpp>

namespace wsguard {

/// A connection's id in one registry: never 0, never reused within that registry.
using ConnectionId = std::uint64_t;

/// The outcome of try_add().
enum class AddStatus {
    added,       ///< stored; AddResult::id is its new id
    at_capacity  ///< refused: max_connections are registered (counted in refused_at_capacity)
};

/// Effect: the enumerator's name ("added", "at_capacity"); "unknown" for a value outside
/// the enum. Never fails. Thread safety: Safe. Exceptions: nothrow.
inline const char* to_string(AddStatus status) noexcept {
    switch (status) {
        case AddStatus::added:
            return "added";
        case AddStatus::at_capacity:
            return "at_capacity";
    }
    return "unknown";
}

/// What try_add() returns: the status and, when added, the new id (0 otherwise).
struct AddResult {
    AddStatus status;
    ConnectionId id;  ///< 0 unless added
    /// True when added.
    explicit operator bool() const noexcept { return status == AddStatus::added; }
};

/// Every limit of a ConnectionRegistry.
struct RegistryOptions {
    /// 10000: a common per-process file descriptor budget, and what one io thread
    /// comfortably serves when most connections are idle. Must not be 0.
    std::size_t max_connections = 10000;
};

/// A snapshot of every count a ConnectionRegistry holds. Balance (the definition of
/// the counters): added == removed + swept_idle + swept_dead + size.
struct RegistryStats {
    std::size_t size;                   ///< connections registered now
    std::size_t capacity;               ///< RegistryOptions::max_connections
    std::size_t high_water;             ///< largest size ever reached
    std::size_t awaiting_pong;          ///< connections with a ping outstanding now
    std::uint64_t added;                ///< successful try_add() calls
    std::uint64_t removed;              ///< connections removed by remove() or take()
    std::uint64_t refused_at_capacity;  ///< try_add() calls refused with at_capacity
    std::uint64_t swept_idle;           ///< connections removed by sweep_idle()
    std::uint64_t swept_dead;           ///< connections removed by sweep_dead()
    std::uint64_t pings_marked;         ///< times a connection started awaiting a pong
    std::uint64_t pongs_seen;           ///< mark_pong() calls on a registered connection
};

namespace detail {

/// Links of one intrusive list, embedded in the element.
template <class Node>
struct ListHook {
    Node* prev = nullptr;
    Node* next = nullptr;
};

/// A doubly-linked list threaded through Node::*Hook: O(1) push, erase and move, no
/// allocation. Nodes must stay at one address while linked (unordered_map nodes do).
template <class Node, ListHook<Node> Node::*Hook>
class IntrusiveList {
public:
    Node* front() const noexcept { return head_; }
    Node* back() const noexcept { return tail_; }
    static Node* next(const Node* n) noexcept { return (n->*Hook).next; }

    void push_back(Node* n) noexcept {
        (n->*Hook).prev = tail_;
        (n->*Hook).next = nullptr;
        (tail_ != nullptr ? (tail_->*Hook).next : head_) = n;
        tail_ = n;
    }
    void push_front(Node* n) noexcept {
        (n->*Hook).prev = nullptr;
        (n->*Hook).next = head_;
        (head_ != nullptr ? (head_->*Hook).prev : tail_) = n;
        head_ = n;
    }
    void erase(Node* n) noexcept {
        ListHook<Node>& h = n->*Hook;
        (h.prev != nullptr ? (h.prev->*Hook).next : head_) = h.next;
        (h.next != nullptr ? (h.next->*Hook).prev : tail_) = h.prev;
        h.prev = h.next = nullptr;
    }
    void move_to_back(Node* n) noexcept {
        if (n != tail_) {
            erase(n);
            push_back(n);
        }
    }

private:
    Node* head_ = nullptr;
    Node* tail_ = nullptr;
};

}  // namespace detail

/// Per-connection state with a capacity limit, activity and liveness tracking, and
/// sweeps that hand back the idle and the dead connections for the caller to close.
///
/// Liveness rules, kept apart on purpose: a connection is *idle* when no message
/// arrived (touch()) for the idle timeout; it is *dead* when a ping it was sent stays
/// unanswered (no mark_pong()) for the pong timeout. Pongs keep a connection from being
/// dead but do not make it active: a browser tab answers pings forever.
///
/// @tparam Handle how the caller reaches the connection (websocketpp::connection_hdl, a
///                weak_ptr). Store a weak handle, never a strong pointer to the
///                connection: that would keep a closed connection alive.
/// @tparam State  per-connection data owned by the registry.
/// @tparam Lock   NullMutex (one io thread) or std::mutex (see SyncConnectionRegistry).
/// @tparam Clock  has now() returning a time_point; must be monotonic (steady_clock by
///                default, a ManualClock in tests). It is read under the lock, so the
///                stamps are ordered like the calls.
///
/// Exceptions: the guarantees below assume moving Handle and State does not throw
/// (weak_ptr does not); with a throwing move they weaken to basic. With std::mutex, a
/// member may also throw std::system_error from lock(); "nothrow" below means the
/// registry's own work.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe with NullMutex; Safe
/// with std::mutex: every member takes the lock. The callbacks of with_state() and
/// for_each() run under the lock and must not call back into the registry.
template <class Handle, class State, class Lock = NullMutex,
          class Clock = std::chrono::steady_clock>
class ConnectionRegistry {
public:
    using handle_type = Handle;
    using state_type = State;
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using duration = typename Clock::duration;

    /// What take() and the sweeps hand back: the entry, moved out of the registry.
    struct Entry {
        ConnectionId id;
        Handle handle;
        State state;
    };

    /// Effect: an empty registry with this capacity, reading time from clock.
    /// Fails: std::invalid_argument if max_connections == 0.
    /// Thread safety: n/a (construction). Exceptions: std::invalid_argument; whatever
    /// copying Clock throws.
    explicit ConnectionRegistry(RegistryOptions options = {}, Clock clock = {})
        : options_(options), clock_(std::move(clock)) {
        if (options_.max_connections == 0) {
            throw std::invalid_argument("wsguard::ConnectionRegistry: max_connections must be > 0");
        }
    }

    // The lists point into the map's nodes; a copy would point into the original.
    ConnectionRegistry(const ConnectionRegistry&) = delete;
    ConnectionRegistry& operator=(const ConnectionRegistry&) = delete;

    /// Effect: registers a connection under a new id; its activity (idle) clock and its
    /// ping clock both start now, and it is not awaiting a pong.
    /// Fails: {at_capacity, 0} when max_connections are registered (counted in
    /// refused_at_capacity); handle and state are then destroyed with the arguments.
    /// Thread safety: as the class. Exceptions: strong (std::bad_alloc, the clock).
    AddResult try_add(Handle handle, State state = State{}) {
        std::lock_guard<Lock> guard(lock_);
        if (nodes_.size() >= options_.max_connections) {
            ++counters_.refused_at_capacity;
            return AddResult{AddStatus::at_capacity, 0};
        }
        const time_point now = clock_.now();
        const ConnectionId id = next_id_;
        auto inserted =
            nodes_.emplace(std::piecewise_construct, std::forward_as_tuple(id),
                           std::forward_as_tuple(id, std::move(handle), std::move(state), now));
        Node& node = inserted.first->second;
        activity_.push_back(&node);
        ping_order_.push_back(&node);
        ++next_id_;  // only now: a failed add consumes no id
        ++counters_.added;
        counters_.high_water = std::max(counters_.high_water, nodes_.size());
        return AddResult{AddStatus::added, id};
    }

    /// Effect: unregisters the connection and destroys its handle and state (after the
    /// lock is released, so their destructors may use the registry). Idempotent.
    /// Fails: false if id is not registered (never was, or already removed or swept).
    /// Thread safety: as the class. Exceptions: nothrow unless a destructor throws.
    bool remove(ConnectionId id) {
        typename Map::node_type doomed;  // destroyed after the guard below
        std::lock_guard<Lock> guard(lock_);
        const auto it = nodes_.find(id);
        if (it == nodes_.end()) {
            return false;
        }
        unlink(it->second);
        doomed = nodes_.extract(it);
        ++counters_.removed;
        return true;
    }

    /// Effect: unregisters the connection and hands back its id, handle and state
    /// (counted in removed, like remove()).
    /// Fails: std::nullopt if id is not registered.
    /// Thread safety: as the class. Exceptions: strong.
    std::optional<Entry> take(ConnectionId id) {
        std::lock_guard<Lock> guard(lock_);
        const auto it = nodes_.find(id);
        if (it == nodes_.end()) {
            return std::nullopt;
        }
        std::optional<Entry> out(std::in_place, extract_entry(it));
        ++counters_.removed;
        return out;
    }

    /// Effect: a message arrived: restarts the connection's idle clock (moves it to the
    /// back of the activity order). O(1).
    /// Fails: false if id is not registered.
    /// Thread safety: as the class. Exceptions: strong (only the clock can throw).
    bool touch(ConnectionId id) {
        std::lock_guard<Lock> guard(lock_);
        Node* node = find(id);
        if (node == nullptr) {
            return false;
        }
        node->last_activity = clock_.now();
        activity_.move_to_back(node);
        return true;
    }

    /// Effect: for every connection not awaiting a pong whose last ping (or add, if it
    /// was never pinged) is at least `interval` ago: records a ping sent now (it starts
    /// awaiting a pong; counted in pings_marked) and returns its id and handle, for the
    /// caller to send the pings. A connection still awaiting the pong of its previous
    /// ping is not returned; once that pong arrives it is due again at once.
    /// Cost O(due), amortised: the walk stops at the first connection not due; one still
    /// awaiting its pong when due is set aside once and comes back with its pong.
    /// `interval` is meant to be one setting, the same on every call (a changed interval
    /// takes effect for the connections behind any that became due under the old one).
    /// Fails: an empty vector when none is due.
    /// Thread safety: as the class. Exceptions: strong (the clock, std::bad_alloc) if
    /// copying Handle does not throw.
    std::vector<std::pair<ConnectionId, Handle>> mark_pings_due(duration interval) {
        std::vector<std::pair<ConnectionId, Handle>> out;
        std::lock_guard<Lock> guard(lock_);
        const time_point now = clock_.now();
        // First pass counts, so the one allocation happens before anything changes.
        std::size_t due = 0;
        walk_ping_due(now, interval, [&](Node& n) { due += n.awaiting_pong ? 0 : 1; });
        out.reserve(due);
        walk_ping_due(now, interval, [&](Node& n) {
            if (n.awaiting_pong) {
                // Its ping is still outstanding: set it aside until its pong (or death)
                // instead of walking over it on every call.
                ping_order_.erase(&n);
                n.parked = true;
            } else {
                out.emplace_back(n.id, n.handle);
                start_ping(n, now);  // moves it behind the walk's end
            }
        });
        return out;
    }

    /// Effect: records a ping sent now to one connection: it starts awaiting a pong
    /// (counted in pings_marked). If it already awaits one, nothing changes: the dead
    /// deadline keeps counting from the first unanswered ping.
    /// Fails: false if id is not registered.
    /// Thread safety: as the class. Exceptions: strong (only the clock can throw).
    bool mark_ping_sent(ConnectionId id) {
        std::lock_guard<Lock> guard(lock_);
        Node* node = find(id);
        if (node == nullptr) {
            return false;
        }
        if (!node->awaiting_pong) {
            start_ping(*node, clock_.now());
        }
        return true;
    }

    /// Effect: a pong arrived (counted in pongs_seen): the connection stops awaiting one,
    /// so sweep_dead() will not take it. Does NOT restart the idle clock: pongs are not
    /// activity. An unsolicited pong (nothing outstanding) is counted and changes
    /// nothing else. O(1).
    /// Fails: false if id is not registered.
    /// Thread safety: as the class. Exceptions: nothrow.
    bool mark_pong(ConnectionId id) {
        std::lock_guard<Lock> guard(lock_);
        Node* node = find(id);
        if (node == nullptr) {
            return false;
        }
        ++counters_.pongs_seen;
        if (node->awaiting_pong) {
            awaiting_.erase(node);
            node->awaiting_pong = false;
            --awaiting_count_;
            if (node->parked) {
                // It became due while waiting: to the front, where the next
                // mark_pings_due() starts.
                node->parked = false;
                ping_order_.push_front(node);
            }
        }
        return true;
    }

    /// Effect: removes and returns, least recently active first, every connection with
    /// no touch() (or add) for at least idle_timeout (counted in swept_idle). The caller
    /// closes them. O(expired): the walk stops at the first connection still active.
    /// Fails: an empty vector when none is idle.
    /// Thread safety: as the class. Exceptions: strong (the clock, std::bad_alloc).
    std::vector<Entry> sweep_idle(duration idle_timeout) {
        std::lock_guard<Lock> guard(lock_);
        const time_point now = clock_.now();
        const auto expired = [&](const Node& n) { return now - n.last_activity >= idle_timeout; };
        std::vector<Entry> out = sweep(activity_, expired);
        counters_.swept_idle += out.size();
        return out;
    }

    /// Effect: removes and returns, oldest ping first, every connection whose
    /// outstanding ping has waited at least pong_timeout (counted in swept_dead). The
    /// caller terminates them. O(expired): the walk stops at the first ping still young.
    /// Fails: an empty vector when none is dead.
    /// Thread safety: as the class. Exceptions: strong (the clock, std::bad_alloc).
    std::vector<Entry> sweep_dead(duration pong_timeout) {
        std::lock_guard<Lock> guard(lock_);
        const time_point now = clock_.now();
        const auto expired = [&](const Node& n) { return now - n.last_ping >= pong_timeout; };
        std::vector<Entry> out = sweep(awaiting_, expired);
        counters_.swept_dead += out.size();
        return out;
    }

    /// Effect: calls f(State&) on the connection's state, under the lock.
    /// Fails: false (f not called) if id is not registered.
    /// Thread safety: as the class; f must not call into the registry.
    /// Exceptions: whatever f throws (the registry itself is unchanged).
    template <class F>
    bool with_state(ConnectionId id, F&& f) {
        std::lock_guard<Lock> guard(lock_);
        Node* node = find(id);
        if (node == nullptr) {
            return false;
        }
        std::forward<F>(f)(node->state);
        return true;
    }

    /// Effect: a copy of the connection's handle.
    /// Fails: std::nullopt if id is not registered.
    /// Thread safety: as the class. Exceptions: whatever copying Handle throws.
    std::optional<Handle> handle(ConnectionId id) const {
        std::lock_guard<Lock> guard(lock_);
        const auto it = nodes_.find(id);
        if (it == nodes_.end()) {
            return std::nullopt;
        }
        return it->second.handle;
    }

    /// Effect: handle() and touch() in one lookup: a copy of the connection's handle,
    /// and its idle clock restarts (for a message about to be sent to it). O(1).
    /// Fails: std::nullopt (nothing changed) if id is not registered.
    /// Thread safety: as the class. Exceptions: strong (the clock, copying Handle).
    std::optional<Handle> touch_handle(ConnectionId id) {
        std::lock_guard<Lock> guard(lock_);
        Node* node = find(id);
        if (node == nullptr) {
            return std::nullopt;
        }
        std::optional<Handle> out(node->handle);  // copied first: a throw changes nothing
        node->last_activity = clock_.now();
        activity_.move_to_back(node);
        return out;
    }

    /// Effect: calls f(ConnectionId, const Handle&, State&) for every connection, least
    /// recently active first, under the lock.
    /// Never fails. Thread safety: as the class; f must not call into the registry.
    /// Exceptions: whatever f throws (the walk stops; the registry is unchanged).
    template <class F>
    void for_each(F&& f) {
        std::lock_guard<Lock> guard(lock_);
        for (Node* n = activity_.front(); n != nullptr; n = ActivityList::next(n)) {
            f(n->id, static_cast<const Handle&>(n->handle), n->state);
        }
    }

    /// Effect: as for_each above, with f(ConnectionId, const Handle&, const State&).
    template <class F>
    void for_each(F&& f) const {
        std::lock_guard<Lock> guard(lock_);
        for (const Node* n = activity_.front(); n != nullptr; n = ActivityList::next(n)) {
            f(n->id, static_cast<const Handle&>(n->handle), static_cast<const State&>(n->state));
        }
    }

    /// Effect: whether id is registered. Never fails. Thread safety: as the class.
    /// Exceptions: nothrow.
    bool contains(ConnectionId id) const {
        std::lock_guard<Lock> guard(lock_);
        return nodes_.find(id) != nodes_.end();
    }

    /// Effect: the number of registered connections. Never fails. Thread safety: as the
    /// class. Exceptions: nothrow.
    std::size_t size() const {
        std::lock_guard<Lock> guard(lock_);
        return nodes_.size();
    }

    /// Effect: max_connections. Never fails. Thread safety: Safe (immutable).
    /// Exceptions: nothrow.
    std::size_t capacity() const noexcept { return options_.max_connections; }

    /// Effect: the options given at construction. Never fails. Thread safety: Safe
    /// (immutable). Exceptions: nothrow.
    const RegistryOptions& options() const noexcept { return options_; }

    /// Effect: a snapshot of every count, taken under the lock (see RegistryStats).
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    RegistryStats stats() const {
        std::lock_guard<Lock> guard(lock_);
        RegistryStats s{};
        s.size = nodes_.size();
        s.capacity = options_.max_connections;
        s.high_water = counters_.high_water;
        s.awaiting_pong = awaiting_count_;
        s.added = counters_.added;
        s.removed = counters_.removed;
        s.refused_at_capacity = counters_.refused_at_capacity;
        s.swept_idle = counters_.swept_idle;
        s.swept_dead = counters_.swept_dead;
        s.pings_marked = counters_.pings_marked;
        s.pongs_seen = counters_.pongs_seen;
        return s;
    }

private:
    struct Node {
        Node(ConnectionId i, Handle&& h, State&& s, time_point now)
            : id(i),
              handle(std::move(h)),
              state(std::move(s)),
              last_activity(now),
              last_ping(now) {}
        Node(const Node&) = delete;
        Node& operator=(const Node&) = delete;

        ConnectionId id;
        Handle handle;
        State state;
        time_point last_activity;              // add or last touch()
        time_point last_ping;                  // add or last ping started
        detail::ListHook<Node> activity_hook;  // always linked
        detail::ListHook<Node> ping_hook;      // linked unless parked
        detail::ListHook<Node> pong_hook;      // linked while awaiting_pong
        bool awaiting_pong = false;
        bool parked = false;  // awaiting a pong and already due for its next ping
    };

    using Map = std::unordered_map<ConnectionId, Node>;
    // Least recently active first.
    using ActivityList = detail::IntrusiveList<Node, &Node::activity_hook>;
    // By last_ping, oldest first; at the front, connections whose pong came after they
    // were already due (all due, in any order).
    using PingList = detail::IntrusiveList<Node, &Node::ping_hook>;
    // Awaiting a pong, oldest ping first.
    using PongList = detail::IntrusiveList<Node, &Node::pong_hook>;

    struct Counters {
        std::size_t high_water = 0;
        std::uint64_t added = 0;
        std::uint64_t removed = 0;
        std::uint64_t refused_at_capacity = 0;
        std::uint64_t swept_idle = 0;
        std::uint64_t swept_dead = 0;
        std::uint64_t pings_marked = 0;
        std::uint64_t pongs_seen = 0;
    };

    Node* find(ConnectionId id) noexcept {
        const auto it = nodes_.find(id);
        return it == nodes_.end() ? nullptr : &it->second;
    }

    void start_ping(Node& n, time_point now) noexcept {
        n.last_ping = now;
        ping_order_.move_to_back(&n);
        n.awaiting_pong = true;
        awaiting_.push_back(&n);
        ++awaiting_count_;
        ++counters_.pings_marked;
    }

    void unlink(Node& n) noexcept {
        activity_.erase(&n);
        if (!n.parked) {
            ping_order_.erase(&n);
        }
        if (n.awaiting_pong) {
            awaiting_.erase(&n);
            --awaiting_count_;
        }
    }

    Entry extract_entry(typename Map::iterator it) {
        Node& n = it->second;
        Entry e{n.id, std::move(n.handle), std::move(n.state)};
        unlink(n);
        nodes_.erase(it);
        return e;
    }

    // Calls f on each connection whose next ping is due, in ping order, stopping at the
    // first one not due or after the list's current last node (f may move a node to
    // the back) or unlink the node it is given.
    template <class F>
    void walk_ping_due(time_point now, duration interval, F&& f) {
        Node* const last = ping_order_.back();
        for (Node* n = ping_order_.front(); n != nullptr;) {
            if (now - n->last_ping < interval) {
                return;
            }
            Node* const next = PingList::next(n);
            const bool was_last = n == last;
            f(*n);
            if (was_last) {
                return;
            }
            n = next;
        }
    }

    // Removes and returns the expired prefix of list (oldest first).
    template <class List, class Expired>
    std::vector<Entry> sweep(List& list, const Expired& expired) {
        // Count first: the allocation happens before anything is removed.
        std::size_t n = 0;
        for (Node* p = list.front(); p != nullptr && expired(*p); p = List::next(p)) {
            ++n;
        }
        std::vector<Entry> out;
        out.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            out.push_back(extract_entry(nodes_.find(list.front()->id)));
        }
        return out;
    }

    RegistryOptions options_;
    Clock clock_;
    mutable Lock lock_;
    Map nodes_;
    ActivityList activity_;
    PingList ping_order_;
    PongList awaiting_;
    std::size_t awaiting_count_ = 0;
    ConnectionId next_id_ = 1;  // 0 is never an id: AddResult::id is 0 when refused
    Counters counters_;
};

/// ConnectionRegistry shared between threads (several io threads): every member locks a
/// std::mutex.
template <class Handle, class State, class Clock = std::chrono::steady_clock>
using SyncConnectionRegistry = ConnectionRegistry<Handle, State, std::mutex, Clock>;

}  // namespace wsguard
