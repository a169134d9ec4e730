// wsguard fuzzing — RoomIndex against a naive model.
// SPDX-License-Identifier: MIT
//
// The input picks small limits (rooms per member, room-name length, total rooms) so
// that every refusal happens, then a sequence of join / leave / leave_all over a few
// members and short room names (empty and too long ones included). The model is two
// std::maps of std::sets, one per direction, written from the contract comments of
// room_index.hpp; after every operation every result, every stats() field and every
// query (both directions, for every member and every name seen) must agree.
#pragma once

#include <wsguard/room_index.hpp>

#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace wsguard::fuzz {

/// The contract of RoomIndex<Member, std::string>, one std::map per direction.
/// Shared with the router fuzzer, whose fake guard holds a real RoomIndex.
template <class Member>
class RoomModel {
public:
    explicit RoomModel(const RoomOptions& options) : options_(options) {}

    JoinResult join(const Member& member, const std::string& room) {
        if (room.empty()) {
            ++stats_.refused_name;
            return {JoinStatus::empty_name, false, 0};
        }
        if (room.size() > options_.max_room_name_length) {
            ++stats_.refused_name;
            return {JoinStatus::name_too_long, false, 0};
        }
        const auto room_it = rooms_.find(room);
        const bool exists = room_it != rooms_.end();
        const std::size_t count = exists ? room_it->second.size() : 0;
        if (exists && room_it->second.count(member) != 0) {
            ++stats_.already_member;
            return {JoinStatus::already_member, false, count};
        }
        const auto member_it = members_.find(member);
        if (member_it != members_.end() &&
            member_it->second.size() >= options_.max_rooms_per_member) {
            ++stats_.refused_member_limit;
            return {JoinStatus::member_room_limit, false, count};
        }
        if (!exists && rooms_.size() >= options_.max_rooms) {
            ++stats_.refused_room_limit;
            return {JoinStatus::room_limit, false, 0};
        }
        rooms_[room].insert(member);
        members_[member].insert(room);
        ++stats_.joins;
        if (!exists) {
            ++stats_.rooms_created;
        }
        return {JoinStatus::joined, !exists, count + 1};
    }

    LeaveResult leave(const Member& member, const std::string& room) {
        const auto room_it = rooms_.find(room);
        if (room_it == rooms_.end() || room_it->second.count(member) == 0) {
            ++stats_.leave_misses;
            return {false, false, room_it == rooms_.end() ? 0 : room_it->second.size()};
        }
        remove(member, room);
        const std::size_t left = member_count(room);
        return {true, left == 0, left};
    }

    std::size_t leave_all(const Member& member) {
        const auto member_it = members_.find(member);
        if (member_it == members_.end()) {
            return 0;
        }
        const std::set<std::string> rooms = member_it->second;
        for (const std::string& room : rooms) {
            remove(member, room);
        }
        return rooms.size();
    }

    std::size_t member_count(const std::string& room) const {
        const auto it = rooms_.find(room);
        return it == rooms_.end() ? 0 : it->second.size();
    }
    const std::map<std::string, std::set<Member>>& rooms() const noexcept { return rooms_; }
    const std::map<Member, std::set<std::string>>& members() const noexcept { return members_; }
    /// The counters; rooms, members and memberships are derived from the maps.
    const RoomStats& counters() const noexcept { return stats_; }

    std::size_t memberships() const {
        std::size_t n = 0;
        for (const auto& kv : rooms_) {
            n += kv.second.size();
        }
        return n;
    }

private:
    void remove(const Member& member, const std::string& room) {
        auto room_it = rooms_.find(room);
        room_it->second.erase(member);
        if (room_it->second.empty()) {
            rooms_.erase(room_it);
            ++stats_.rooms_erased;
        }
        auto member_it = members_.find(member);
        member_it->second.erase(room);
        if (member_it->second.empty()) {
            members_.erase(member_it);
        }
        ++stats_.leaves;
    }

    RoomOptions options_;
    std::map<std::string, std::set<Member>> rooms_;
    std::map<Member, std::set<std::string>> members_;
    RoomStats stats_{};
};

