// Tests for wsguard::RoomIndex: every join status, both directions kept
// consistent, empty rooms erased at once, refusals that change nothing, a
// random-operation comparison against a naive model, and SyncRoomIndex under
// threads.
#include <wsguard/room_index.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// Counting global allocation functions: a test can prove that a stretch of code
// allocated nothing.
#include <support/counting_new.hpp>

using wsguard::test::allocations;

namespace {

using Index = wsguard::RoomIndex<int>;
using wsguard::JoinStatus;

template <class T>
std::set<T> as_set(const std::vector<T>& v) {
    return std::set<T>(v.begin(), v.end());
}

// Everything the index can tell about itself, for "nothing changed" checks.
struct Snapshot {
    std::map<std::string, std::set<int>> rooms;
    std::map<int, std::set<std::string>> member_rooms;
    std::size_t room_count;
    std::size_t membership_count;

    bool operator==(const Snapshot& o) const {
        return rooms == o.rooms && member_rooms == o.member_rooms && room_count == o.room_count &&
               membership_count == o.membership_count;
    }
};

Snapshot snapshot(const Index& index, const std::vector<std::string>& room_names,
                  const std::vector<int>& member_ids) {
    Snapshot s;
    for (const auto& room : room_names) {
        auto members = as_set(index.members(room));
        if (!members.empty()) {
            s.rooms[room] = members;
        }
    }
    for (int member : member_ids) {
        auto rooms = as_set(index.rooms_of(member));
        if (!rooms.empty()) {
            s.member_rooms[member] = rooms;
        }
    }
    s.room_count = index.room_count();
    s.membership_count = index.membership_count();
    return s;
}

// Counts live copies, to show the index holds no member after everyone left.
struct CountedMember {
    static inline std::atomic<long> live{0};
    int id;
    explicit CountedMember(int i) : id(i) { ++live; }
    CountedMember(const CountedMember& o) : id(o.id) { ++live; }
    CountedMember& operator=(const CountedMember&) = default;
    ~CountedMember() { --live; }
};
struct CountedHash {
    std::size_t operator()(const CountedMember& m) const noexcept { return std::hash<int>{}(m.id); }
};
// No operator== on the type: equality comes from the policy parameter.
struct CountedEqual {
    bool operator()(const CountedMember& a, const CountedMember& b) const noexcept {
        return a.id == b.id;
    }
};

// A hash that throws once, on its n-th call, to drive join's rollback paths.
struct ThrowingHash {
    static inline int calls = 0;
    static inline int throw_on = -1;
    std::size_t operator()(int v) const {
        if (++calls == throw_on) {
            throw std::runtime_error("hash failure");
        }
        return std::hash<int>{}(v);
    }
};

}  // namespace

TEST_CASE("constructor refuses zero limits and keeps the options", "[room_index]") {
    wsguard::RoomOptions o;
    CHECK(o.max_rooms_per_member == 64);
    CHECK(o.max_room_name_length == 128);
    CHECK(o.max_rooms == 100000);

    o.max_rooms_per_member = 0;
    CHECK_THROWS_AS(Index(o), std::invalid_argument);
    o = {};
    o.max_room_name_length = 0;
    CHECK_THROWS_AS(Index(o), std::invalid_argument);
    o = {};
    o.max_rooms = 0;
    CHECK_THROWS_AS(Index(o), std::invalid_argument);

    o = {};
    o.max_rooms = 7;
    Index index(o);
    CHECK(index.options().max_rooms == 7);
    CHECK(index.room_count() == 0);
    CHECK(index.membership_count() == 0);
}

TEST_CASE("to_string names every join status and results convert to bool", "[room_index]") {
    const JoinStatus all[] = {
        JoinStatus::joined,        JoinStatus::already_member,    JoinStatus::empty_name,
        JoinStatus::name_too_long, JoinStatus::member_room_limit, JoinStatus::room_limit};
    std::set<std::string> texts;
    for (JoinStatus s : all) {
        const std::string text = wsguard::to_string(s);
        CHECK_FALSE(text.empty());
        texts.insert(text);
        const wsguard::JoinResult r{s, false, 0};
        CHECK(static_cast<bool>(r) == (s == JoinStatus::joined || s == JoinStatus::already_member));
    }
    CHECK(texts.size() == 6);
    CHECK(std::string(wsguard::to_string(JoinStatus::name_too_long)) == "room name is too long");

    CHECK(static_cast<bool>(wsguard::LeaveResult{true, false, 1}));
    CHECK_FALSE(static_cast<bool>(wsguard::LeaveResult{false, false, 0}));
}

