// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RoomIndex micro-benchmarks against the naive index a server starts with:
// std::unordered_map<std::string, std::unordered_set<Member>>, room -> members
// only. RoomIndex also keeps member -> rooms (so leave_all on close is exact),
// erases empty rooms and checks limits; join/leave pays for that bookkeeping,
// and these numbers say how much. Iterating a room is the broadcast path.
#include <wsguard/room_index.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "alloc_counter.hpp"

namespace {

using Member = std::uint64_t;

constexpr std::size_t room_count = 1000;
constexpr std::size_t members_per_room = 10;  // residents, so rooms never empty
constexpr std::size_t big_room_size = 1000;
constexpr Member probe_member = 1'000'000;  // outside the residents' ids

std::vector<std::string> room_names() {
    std::vector<std::string> names;
    names.reserve(room_count);
    for (std::size_t i = 0; i < room_count; ++i) {
        names.push_back("room-" + std::to_string(i));  // short: no heap for the name
    }
    return names;
}

class WsguardRooms {
public:
    WsguardRooms() : index_(options()) {}
    bool join(Member m, const std::string& room) {
        return index_.join(m, room).status == wsguard::JoinStatus::joined;
    }
    bool leave(Member m, const std::string& room) { return index_.leave(m, room).ok; }
    std::size_t leave_all(Member m) { return index_.leave_all(m); }
    template <class F>
    void for_each_member(const std::string& room, F&& f) const {
        index_.for_each_member(room, f);
    }
    std::size_t memberships() const { return index_.membership_count(); }
    const wsguard::RoomIndex<Member, std::string>& index() const { return index_; }

private:
    static wsguard::RoomOptions options() {
        wsguard::RoomOptions o;
        o.max_rooms = 10 * room_count;  // limits exist but never bind here
        return o;
    }

    wsguard::RoomIndex<Member, std::string> index_;
};

/// The one-way index: what RoomIndex replaces. leave erases an empty room (the
/// correct naive version); leave_all can only scan every room.
class NaiveRooms {
public:
    bool join(Member m, const std::string& room) { return rooms_[room].insert(m).second; }
    bool leave(Member m, const std::string& room) {
        const auto it = rooms_.find(room);
        if (it == rooms_.end() || it->second.erase(m) == 0) {
            return false;
        }
        if (it->second.empty()) {
            rooms_.erase(it);
        }
        return true;
    }
    std::size_t leave_all(Member m) {
        std::size_t left = 0;
        for (auto it = rooms_.begin(); it != rooms_.end();) {
            const std::size_t erased = it->second.erase(m);
            left += erased;
            if (erased != 0 && it->second.empty()) {
                it = rooms_.erase(it);
            } else {
                ++it;
            }
        }
        return left;
    }
    template <class F>
    void for_each_member(const std::string& room, F&& f) const {
        const auto it = rooms_.find(room);
        if (it == rooms_.end()) {
            return;
        }
        for (const Member& m : it->second) {
            f(m);
        }
    }
    std::size_t memberships() const {
        std::size_t n = 0;
        for (const auto& room : rooms_) {
            n += room.second.size();
        }
        return n;
    }

private:
    std::unordered_map<std::string, std::unordered_set<Member>> rooms_;
};

template <class Rooms>
void fill_residents(Rooms& rooms, const std::vector<std::string>& names) {
    Member next = 0;
    for (const std::string& name : names) {
        for (std::size_t k = 0; k < members_per_room; ++k) {
            rooms.join(next++, name);
        }
    }
}

// One member joins one of 1000 rooms (10 residents each) and leaves it again.
// in_lobby: the member is already in another room (a connection that has
// joined a lobby), so RoomIndex's member entry exists; otherwise this is the
// member's first room and RoomIndex creates and erases its member entry too.
template <class Rooms, bool in_lobby>
void room_join_leave(benchmark::State& state) {
    const std::vector<std::string> names = room_names();
    const std::string lobby = "lobby";
    Rooms rooms;
    fill_residents(rooms, names);
    if constexpr (in_lobby) {
        rooms.join(probe_member, lobby);
    }
    const std::size_t before = rooms.memberships();
    std::size_t next = 0;
    // Outcomes are counted, not passed to DoNotOptimize, whose memory clobber
    // would cost each side a different number of barriers.
    std::size_t done = 0;
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            const std::string& room = names[next];
            done += rooms.join(probe_member, room) ? 1 : 0;
            done += rooms.leave(probe_member, room) ? 1 : 0;
            next = next + 1 == room_count ? 0 : next + 1;
        }
    }
    if (done != 2 * static_cast<std::size_t>(state.iterations()) || rooms.memberships() != before) {
        state.SkipWithError("join/leave did not balance");
    }
}

