// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RoomIndex: which members (connections) are in which rooms, indexed in both
// directions. A one-way room -> members map leaks in two ways on a server that
// runs for weeks: rooms that became empty are never erased, and a connection
// that closes without leaving stays in every room it joined. Keeping the
// member -> rooms direction makes leave_all(member) on close exact and cheap,
// and erasing a room the moment its last member leaves keeps the room count
// equal to the number of rooms anyone is actually in (uWebSockets' TopicTree
// does the same: unsubscribe returns {ok, last, newCount}, freeSubscriber runs
// on close). Limits on rooms per member, total rooms and room-name length stop
// one client from growing the index without bound; refusals are values.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <wsguard/null_mutex.hpp>

namespace wsguard {

/// What RoomIndex::join did. `joined` and `already_member` are success (the
/// member is in the room afterwards); every other value is a refusal that
/// changed nothing and is counted in RoomStats.
enum class JoinStatus {
    joined,             ///< The member was added to the room.
    already_member,     ///< The member was in the room already; nothing changed.
    empty_name,         ///< Refused: the room name is empty.
    name_too_long,      ///< Refused: the room name is longer than max_room_name_length bytes.
    member_room_limit,  ///< Refused: the member is already in max_rooms_per_member rooms.
    room_limit          ///< Refused: the index holds max_rooms rooms and this would create one.
};

/// Effect: Returns a short, static, human-readable description of `status`,
///         usable as the text of an error reply (e.g. "room name is too long").
/// Fails: Never fails; an out-of-range value yields "unknown join status".
/// Thread safety: Safe.
/// Exceptions: nothrow.
inline const char* to_string(JoinStatus status) noexcept {
    switch (status) {
        case JoinStatus::joined:
            return "joined";
        case JoinStatus::already_member:
            return "already a member of the room";
        case JoinStatus::empty_name:
            return "room name is empty";
        case JoinStatus::name_too_long:
            return "room name is too long";
        case JoinStatus::member_room_limit:
            return "too many rooms joined";
        case JoinStatus::room_limit:
            return "too many rooms on the server";
    }
    return "unknown join status";
}

/// The outcome of RoomIndex::join.
struct JoinResult {
    JoinStatus status;         ///< What happened.
    bool room_created;         ///< True if this join created the room (first member).
    std::size_t member_count;  ///< Members in the room after the call (0 if it does not exist).

    /// True for `joined` and `already_member`: the member is in the room.
    explicit operator bool() const noexcept {
        return status == JoinStatus::joined || status == JoinStatus::already_member;
    }
};

/// The outcome of RoomIndex::leave (uWebSockets' {ok, last, newCount}).
struct LeaveResult {
    bool ok;                ///< True if the member was in the room and has left it.
    bool room_now_empty;    ///< True if this leave emptied the room, which was then erased.
    std::size_t new_count;  ///< Members in the room after the call (0 if it does not exist).