TEST_CASE("join: joined, already_member and room creation", "[room_index]") {
    Index index;
    auto r = index.join(1, "lobby");
    CHECK(r.status == JoinStatus::joined);
    CHECK(r.room_created);
    CHECK(r.member_count == 1);
    CHECK(r);

    r = index.join(2, "lobby");
    CHECK(r.status == JoinStatus::joined);
    CHECK_FALSE(r.room_created);
    CHECK(r.member_count == 2);

    r = index.join(1, "lobby");
    CHECK(r.status == JoinStatus::already_member);
    CHECK(r);
    CHECK_FALSE(r.room_created);
    CHECK(r.member_count == 2);

    const auto s = index.stats();
    CHECK(s.joins == 2);
    CHECK(s.already_member == 1);
    CHECK(s.rooms_created == 1);
    CHECK(s.rooms == 1);
    CHECK(s.members == 2);
    CHECK(s.memberships == 2);
    CHECK(as_set(index.members("lobby")) == std::set<int>{1, 2});
    CHECK(index.rooms_of(1) == std::vector<std::string>{"lobby"});
    CHECK(index.contains(1, "lobby"));
    CHECK_FALSE(index.contains(3, "lobby"));
    CHECK_FALSE(index.contains(1, "other"));
    CHECK(index.room_count_of(1) == 1);
    CHECK(index.room_count_of(3) == 0);
}

TEST_CASE("join refuses empty and too long room names", "[room_index]") {
    wsguard::RoomOptions o;
    o.max_room_name_length = 8;
    Index index(o);

    auto r = index.join(1, "");
    CHECK(r.status == JoinStatus::empty_name);
    CHECK_FALSE(r);
    CHECK(r.member_count == 0);

    CHECK(index.join(1, std::string(8, 'a')).status == JoinStatus::joined);  // exactly the max
    r = index.join(1, std::string(9, 'a'));
    CHECK(r.status == JoinStatus::name_too_long);
    CHECK_FALSE(r.room_created);

    const auto s = index.stats();
    CHECK(s.refused_name == 2);
    CHECK(s.rooms == 1);
    CHECK(s.joins == 1);
    CHECK(index.rooms_of(1) == std::vector<std::string>{std::string(8, 'a')});
}

TEST_CASE("join refuses a member over max_rooms_per_member", "[room_index]") {
    wsguard::RoomOptions o;
    o.max_rooms_per_member = 2;
    Index index(o);
    REQUIRE(index.join(1, "a"));
    REQUIRE(index.join(1, "b"));
    REQUIRE(index.join(2, "c"));

    auto r = index.join(1, "c");  // existing room
    CHECK(r.status == JoinStatus::member_room_limit);
    CHECK(r.member_count == 1);
    r = index.join(1, "d");  // would create a room
    CHECK(r.status == JoinStatus::member_room_limit);
    CHECK(r.member_count == 0);
    CHECK(index.room_count() == 3);  // "d" was not created

    // At the limit, a room it is already in is still already_member, not a refusal.
    CHECK(index.join(1, "a").status == JoinStatus::already_member);

    // Leaving one room frees a slot.
    REQUIRE(index.leave(1, "a"));
    CHECK(index.join(1, "c").status == JoinStatus::joined);

    const auto s = index.stats();
    CHECK(s.refused_member_limit == 2);
    CHECK(s.already_member == 1);
    CHECK(as_set(index.rooms_of(1)) == std::set<std::string>{"b", "c"});
}

