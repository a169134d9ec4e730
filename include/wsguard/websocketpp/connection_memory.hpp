// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// What a guard does to make an idle websocketpp connection cost less, apart
// from the guard's story (admit, track, send, broadcast, sweep, close):
//  - ConnectionIds: where the guard finds its id for a connection. In the
//    connection itself when the config's connection_base carries one
//    (GuardConnectionBase, the lean configs), else in a map from connection
//    address to id (~40 B per connection and a hash lookup per message);
//  - SharedUris: connections that asked for the same URI share one parsed
//    copy instead of keeping ~130 B each;
//  - release_handshake_headers: drops the opening handshake's header maps,
//    which websocketpp keeps for the connection's life (~1 KB with browsers).
// Each figure is measured in benchmarks/RESULTS.md ("every byte of an idle
// connection").
#pragma once

#include <websocketpp/common/connection_hdl.hpp>
#include <websocketpp/uri.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsguard::wspp {

/// A config's connection_base that carries the id ServerGuard gave the
/// connection, so the guard reads it from the connection instead of keeping a
/// map from connection to id. Any connection_base with a member
/// `std::atomic<std::uint64_t> wsguard_connection_id` works the same way.
struct GuardConnectionBase {
    std::atomic<std::uint64_t> wsguard_connection_id{0};  // 0: not admitted; ~0: handshake
};

namespace detail {

/// Whether the config's connections carry the guard's id (GuardConnectionBase).
template <class Connection, class = void>
struct CarriesGuardId : std::false_type {};
template <class Connection>
struct CarriesGuardId<
    Connection,
    std::enable_if_t<std::is_same_v<decltype(std::declval<Connection&>().wsguard_connection_id),
                                    std::atomic<std::uint64_t>>>> : std::true_type {};

}  // namespace detail

/// The guard's id of each admitted connection (0 is never an id).
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe with a real
/// Lock (or when the id lives in the connection); Unsafe with NullMutex.
template <class Connection, class Lock>
class ConnectionIds {
public:
    /// Whether the id lives in the connection (no table, no lock).
    static constexpr bool in_connection = detail::CarriesGuardId<Connection>::value;

    /// Effect: records `id` for `con`. Never fails. Exceptions: std::bad_alloc (map form).
    void store(Connection& con, std::uint64_t id) {
        if constexpr (in_connection) {
            con.wsguard_connection_id.store(id, std::memory_order_release);
        } else {
            std::lock_guard<Lock> lock(mutex_);
            ids_[&con] = id;
        }
    }

    /// Effect: forgets `con`'s id and returns it; 0 if it had none (refused
    /// at capacity, a handshake that never opened, or taken already). A
    /// pending mark stays (see mark_pending()).
    /// Never fails. Exceptions: nothrow, but for std::system_error from a real Lock.
    std::uint64_t take(Connection& con) {
        if constexpr (in_connection) {
            std::uint64_t id = con.wsguard_connection_id.load(std::memory_order_acquire);
            while (id != 0 && id != pending_mark &&
                   !con.wsguard_connection_id.compare_exchange_weak(id, 0,
                                                                    std::memory_order_acq_rel)) {
            }
            return id == pending_mark ? 0 : id;
        } else {
            std::lock_guard<Lock> lock(mutex_);
            const auto it = ids_.find(&con);
            if (it == ids_.end() || it->second == pending_mark) {
                return 0;
            }
            const std::uint64_t id = it->second;
            ids_.erase(it);
            return id;
        }
    }

    /// Effect: marks `con` as a handshake in progress, in the slot its id
    /// takes once it opens (no memory of its own). Call it before the
    /// connection starts. Never fails. Exceptions: std::bad_alloc (map form).
    void mark_pending(Connection& con) { store(con, pending_mark); }

    /// Effect: removes `con`'s pending mark; whether it had one. Never fails.
    /// Exceptions: nothrow, but for std::system_error from a real Lock.
    bool take_pending(Connection& con) {
        if constexpr (in_connection) {
            std::uint64_t expected = pending_mark;
            return con.wsguard_connection_id.compare_exchange_strong(expected, 0,
                                                                     std::memory_order_acq_rel);
        } else {
            std::lock_guard<Lock> lock(mutex_);
            const auto it = ids_.find(&con);
            if (it == ids_.end() || it->second != pending_mark) {
                return false;
            }
            ids_.erase(it);
            return true;
        }
    }