    explicit operator bool() const noexcept { return ok; }
};

/// Every limit of a RoomIndex. Each must be at least 1.
struct RoomOptions {
    /// A chat client needs a handful of rooms; 64 leaves room for generous UIs
    /// (one room per open channel, thread or document) while capping what one
    /// misbehaving client can pin: 64 names of at most 128 bytes is ~8 KiB.
    std::size_t max_rooms_per_member = 64;
    /// Room names are identifiers: 128 bytes fits a UUID, a slug or a path such
    /// as "org/channel/thread". Longer names are almost always abuse, and the
    /// name is the largest part of an idle room's memory.
    std::size_t max_room_name_length = 128;
    /// Bounds the room map itself: without it 10k connections x 64 rooms could
    /// create 640k distinct rooms. 100k rooms of a few hundred bytes each is
    /// tens of MiB at worst, which a server can afford and alert on.
    std::size_t max_rooms = 100000;
};

/// A snapshot of every count a RoomIndex holds.
/// Invariants: rooms == rooms_created - rooms_erased, memberships == joins - leaves.
struct RoomStats {
    std::size_t rooms;            ///< Rooms with at least one member (empty rooms never exist).
    std::size_t members;          ///< Distinct members in at least one room.
    std::size_t memberships;      ///< (member, room) pairs: the sum of every room's member count.
    std::uint64_t joins;          ///< Joins that added a member (status `joined`).
    std::uint64_t leaves;         ///< Memberships removed, by leave() or leave_all().
    std::uint64_t rooms_created;  ///< Rooms created by a first member joining.
    std::uint64_t rooms_erased;   ///< Rooms erased because their last member left.
    std::uint64_t refused_name;   ///< Joins refused with empty_name or name_too_long.
    std::uint64_t refused_member_limit;  ///< Joins refused with member_room_limit.
    std::uint64_t refused_room_limit;    ///< Joins refused with room_limit.
    std::uint64_t already_member;        ///< Joins that found the member already in the room.
    std::uint64_t leave_misses;          ///< leave() calls for a member not in the room.
};

namespace detail {

// Room names are length-checked only when the Room type has a length (strings
// and string-like types); ids such as integers have no name to check.
template <class T, class = void>
struct has_size_and_empty : std::false_type {};
template <class T>
struct has_size_and_empty<T, std::void_t<decltype(std::declval<const T&>().size()),
                                         decltype(std::declval<const T&>().empty())>>
    : std::true_type {};

// The rooms of one member: pointers with inline room for N of them. Most
// connections are in a few rooms, so a member's first rooms cost no allocation
// beyond its map node. Lives in place in a map node: never copied or moved.
template <class T, std::size_t N>
class SmallPtrList {
public:
    SmallPtrList() noexcept = default;
    SmallPtrList(const SmallPtrList&) = delete;
    SmallPtrList& operator=(const SmallPtrList&) = delete;
    ~SmallPtrList() {
        if (data_ != inline_) {
            delete[] data_;
        }
    }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    T* const* begin() const noexcept { return data_; }
    T* const* end() const noexcept { return data_ + size_; }
    T** begin() noexcept { return data_; }
    T** end() noexcept { return data_ + size_; }
    T*& back() noexcept { return data_[size_ - 1]; }
    void pop_back() noexcept { --size_; }
    void clear() noexcept { size_ = 0; }  // keeps the capacity

    // Strong guarantee: on bad_alloc the list is unchanged.
    void push_back(T* p) {
        if (size_ == capacity_) {
            const std::size_t capacity = capacity_ * 2;
            T** data = new T*[capacity];
            std::copy(data_, data_ + size_, data);
            if (data_ != inline_) {
                delete[] data_;
            }
            data_ = data;
            capacity_ = capacity;
        }
        data_[size_++] = p;
    }

private:
    T* inline_[N] = {};
    T** data_ = inline_;
    std::size_t size_ = 0;
    std::size_t capacity_ = N;
};

}  // namespace detail

/// Rooms and their members, indexed both ways: room -> members and
/// member -> rooms, always consistent with each other.
///
/// A room exists exactly while it has at least one member: it is created by
/// its first join and erased by its last leave. Call leave_all(member) when a
/// connection closes. Refusals (bad room name, limits) are returned as a
/// JoinStatus, counted in stats(), and leave the index unchanged.
///
/// Member is a small copyable key such as a connection id; Room is usually
/// std::string. Each room name is stored once (in the room map); the member
/// side points at the room's node, so no lookup or copy of the name is needed
/// to leave every room of a member. MemberEqual/RoomEqual default to
/// std::equal_to and exist for keys without operator== (e.g. an owner_less
/// based comparison for weak handles).
///
/// Not copyable or movable: the member side points into the room map.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe with
/// Lock = std::mutex (SyncRoomIndex): every member function takes the lock.
/// Unsafe with Lock = NullMutex (one io thread).
template <class Member, class Room = std::string, class Lock = NullMutex,
          class MemberHash = std::hash<Member>, class RoomHash = std::hash<Room>,
          class MemberEqual = std::equal_to<Member>, class RoomEqual = std::equal_to<Room>>
class RoomIndex {
public:
    using member_type = Member;
    using room_type = Room;
    using lock_type = Lock;

    /// Effect: Creates an empty index with the given limits.
    /// Fails: Throws if any limit in `options` is 0.
    /// Thread safety: n/a (construction).
    /// Exceptions: std::invalid_argument naming the zero limit.
    explicit RoomIndex(RoomOptions options = {}) : options_(options) {
        if (options_.max_rooms_per_member == 0) {
            throw std::invalid_argument("wsguard::RoomIndex: max_rooms_per_member must be > 0");
        }
        if (options_.max_room_name_length == 0) {
            throw std::invalid_argument("wsguard::RoomIndex: max_room_name_length must be > 0");
        }
        if (options_.max_rooms == 0) {
            throw std::invalid_argument("wsguard::RoomIndex: max_rooms must be > 0");
        }
    }

    RoomIndex(const RoomIndex&) = delete;
    RoomIndex& operator=(const RoomIndex&) = delete;