TEST_CASE("join refuses to create a room over max_rooms but joins existing ones", "[room_index]") {
    wsguard::RoomOptions o;
    o.max_rooms = 2;
    Index index(o);
    REQUIRE(index.join(1, "a"));
    REQUIRE(index.join(2, "b"));

    auto r = index.join(3, "c");
    CHECK(r.status == JoinStatus::room_limit);
    CHECK_FALSE(r);
    CHECK(index.room_count() == 2);
    CHECK(index.rooms_of(3).empty());
    CHECK(index.stats().members == 2);  // member 3 left no trace

    r = index.join(3, "a");  // existing room: fine at the room limit
    CHECK(r.status == JoinStatus::joined);
    CHECK(r.member_count == 2);

    // Once a room is erased there is space again.
    REQUIRE(index.leave(2, "b").room_now_empty);
    CHECK(index.join(3, "c").status == JoinStatus::joined);
    CHECK(index.stats().refused_room_limit == 1);
}

TEST_CASE("non-string rooms skip the name checks", "[room_index]") {
    wsguard::RoomIndex<int, int> index;
    auto r = index.join(1, 0);
    CHECK(r.status == JoinStatus::joined);
    CHECK(index.join(2, 0).member_count == 2);
    CHECK(index.rooms_of(1) == std::vector<int>{0});
    CHECK(index.leave_all(1) == 1);
    CHECK(index.member_count(0) == 1);
}

TEST_CASE("leave reports ok, room_now_empty and new_count and erases empty rooms at once",
          "[room_index]") {
    Index index;
    REQUIRE(index.join(1, "r"));
    REQUIRE(index.join(2, "r"));

    auto l = index.leave(1, "r");
    CHECK(l.ok);
    CHECK_FALSE(l.room_now_empty);
    CHECK(l.new_count == 1);
    CHECK(index.room_count() == 1);
    CHECK(index.rooms_of(1).empty());
    CHECK(index.stats().members == 1);  // member 1 is in no room: forgotten

    l = index.leave(1, "r");  // not a member any more
    CHECK_FALSE(l.ok);
    CHECK_FALSE(l.room_now_empty);
    CHECK(l.new_count == 1);

    l = index.leave(2, "r");
    CHECK(l.ok);
    CHECK(l.room_now_empty);
    CHECK(l.new_count == 0);
    CHECK(index.room_count() == 0);
    CHECK(index.member_count("r") == 0);
    CHECK(index.members("r").empty());

    l = index.leave(2, "never-existed");
    CHECK_FALSE(l);
    CHECK(l.new_count == 0);

    const auto s = index.stats();
    CHECK(s.leaves == 2);
    CHECK(s.leave_misses == 2);
    CHECK(s.rooms_created == 1);
    CHECK(s.rooms_erased == 1);
    CHECK(s.rooms == 0);
    CHECK(s.members == 0);
    CHECK(s.memberships == 0);

    // A room erased and joined again is a new room.
    CHECK(index.join(3, "r").room_created);
    CHECK(index.stats().rooms_created == 2);
}

TEST_CASE("leave_all leaves every room of a member and erases the ones it emptied",
          "[room_index]") {
    Index index;
    for (const char* room : {"a", "b", "c", "d", "e", "f"}) {  // more than the inline 4
        REQUIRE(index.join(1, room));
    }
    REQUIRE(index.join(2, "a"));
    REQUIRE(index.join(2, "b"));

    CHECK(index.leave_all(1) == 6);
    CHECK(index.rooms_of(1).empty());
    CHECK(index.room_count() == 2);  // c..f had only member 1
    CHECK(as_set(index.rooms_of(2)) == std::set<std::string>{"a", "b"});
    CHECK(index.members("a") == std::vector<int>{2});
    for (const char* room : {"c", "d", "e", "f"}) {
        CHECK(index.member_count(room) == 0);
        CHECK_FALSE(index.contains(1, room));
    }
    auto s = index.stats();
    CHECK(s.leaves == 6);
    CHECK(s.rooms_erased == 4);
    CHECK(s.memberships == 2);
    CHECK(s.members == 1);

    CHECK(index.leave_all(1) == 0);  // idempotent
    CHECK(index.leave_all(42) == 0);
    CHECK(index.leave_all(2) == 2);
    s = index.stats();
    CHECK(s.rooms == 0);
    CHECK(s.members == 0);
    CHECK(s.memberships == 0);
    CHECK(s.rooms_created == s.rooms_erased);
    CHECK(s.joins == s.leaves);
}