/// Every query of `index` against `model`, for the given members and room names
/// (which should include every name ever used, so erased rooms are checked too).
template <class Index, class Member>
void check_rooms_same(const Index& index, const RoomModel<Member>& model,
                      const std::vector<Member>& members, const std::set<std::string>& names) {
    const RoomStats s = index.stats();
    const RoomStats& c = model.counters();
    WSGUARD_FUZZ_CHECK(s.rooms == model.rooms().size());
    WSGUARD_FUZZ_CHECK(s.members == model.members().size());
    WSGUARD_FUZZ_CHECK(s.memberships == model.memberships());
    WSGUARD_FUZZ_CHECK(s.joins == c.joins);
    WSGUARD_FUZZ_CHECK(s.leaves == c.leaves);
    WSGUARD_FUZZ_CHECK(s.rooms_created == c.rooms_created);
    WSGUARD_FUZZ_CHECK(s.rooms_erased == c.rooms_erased);
    WSGUARD_FUZZ_CHECK(s.refused_name == c.refused_name);
    WSGUARD_FUZZ_CHECK(s.refused_member_limit == c.refused_member_limit);
    WSGUARD_FUZZ_CHECK(s.refused_room_limit == c.refused_room_limit);
    WSGUARD_FUZZ_CHECK(s.already_member == c.already_member);
    WSGUARD_FUZZ_CHECK(s.leave_misses == c.leave_misses);
    // RoomStats' invariants, by their definitions.
    WSGUARD_FUZZ_CHECK(s.rooms == s.rooms_created - s.rooms_erased);
    WSGUARD_FUZZ_CHECK(s.memberships == s.joins - s.leaves);
    WSGUARD_FUZZ_CHECK(index.room_count() == s.rooms);
    WSGUARD_FUZZ_CHECK(index.membership_count() == s.memberships);
    WSGUARD_FUZZ_CHECK(s.rooms <= index.options().max_rooms);

    std::size_t sum_of_counts = 0;
    for (const std::string& name : names) {
        const auto it = model.rooms().find(name);
        const std::set<Member> expected =
            it == model.rooms().end() ? std::set<Member>{} : it->second;
        const std::vector<Member> listed = index.members(name);
        WSGUARD_FUZZ_CHECK(listed.size() == expected.size());
        WSGUARD_FUZZ_CHECK(std::set<Member>(listed.begin(), listed.end()) == expected);
        std::set<Member> visited;
        index.for_each_member(
            name, [&](const Member& m) { WSGUARD_FUZZ_CHECK(visited.insert(m).second); });
        WSGUARD_FUZZ_CHECK(visited == expected);
        WSGUARD_FUZZ_CHECK(index.member_count(name) == expected.size());
        sum_of_counts += index.member_count(name);
        for (const Member& m : members) {
            WSGUARD_FUZZ_CHECK(index.contains(m, name) == (expected.count(m) != 0));
        }
    }
    // memberships is the sum of every room's member count (every room's name is in
    // `names`, and names of rooms that do not exist count 0).
    WSGUARD_FUZZ_CHECK(sum_of_counts == s.memberships);

    std::size_t sum_of_rooms = 0;
    for (const Member& m : members) {
        const auto it = model.members().find(m);
        const std::set<std::string> expected =
            it == model.members().end() ? std::set<std::string>{} : it->second;
        const std::vector<std::string> listed = index.rooms_of(m);
        WSGUARD_FUZZ_CHECK(listed.size() == expected.size());
        WSGUARD_FUZZ_CHECK(std::set<std::string>(listed.begin(), listed.end()) == expected);
        WSGUARD_FUZZ_CHECK(index.room_count_of(m) == expected.size());
        WSGUARD_FUZZ_CHECK(expected.size() <= index.options().max_rooms_per_member);
        sum_of_rooms += expected.size();
    }
    WSGUARD_FUZZ_CHECK(sum_of_rooms == s.memberships);
}

namespace rooms_detail {

inline bool same(const JoinResult& a, const JoinResult& b) {
    return a.status == b.status && a.room_created == b.room_created &&
           a.member_count == b.member_count && static_cast<bool>(a) == static_cast<bool>(b);
}

inline bool same(const LeaveResult& a, const LeaveResult& b) {
    return a.ok == b.ok && a.room_now_empty == b.room_now_empty && a.new_count == b.new_count &&
           static_cast<bool>(a) == static_cast<bool>(b);
}

}  // namespace rooms_detail

/// The fuzzer body: see the file comment. Throws CheckFailure on any disagreement.
inline void fuzz_rooms(const std::uint8_t* data, std::size_t size) {
    using rooms_detail::same;
    FuzzInput in(data, size);

    RoomOptions options;
    // A member's rooms are stored inline up to 4: up to 6 makes the list grow.
    options.max_rooms_per_member = 1 + in.below(6);
    options.max_room_name_length = 1 + in.below(3);
    options.max_rooms = 1 + in.below(12);

    const std::vector<int> members = {0, 1, 2, 3, 4, 5};
    RoomIndex<int> index(options);
    RoomModel<int> model(options);
    std::set<std::string> names;

    // Names over a three-letter alphabet, from empty to one past the length limit.
    auto name = [&]() {
        std::string out(in.below(options.max_room_name_length + 2), 'a');
        for (char& ch : out) {
            ch = static_cast<char>('a' + in.below(3));
        }
        names.insert(out);
        return out;
    };

    while (!in.empty()) {
        switch (in.below(8)) {
            case 0:
            case 1:
            case 2:
            case 3: {
                const int member = members[in.below(members.size())];
                const std::string room = name();
                WSGUARD_FUZZ_CHECK(same(index.join(member, room), model.join(member, room)));
                break;
            }
            case 4:
            case 5:
            case 6: {
                const int member = members[in.below(members.size())];
                const std::string room = name();
                WSGUARD_FUZZ_CHECK(same(index.leave(member, room), model.leave(member, room)));
                break;
            }
            default: {
                const int member = members[in.below(members.size())];
                WSGUARD_FUZZ_CHECK(index.leave_all(member) == model.leave_all(member));
                break;
            }
        }
        check_rooms_same(index, model, members, names);
    }
}

}  // namespace wsguard::fuzz