    /// Effect: Adds `member` to `room`, creating the room if it has no members.
    ///         Checks, in this order: the name (empty_name, name_too_long; only
    ///         when Room has size()/empty()), already_member, the member's
    ///         room count (member_room_limit), the total room count when the
    ///         room would be created (room_limit).
    /// Fails: Returns a refusal status (counted in stats(); nothing changed).
    ///        `already_member` is success and changes nothing.
    /// Thread safety: Takes the lock.
    /// Exceptions: Strong: std::bad_alloc (or what Member/Room copies or the
    ///             hash throw) leaves the index as it was.
    JoinResult join(const Member& member, const Room& room) {
        std::lock_guard<Lock> guard(mutex_);
        if constexpr (detail::has_size_and_empty<Room>::value) {
            if (room.empty()) {
                ++refused_name_;
                return {JoinStatus::empty_name, false, 0};
            }
            if (static_cast<std::size_t>(room.size()) > options_.max_room_name_length) {
                ++refused_name_;
                return {JoinStatus::name_too_long, false, 0};
            }
        }

        auto member_it = members_.find(member);
        if (member_it != members_.end() &&
            member_it->second.size() >= options_.max_rooms_per_member) {
            // Rare path: being at the limit is only a refusal if this is a new room.
            auto room_it = rooms_.find(room);
            const std::size_t count = room_it == rooms_.end() ? 0 : room_it->second.size();
            if (room_it != rooms_.end() && room_it->second.count(member) != 0) {
                ++already_member_;
                return {JoinStatus::already_member, false, count};
            }
            ++refused_member_limit_;
            return {JoinStatus::member_room_limit, false, count};
        }

        // One hash of the room name on the common path: try_emplace finds or
        // creates. At the room limit only an existing room may be joined.
        typename RoomMap::iterator room_it;
        bool room_created = false;
        if (rooms_.size() < options_.max_rooms) {
            auto emplaced = rooms_.try_emplace(room);
            room_it = emplaced.first;
            room_created = emplaced.second;
        } else {
            room_it = rooms_.find(room);
            if (room_it == rooms_.end()) {
                ++refused_room_limit_;
                return {JoinStatus::room_limit, false, 0};
            }
        }

        MemberSet& room_members = room_it->second;
        bool inserted = false;
        try {
            inserted = insert_member(room_members, member);
        } catch (...) {
            if (room_created) {
                rooms_.erase(room_it);
            }
            throw;
        }
        if (!inserted) {
            ++already_member_;
            return {JoinStatus::already_member, false, room_members.size()};
        }

        try {
            if (member_it == members_.end()) {
                member_it = add_member(member);
            }
            member_it->second.push_back(&*room_it);
        } catch (...) {
            // Undo in reverse so both directions stay as they were.
            if (member_it != members_.end() && member_it->second.empty()) {
                drop_member(member_it);
            }
            drop_from_room(room_members, member);
            if (room_created) {
                rooms_.erase(room_it);
            }
            throw;
        }

        ++memberships_;
        ++joins_;
        if (room_created) {
            ++rooms_created_;
        }
        return {JoinStatus::joined, room_created, room_members.size()};
    }

    /// Effect: Removes `member` from `room`; if the room is then empty it is
    ///         erased at once (room_now_empty = true, new_count = 0).
    /// Fails: ok = false (counted as a leave miss) if `member` is not in `room`;
    ///        new_count is then the room's unchanged member count.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow unless the hash or equality functions throw.
    LeaveResult leave(const Member& member, const Room& room) {
        std::lock_guard<Lock> guard(mutex_);
        auto room_it = rooms_.find(room);
        if (room_it == rooms_.end()) {
            ++leave_misses_;
            return {false, false, 0};
        }
        MemberSet& room_members = room_it->second;
        if (!drop_from_room(room_members, member)) {
            ++leave_misses_;
            return {false, false, room_members.size()};
        }

        auto member_it = members_.find(member);
        assert(member_it != members_.end() && "RoomIndex: member side out of sync");
        RoomList& rooms = member_it->second;
        RoomEntry* const entry = &*room_it;
        for (auto it = rooms.begin(); it != rooms.end(); ++it) {
            if (*it == entry) {
                // Order of a member's rooms carries no meaning: swap and pop.
                *it = rooms.back();
                rooms.pop_back();
                break;
            }
        }
        if (rooms.empty()) {
            drop_member(member_it);
        }

        --memberships_;
        ++leaves_;
        if (room_members.empty()) {
            rooms_.erase(room_it);
            ++rooms_erased_;
            return {true, true, 0};
        }
        return {true, false, room_members.size()};
    }