TEST_CASE("members() is a snapshot and for_each_member visits each member once", "[room_index]") {
    Index index;
    for (int m = 0; m < 10; ++m) {
        REQUIRE(index.join(m, "r"));
    }
    const auto snapshot_members = index.members("r");
    REQUIRE(index.leave_all(3) == 1);
    CHECK(snapshot_members.size() == 10);  // unaffected by the later leave

    std::vector<int> visited;
    index.for_each_member("r", [&](const int& m) { visited.push_back(m); });
    CHECK(visited.size() == index.member_count("r"));
    CHECK(as_set(visited) == as_set(index.members("r")));
    CHECK(as_set(visited).count(3) == 0);

    int calls = 0;
    index.for_each_member("missing", [&](const int&) { ++calls; });
    CHECK(calls == 0);
}

TEST_CASE("a refused join changes nothing", "[room_index]") {
    wsguard::RoomOptions o;
    o.max_rooms_per_member = 2;
    o.max_rooms = 3;
    o.max_room_name_length = 4;
    Index index(o);
    REQUIRE(index.join(1, "a"));
    REQUIRE(index.join(1, "b"));
    REQUIRE(index.join(2, "c"));
    const std::vector<std::string> names{"a", "b", "c", "d", "", "toolong"};
    const std::vector<int> ids{1, 2, 3};
    const Snapshot before = snapshot(index, names, ids);
    const auto stats_before = index.stats();

    CHECK(index.join(3, "").status == JoinStatus::empty_name);
    CHECK(index.join(3, "toolong").status == JoinStatus::name_too_long);
    CHECK(index.join(1, "c").status == JoinStatus::member_room_limit);
    CHECK(index.join(1, "d").status == JoinStatus::member_room_limit);
    CHECK(index.join(3, "d").status == JoinStatus::room_limit);

    CHECK(snapshot(index, names, ids) == before);
    const auto s = index.stats();
    CHECK(s.rooms == stats_before.rooms);
    CHECK(s.members == stats_before.members);
    CHECK(s.memberships == stats_before.memberships);
    CHECK(s.joins == stats_before.joins);
    CHECK(s.rooms_created == stats_before.rooms_created);
    CHECK(s.refused_name == 2);
    CHECK(s.refused_member_limit == 2);
    CHECK(s.refused_room_limit == 1);
}

TEST_CASE("a join that throws leaves the index as it was (strong guarantee)", "[room_index]") {
    using ThrowingIndex = wsguard::RoomIndex<int, std::string, wsguard::NullMutex, ThrowingHash>;
    ThrowingIndex index;
    REQUIRE(index.join(1, "old"));
    REQUIRE(index.join(2, "old"));

    // Fail each hash call of a join in turn: new member + new room, then an
    // existing member joining a new room, then a new member joining an old room.
    struct Case {
        int member;
        const char* room;
    };
    for (const Case c : {Case{7, "new"}, Case{1, "new"}, Case{7, "old"}}) {
        int thrown = 0;
        for (int n = 1;; ++n) {
            ThrowingHash::calls = 0;
            ThrowingHash::throw_on = n;
            bool threw = false;
            wsguard::JoinResult r{};
            try {
                r = index.join(c.member, c.room);
            } catch (const std::runtime_error&) {
                threw = true;
            }
            ThrowingHash::throw_on = -1;
            if (!threw) {
                CHECK(r.status == JoinStatus::joined);
                CHECK(index.contains(c.member, c.room));
                REQUIRE(index.leave(c.member, c.room).ok);
                break;
            }
            ++thrown;
            INFO("member " << c.member << " room " << c.room << " hash call " << n);
            CHECK_FALSE(index.contains(c.member, c.room));
            CHECK(as_set(index.members("old")) == std::set<int>{1, 2});
            CHECK(index.members("new").empty());
            CHECK(index.rooms_of(1) == std::vector<std::string>{"old"});
            CHECK(index.rooms_of(7).empty());
            const auto s = index.stats();
            CHECK(s.rooms == 1);
            CHECK(s.members == 2);
            CHECK(s.memberships == 2);
            REQUIRE(n < 20);
        }
        CHECK(thrown >= 1);
    }
}