    /// Effect: the id of the connection behind `hdl`; nullopt if it has none
    /// or is gone. Never fails. Exceptions: nothrow, but for std::system_error
    /// from a real Lock.
    std::optional<std::uint64_t> find(const ::websocketpp::connection_hdl& hdl) const {
        const auto owner = hdl.lock();
        if (!owner) {
            return std::nullopt;
        }
        std::uint64_t id = 0;
        if constexpr (in_connection) {
            id = static_cast<Connection*>(owner.get())
                     ->wsguard_connection_id.load(std::memory_order_acquire);
        } else {
            std::lock_guard<Lock> lock(mutex_);
            const auto it = ids_.find(owner.get());
            id = it == ids_.end() ? 0 : it->second;
        }
        return id != 0 && id != pending_mark ? std::optional<std::uint64_t>(id) : std::nullopt;
    }

private:
    // Never an id: ids count up from 1.
    static constexpr std::uint64_t pending_mark = ~std::uint64_t{0};

    mutable Lock mutex_;
    std::unordered_map<const void*, std::uint64_t> ids_;  // unused when in_connection
};

/// A bounded table of parsed URIs that connections share: a URI is immutable
/// once parsed, so connections that asked for the same one can hold one copy.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe with a real
/// Lock; Unsafe with NullMutex.
template <class Lock>
class SharedUris {
public:
    /// `capacity` distinct URIs at most; 0 shares nothing.
    explicit SharedUris(std::size_t capacity) : capacity_(capacity) {}

    /// Effect: gives `con` the table's copy of its URI, or enters its URI in
    /// the table. When the table is full, entries no connection uses are
    /// dropped first; a URI that still finds no room stays the connection's own.
    /// Call it before any other thread knows the connection (set_uri is unlocked).
    /// Never fails. Exceptions: std::bad_alloc.
    template <class Connection>
    void share(Connection& con) {
        if (capacity_ == 0) {
            return;
        }
        ::websocketpp::uri_ptr uri = con.get_uri();
        if (!uri) {
            return;
        }
        std::string key = uri->str();
        std::lock_guard<Lock> lock(mutex_);
        if (auto it = uris_.find(key); it != uris_.end()) {
            con.set_uri(it->second);
            return;
        }
        if (uris_.size() >= capacity_) {
            // Only the table holds these (it alone hands out copies, under
            // the lock): no connection uses them any more.
            for (auto it = uris_.begin(); it != uris_.end();) {
                it = it->second.use_count() == 1 ? uris_.erase(it) : std::next(it);
            }
            if (uris_.size() >= capacity_) {
                return;
            }
        }
        uris_.emplace(std::move(key), std::move(uri));
    }

    /// Effect: distinct URIs in the table. Never fails. Exceptions: nothrow.
    std::size_t size() const {
        std::lock_guard<Lock> lock(mutex_);
        return uris_.size();
    }

private:
    const std::size_t capacity_;
    mutable Lock mutex_;
    std::unordered_map<std::string, ::websocketpp::uri_ptr> uris_;  // str() -> parsed
};

namespace detail {

template <class Message>
void clear_headers(Message& m) {
    std::vector<std::string> keys;
    keys.reserve(m.get_headers().size());
    for (const auto& h : m.get_headers()) {
        keys.push_back(h.first);
    }
    for (const auto& k : keys) {
        m.remove_header(k);
    }
}

}  // namespace detail

/// Effect: drops the header maps of `con`'s opening handshake (request and
/// response); get_request_header() and friends return empty afterwards. Call
/// it after the open handler's own use of them.
/// Never fails. Exceptions: std::bad_alloc.
///
/// websocketpp offers the parsed request and response only as const
/// references, but they are the connection's own non-const members and
/// nothing in websocketpp reads their headers after the open handler (the
/// open is logged before it runs).
template <class Connection>
void release_handshake_headers(Connection& con) {
    detail::clear_headers(const_cast<typename Connection::request_type&>(con.get_request()));
    detail::clear_headers(const_cast<typename Connection::response_type&>(con.get_response()));
}

}  // namespace wsguard::wspp