// Visit every member of a room of 1000: the broadcast loop.
template <class Rooms>
void room_iterate(benchmark::State& state) {
    const std::vector<std::string> names = room_names();
    Rooms rooms;
    fill_residents(rooms, names);
    const std::string big = "big-room";
    for (Member m = 0; m < big_room_size; ++m) {
        rooms.join(m, big);
    }
    Member sum = 0;
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            rooms.for_each_member(big, [&sum](const Member& m) { sum += m; });
            benchmark::ClobberMemory();
        }
    }
    benchmark::DoNotOptimize(sum);
    const Member expected = big_room_size * (big_room_size - 1) / 2;
    if (sum != expected * static_cast<Member>(state.iterations())) {
        state.SkipWithError("not every member was visited once");
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(big_room_size));
}

// members(room): the copy a server takes to send outside the lock.
void room_members_copy(benchmark::State& state) {
    const std::vector<std::string> names = room_names();
    WsguardRooms rooms;
    fill_residents(rooms, names);
    const std::string big = "big-room";
    for (Member m = 0; m < big_room_size; ++m) {
        rooms.join(m, big);
    }
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            std::vector<Member> members = rooms.index().members(big);
            benchmark::DoNotOptimize(members.data());
        }
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(big_room_size));
}

// A closing connection that is in 4 of 1000 rooms: join the 4, then leave_all.
// RoomIndex walks the member's own rooms; the one-way map must scan every room.
template <class Rooms>
void room_leave_all(benchmark::State& state) {
    constexpr std::size_t rooms_joined = 4;
    const std::vector<std::string> names = room_names();
    Rooms rooms;
    fill_residents(rooms, names);
    const std::size_t before = rooms.memberships();
    std::size_t next = 0;
    std::size_t done = 0;
    {
        const wsguard::bench::AllocsPerOp allocs(state);
        for (auto _ : state) {
            for (std::size_t k = 0; k < rooms_joined; ++k) {
                done += rooms.join(probe_member, names[(next + k * 250) % room_count]) ? 1 : 0;
            }
            done += rooms.leave_all(probe_member);
            next = next + 1 == room_count ? 0 : next + 1;
        }
    }
    if (done != 2 * rooms_joined * static_cast<std::size_t>(state.iterations()) ||
        rooms.memberships() != before) {
        state.SkipWithError("leave_all did not remove every membership");
    }
}

}  // namespace

BENCHMARK_TEMPLATE(room_join_leave, WsguardRooms, true)->Name("BM_RoomJoinLeave/wsguard");
BENCHMARK_TEMPLATE(room_join_leave, WsguardRooms, false)
    ->Name("BM_RoomJoinLeave/wsguard_first_room");
BENCHMARK_TEMPLATE(room_join_leave, NaiveRooms, true)->Name("BM_RoomJoinLeave/naive");

BENCHMARK_TEMPLATE(room_iterate, WsguardRooms)->Name("BM_RoomIterate1000/wsguard");
BENCHMARK_TEMPLATE(room_iterate, NaiveRooms)->Name("BM_RoomIterate1000/naive");
BENCHMARK(room_members_copy)->Name("BM_RoomIterate1000/wsguard_members_copy");

BENCHMARK_TEMPLATE(room_leave_all, WsguardRooms)->Name("BM_RoomLeaveAll/wsguard");
BENCHMARK_TEMPLATE(room_leave_all, NaiveRooms)->Name("BM_RoomLeaveAll/naive_scan");