TEST_CASE("custom member equality, and no member copy outlives its memberships", "[room_index]") {
    {
        wsguard::RoomIndex<CountedMember, std::string, wsguard::NullMutex, CountedHash,
                           std::hash<std::string>, CountedEqual>
            index;
        const long baseline = CountedMember::live.load();
        for (int m = 0; m < 20; ++m) {
            for (int r = 0; r < 3; ++r) {
                REQUIRE(index.join(CountedMember(m), "room" + std::to_string((m + r) % 7)));
            }
        }
        CHECK(index.join(CountedMember(0), "room0").status == JoinStatus::already_member);
        CHECK(index.membership_count() == 60);
        CHECK(CountedMember::live.load() > baseline);
        for (int m = 0; m < 20; ++m) {
            CHECK(index.leave_all(CountedMember(m)) == 3);
        }
        CHECK(index.room_count() == 0);
        CHECK(CountedMember::live.load() == baseline);
    }
    CHECK(CountedMember::live.load() == 0);
}

TEST_CASE("join and leave again allocate nothing once warm (spare nodes)", "[room_index]") {
    wsguard::RoomIndex<std::uint64_t> index;
    std::vector<std::string> rooms;
    for (int r = 0; r < 50; ++r) {
        rooms.push_back("room-" + std::to_string(r));  // short: no heap for the name
        for (std::uint64_t m = 0; m < 5; ++m) {
            REQUIRE(index.join(1000 + 10 * static_cast<std::uint64_t>(r) + m, rooms.back()));
        }
    }
    const auto cycle = [&](std::uint64_t member) {
        for (const std::string& room : rooms) {
            REQUIRE(index.join(member, room).status == JoinStatus::joined);
            REQUIRE(index.leave(member, room).ok);
        }
    };
    SECTION("the member's first room (its entry comes and goes)") {
        cycle(7);  // warm-up: the spares exist from here on
        const std::size_t before = allocations();
        for (int round = 0; round < 20; ++round) {
            cycle(7 + static_cast<std::uint64_t>(round));  // other members reuse them too
        }
        CHECK(allocations() == before);
    }
    SECTION("a member that stays in a lobby") {
        REQUIRE(index.join(7, "lobby"));
        cycle(7);
        const std::size_t before = allocations();
        for (int round = 0; round < 20; ++round) {
            cycle(7);
        }
        CHECK(allocations() == before);
        CHECK(index.leave_all(7) == 1);
    }
    const auto s = index.stats();
    CHECK(s.rooms == 50);
    CHECK(s.members == 250);
    CHECK(s.memberships == 250);
    CHECK(s.joins == s.leaves + 250);
}

TEST_CASE("spare nodes never hold a member (non-trivial members keep none)", "[room_index]") {
    wsguard::RoomIndex<std::shared_ptr<int>> index;
    auto resident = std::make_shared<int>(1);
    REQUIRE(index.join(resident, "a"));
    for (int i = 0; i < 10; ++i) {
        auto visitor = std::make_shared<int>(2);
        REQUIRE(index.join(visitor, "a"));
        REQUIRE(index.join(visitor, "b"));
        if (i % 2 == 0) {
            REQUIRE(index.leave(visitor, "a").ok);
            REQUIRE(index.leave(visitor, "b").ok);
        } else {
            REQUIRE(index.leave_all(visitor) == 2);
        }
        CHECK(visitor.use_count() == 1);  // no copy left behind in a spare
    }
    CHECK(resident.use_count() == 3);  // one copy per direction
    CHECK(index.leave_all(resident) == 1);
    CHECK(resident.use_count() == 1);
}