    /// Effect: Removes `member` from every room it is in, erasing each room
    ///         that becomes empty. Call it when the connection closes.
    ///         Returns how many rooms the member left (0 if it was in none).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow unless the hash or equality functions throw.
    std::size_t leave_all(const Member& member) {
        std::lock_guard<Lock> guard(mutex_);
        auto member_it = members_.find(member);
        if (member_it == members_.end()) {
            return 0;
        }
        // The member map's key outlives the loop (erased last), whatever
        // `member` refers to.
        const Member& key = member_it->first;
        const RoomList& rooms = member_it->second;
        const std::size_t left = rooms.size();
        for (RoomEntry* entry : rooms) {
            drop_from_room(entry->second, key);
            if (entry->second.empty()) {
                rooms_.erase(rooms_.find(entry->first));
                ++rooms_erased_;
            }
        }
        drop_member(member_it);
        memberships_ -= left;
        leaves_ += left;
        return left;
    }

    /// Effect: Returns a copy of the members of `room` (empty if it does not
    ///         exist), in no particular order; safe to use after the call
    ///         (e.g. to send outside the lock).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: std::bad_alloc; the index is unchanged.
    std::vector<Member> members(const Room& room) const {
        std::lock_guard<Lock> guard(mutex_);
        std::vector<Member> out;
        auto room_it = rooms_.find(room);
        if (room_it != rooms_.end()) {
            out.assign(room_it->second.begin(), room_it->second.end());
        }
        return out;
    }

    /// Effect: Calls f(const Member&) for each member of `room`, under the
    ///         lock, without copying the member list. `f` must not call back
    ///         into this index (with std::mutex it would deadlock; with
    ///         NullMutex it would invalidate the iteration).
    /// Fails: Never fails; no call if the room does not exist.
    /// Thread safety: Takes the lock for the whole iteration.
    /// Exceptions: What `f` throws; the index is unchanged.
    template <class F>
    void for_each_member(const Room& room, F&& f) const {
        std::lock_guard<Lock> guard(mutex_);
        auto room_it = rooms_.find(room);
        if (room_it == rooms_.end()) {
            return;
        }
        for (const Member& member : room_it->second) {
            f(member);
        }
    }

    /// Effect: Returns a copy of the rooms `member` is in, in no particular
    ///         order (empty if none).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: std::bad_alloc (or what copying a Room throws).
    std::vector<Room> rooms_of(const Member& member) const {
        std::lock_guard<Lock> guard(mutex_);
        std::vector<Room> out;
        auto member_it = members_.find(member);
        if (member_it != members_.end()) {
            out.reserve(member_it->second.size());
            for (const RoomEntry* entry : member_it->second) {
                out.push_back(entry->first);
            }
        }
        return out;
    }

    /// Effect: Returns true if `member` is in `room`.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow unless the hash or equality functions throw.
    bool contains(const Member& member, const Room& room) const {
        std::lock_guard<Lock> guard(mutex_);
        auto room_it = rooms_.find(room);
        return room_it != rooms_.end() && room_it->second.count(member) != 0;
    }

    /// Effect: Returns the number of members of `room` (0 if it does not exist).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow unless the hash or equality functions throw.
    std::size_t member_count(const Room& room) const {
        std::lock_guard<Lock> guard(mutex_);
        auto room_it = rooms_.find(room);
        return room_it == rooms_.end() ? 0 : room_it->second.size();
    }

    /// Effect: Returns the number of rooms `member` is in.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow unless the hash or equality functions throw.
    std::size_t room_count_of(const Member& member) const {
        std::lock_guard<Lock> guard(mutex_);
        auto member_it = members_.find(member);
        return member_it == members_.end() ? 0 : member_it->second.size();
    }

    /// Effect: Returns the number of rooms (each has at least one member).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow.
    std::size_t room_count() const {
        std::lock_guard<Lock> guard(mutex_);
        return rooms_.size();
    }

    /// Effect: Returns the number of (member, room) pairs.
    /// Fails: Never fails.
    /// Thread safety: Takes the lock.
    /// Exceptions: nothrow.
    std::size_t membership_count() const {
        std::lock_guard<Lock> guard(mutex_);
        return memberships_;
    }