TEST_CASE("matches a naive model over random operations", "[room_index]") {
    wsguard::RoomOptions o;
    o.max_rooms_per_member = 5;
    o.max_rooms = 12;
    o.max_room_name_length = 6;
    Index index(o);

    std::vector<std::string> names;
    for (int i = 0; i < 16; ++i) {
        names.push_back("r" + std::to_string(i));
    }
    names.push_back("");
    names.push_back("toolong!");
    std::vector<int> ids;
    for (int m = 0; m < 24; ++m) {
        ids.push_back(m);
    }

    // The model: both directions as ordered maps, and every counter.
    std::map<std::string, std::set<int>> rooms;
    std::map<int, std::set<std::string>> member_rooms;
    wsguard::RoomStats expected{};

    std::mt19937 rng(20240601);
    auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    for (int step = 0; step < 6000; ++step) {
        const int member = ids[pick(ids.size())];
        const std::string& room = names[pick(names.size())];
        const auto op = pick(100);
        INFO("step " << step << " op " << op << " member " << member << " room '" << room << "'");

        if (op < 55) {
            JoinStatus want = JoinStatus::joined;
            const bool in_room = rooms.count(room) != 0 && rooms[room].count(member) != 0;
            const std::size_t member_rooms_now =
                member_rooms.count(member) != 0 ? member_rooms[member].size() : 0;
            if (room.empty()) {
                want = JoinStatus::empty_name;
            } else if (room.size() > o.max_room_name_length) {
                want = JoinStatus::name_too_long;
            } else if (in_room) {
                want = JoinStatus::already_member;
            } else if (member_rooms_now >= o.max_rooms_per_member) {
                want = JoinStatus::member_room_limit;
            } else if (rooms.count(room) == 0 && rooms.size() >= o.max_rooms) {
                want = JoinStatus::room_limit;
            }
            const bool creates = want == JoinStatus::joined && rooms.count(room) == 0;
            const auto r = index.join(member, room);
            REQUIRE(r.status == want);
            CHECK(r.room_created == creates);
            switch (want) {
                case JoinStatus::joined:
                    rooms[room].insert(member);
                    member_rooms[member].insert(room);
                    ++expected.joins;
                    expected.rooms_created += creates ? 1 : 0;
                    break;
                case JoinStatus::already_member:
                    ++expected.already_member;
                    break;
                case JoinStatus::empty_name:
                case JoinStatus::name_too_long:
                    ++expected.refused_name;
                    break;
                case JoinStatus::member_room_limit:
                    ++expected.refused_member_limit;
                    break;
                case JoinStatus::room_limit:
                    ++expected.refused_room_limit;
                    break;
            }
            CHECK(r.member_count == (rooms.count(room) != 0 ? rooms[room].size() : 0));
        } else if (op < 93) {
            const bool in_room = rooms.count(room) != 0 && rooms[room].count(member) != 0;
            const auto l = index.leave(member, room);
            REQUIRE(l.ok == in_room);
            if (in_room) {
                rooms[room].erase(member);
                member_rooms[member].erase(room);
                if (member_rooms[member].empty()) {
                    member_rooms.erase(member);
                }
                ++expected.leaves;
                const bool emptied = rooms[room].empty();
                CHECK(l.room_now_empty == emptied);
                if (emptied) {
                    rooms.erase(room);
                    ++expected.rooms_erased;
                }
            } else {
                ++expected.leave_misses;
                CHECK_FALSE(l.room_now_empty);
            }
            CHECK(l.new_count == (rooms.count(room) != 0 ? rooms[room].size() : 0));
        } else {
            std::size_t want = 0;
            if (member_rooms.count(member) != 0) {
                for (const auto& r : member_rooms[member]) {
                    rooms[r].erase(member);
                    if (rooms[r].empty()) {
                        rooms.erase(r);
                        ++expected.rooms_erased;
                    }
                }
                want = member_rooms[member].size();
                member_rooms.erase(member);
            }
            expected.leaves += want;
            REQUIRE(index.leave_all(member) == want);
        }

        // Every query against the model, after every operation.
        std::size_t memberships = 0;
        for (const auto& name : names) {
            const auto it = rooms.find(name);
            const std::set<int> want = it == rooms.end() ? std::set<int>{} : it->second;
            REQUIRE(as_set(index.members(name)) == want);
            REQUIRE(index.members(name).size() == want.size());  // no duplicates
            REQUIRE(index.member_count(name) == want.size());
            std::vector<int> visited;
            index.for_each_member(name, [&](const int& m) { visited.push_back(m); });
            REQUIRE(as_set(visited) == want);
            memberships += want.size();
        }
        for (int id : ids) {
            const auto it = member_rooms.find(id);
            const std::set<std::string> want =
                it == member_rooms.end() ? std::set<std::string>{} : it->second;
            const auto got = index.rooms_of(id);
            REQUIRE(as_set(got) == want);
            REQUIRE(got.size() == want.size());
            REQUIRE(index.room_count_of(id) == want.size());
            for (const auto& name : names) {
                REQUIRE(index.contains(id, name) == (want.count(name) != 0));
            }
        }
        const auto s = index.stats();
        REQUIRE(index.room_count() == rooms.size());
        REQUIRE(index.membership_count() == memberships);
        REQUIRE(s.rooms == rooms.size());
        REQUIRE(s.members == member_rooms.size());
        REQUIRE(s.memberships == memberships);
        REQUIRE(s.joins == expected.joins);
        REQUIRE(s.leaves == expected.leaves);
        REQUIRE(s.rooms_created == expected.rooms_created);
        REQUIRE(s.rooms_erased == expected.rooms_erased);
        REQUIRE(s.refused_name == expected.refused_name);
        REQUIRE(s.refused_member_limit == expected.refused_member_limit);
        REQUIRE(s.refused_room_limit == expected.refused_room_limit);
        REQUIRE(s.already_member == expected.already_member);
        REQUIRE(s.leave_misses == expected.leave_misses);
        REQUIRE(s.rooms == s.rooms_created - s.rooms_erased);
        REQUIRE(s.memberships == s.joins - s.leaves);
    }

    // The run exercised every outcome.
    const auto s = index.stats();
    CHECK(s.joins > 0);
    CHECK(s.already_member > 0);
    CHECK(s.refused_name > 0);
    CHECK(s.refused_member_limit > 0);
    CHECK(s.refused_room_limit > 0);
    CHECK(s.leave_misses > 0);
    CHECK(s.rooms_erased > 0);
}

TEST_CASE("SyncRoomIndex stays consistent under concurrent joins, leaves and reads",
          "[room_index][threaded]") {
    wsguard::RoomOptions o;
    o.max_rooms_per_member = 4;
    wsguard::SyncRoomIndex<int> index(o);
    constexpr int threads = 4;
    constexpr int members_per_thread = 8;
    constexpr int rooms = 6;
    constexpr int steps = 3000;

    std::atomic<bool> inconsistent{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t + 1));
            for (int step = 0; step < steps; ++step) {
                const int member =
                    t * members_per_thread + static_cast<int>(rng() % members_per_thread);
                const std::string room = "room" + std::to_string(rng() % rooms);
                switch (rng() % 6) {
                    case 0:
                    case 1:
                        index.join(member, room);
                        break;
                    case 2:
                        index.leave(member, room);
                        break;
                    case 3:
                        if (rng() % 8 == 0) {
                            index.leave_all(member);
                        }
                        break;
                    case 4: {
                        // This thread owns `member`: its view must be exact.
                        const bool in = index.contains(member, room);
                        const auto mine = index.rooms_of(member);
                        if (in != (std::find(mine.begin(), mine.end(), room) != mine.end())) {
                            inconsistent = true;
                        }
                        if (mine.size() > o.max_rooms_per_member) {
                            inconsistent = true;
                        }
                        break;
                    }
                    default: {
                        const auto s = index.stats();
                        if (s.rooms != s.rooms_created - s.rooms_erased ||
                            s.memberships != s.joins - s.leaves) {
                            inconsistent = true;
                        }
                        std::size_t seen = 0;
                        index.for_each_member(room, [&](const int&) { ++seen; });
                        (void)index.members(room);
                        (void)seen;
                        break;
                    }
                }
            }
            for (int m = 0; m < members_per_thread; ++m) {
                index.leave_all(t * members_per_thread + m);
            }
        });
    }
    for (auto& w : workers) {
        w.join();
    }

    CHECK_FALSE(inconsistent.load());
    const auto s = index.stats();
    CHECK(s.joins > 0);
    CHECK(s.rooms == 0);
    CHECK(s.members == 0);
    CHECK(s.memberships == 0);
    CHECK(s.joins == s.leaves);
    CHECK(s.rooms_created == s.rooms_erased);
    CHECK(index.room_count() == 0);
}