    /// Effect: Returns a snapshot of every count (see RoomStats).
    /// Fails: Never fails.
    /// Thread safety: Takes the lock; the snapshot is consistent.
    /// Exceptions: nothrow.
    RoomStats stats() const {
        std::lock_guard<Lock> guard(mutex_);
        RoomStats s{};
        s.rooms = rooms_.size();
        s.members = members_.size();
        s.memberships = memberships_;
        s.joins = joins_;
        s.leaves = leaves_;
        s.rooms_created = rooms_created_;
        s.rooms_erased = rooms_erased_;
        s.refused_name = refused_name_;
        s.refused_member_limit = refused_member_limit_;
        s.refused_room_limit = refused_room_limit_;
        s.already_member = already_member_;
        s.leave_misses = leave_misses_;
        return s;
    }

    /// Effect: Returns the limits given at construction.
    /// Fails: Never fails.
    /// Thread safety: Safe (immutable after construction).
    /// Exceptions: nothrow.
    const RoomOptions& options() const noexcept { return options_; }

private:
    using MemberSet = std::unordered_set<Member, MemberHash, MemberEqual>;
    using RoomMap = std::unordered_map<Room, MemberSet, RoomHash, RoomEqual>;
    // Nodes of an unordered_map never move (rehash relinks them), so the member
    // side can point at a room's node for as long as the room exists.
    using RoomEntry = typename RoomMap::value_type;
    using RoomList = detail::SmallPtrList<RoomEntry, 4>;
    using MemberMap = std::unordered_map<Member, RoomList, MemberHash, MemberEqual>;

    // One spare node per map (C++17 node handles), kept from the last leave
    // for the next join, so a member that joins and leaves again and again
    // (its first room, or any room) allocates nothing. Bounded: at most one
    // member-map node (whose room list keeps the capacity it grew to, at
    // most max_rooms_per_member pointers) and one room-set node. Only for
    // trivially destructible members (ids): a spare then holds nothing but
    // its own memory, never, say, a weak handle to a closed connection.
    static constexpr bool kKeepSpares = std::is_trivially_destructible_v<Member>;

    /// Adds member to a room's set; false if it was there already.
    /// Strong guarantee (a rehash may throw; the spare stays spare).
    bool insert_member(MemberSet& set, const Member& member) {
        if (!kKeepSpares || spare_in_room_.empty()) {
            return set.insert(member).second;
        }
        spare_in_room_.value() = member;
        auto result = set.insert(std::move(spare_in_room_));
        if (!result.inserted) {
            spare_in_room_ = std::move(result.node);
        }
        return result.inserted;
    }

    /// Removes member from a room's set, keeping its node as the spare;
    /// false if it was not there.
    bool drop_from_room(MemberSet& set, const Member& member) {
        typename MemberSet::node_type node = set.extract(member);
        if (node.empty()) {
            return false;
        }
        if (kKeepSpares && spare_in_room_.empty()) {
            spare_in_room_ = std::move(node);
        }
        return true;
    }

    /// Creates member's entry (no rooms yet). Strong guarantee.
    typename MemberMap::iterator add_member(const Member& member) {
        if (!kKeepSpares || spare_member_.empty()) {
            return members_.try_emplace(member).first;
        }
        spare_member_.key() = member;
        // Inserted: the caller found no entry for member.
        return members_.insert(std::move(spare_member_)).position;
    }

    /// Erases a member's entry, keeping the node (with an emptied room list)
    /// as the spare.
    void drop_member(typename MemberMap::iterator member_it) noexcept {
        if (kKeepSpares && spare_member_.empty()) {
            spare_member_ = members_.extract(member_it);
            spare_member_.mapped().clear();
        } else {
            members_.erase(member_it);
        }
    }

    RoomOptions options_;
    mutable Lock mutex_;
    RoomMap rooms_;
    MemberMap members_;
    typename MemberMap::node_type spare_member_;
    typename MemberSet::node_type spare_in_room_;
    std::size_t memberships_ = 0;
    std::uint64_t joins_ = 0;
    std::uint64_t leaves_ = 0;
    std::uint64_t rooms_created_ = 0;
    std::uint64_t rooms_erased_ = 0;
    std::uint64_t refused_name_ = 0;
    std::uint64_t refused_member_limit_ = 0;
    std::uint64_t refused_room_limit_ = 0;
    std::uint64_t already_member_ = 0;
    std::uint64_t leave_misses_ = 0;
};

/// RoomIndex shared between io threads: every call takes a std::mutex.
template <class Member, class Room = std::string>
using SyncRoomIndex = RoomIndex<Member, Room, std::mutex>;

}  // namespace wsguard
