// ServerGuard over the iostream transport: every byte in memory, time from a
// ManualClock, so limits, sweeps and leak proofs run without sockets or sleeps.
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include "support/iostream_pair.hpp"
#include "support/manual_clock.hpp"
#include "support/recording_bridge.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

// Live heap allocations of the whole process, for the net-zero proof.
#include "support/counting_new.hpp"

namespace {

using wsguard::ConnectionId;
using wsguard::test::IostreamPair;
using wsguard::test::ManualClock;
using wsguard::test::MemoryClient;
using Config = wsguard::wspp::core_lean;
using Guard = wsguard::wspp::ServerGuard<Config, wsguard::NullMutex, ManualClock>;
using Pair = IostreamPair<Config>;
using namespace std::chrono_literals;

struct Fixture {
    explicit Fixture(wsguard::wspp::GuardOptions options = {}) : guard(server, options, clock) {
        client.clear_access_channels(websocketpp::log::alevel::all);
        client.clear_error_channels(websocketpp::log::elevel::all);
        opened = guard.on_open.subscribe([this](ConnectionId id) { open_ids.push_back(id); });
        closed =
            guard.on_close.subscribe([this](ConnectionId id, const wsguard::wspp::CloseInfo& info) {
                close_ids.push_back(id);
                close_infos.push_back(info);
            });
    }

    websocketpp::server<Config> server;
    MemoryClient client;
    ManualClock clock;
    Guard guard;
    std::vector<ConnectionId> open_ids, close_ids;
    std::vector<wsguard::wspp::CloseInfo> close_infos;
    wsguard::ScopedListener opened, closed;
};

}  // namespace

TEST_CASE("open and close keep the registry and events in step", "[server_guard]") {
    Fixture f;
    Pair pair(f.server, f.client);
    REQUIRE(f.open_ids.size() == 1);
    CHECK(f.guard.stats().connections == 1);
    CHECK(f.guard.id_of(pair.server_handle()) == f.open_ids[0]);

    pair.close();
    REQUIRE(f.close_ids == f.open_ids);
    CHECK(f.close_infos[0].remote_code == websocketpp::close::status::normal);
    const auto s = f.guard.stats();
    CHECK(s.connections == 0);
    CHECK(s.opened == 1);
    CHECK(s.closed == 1);
    pair.release();
    CHECK(pair.server_handle().expired());
}

TEST_CASE("the id lives in the connection with the lean configs and in a map otherwise",
          "[server_guard]") {
    using Plain = websocketpp::config::core;
    static_assert(
        wsguard::wspp::detail::CarriesGuardId<websocketpp::server<Config>::connection_type>::value);
    static_assert(
        !wsguard::wspp::detail::CarriesGuardId<websocketpp::server<Plain>::connection_type>::value);

    Fixture f;
    Pair a(f.server, f.client), b(f.server, f.client);
    REQUIRE(f.open_ids.size() == 2);
    CHECK(f.server.get_con_from_hdl(a.server_handle())->wsguard_connection_id == f.open_ids[0]);
    CHECK(f.guard.id_of(b.server_handle()) == f.open_ids[1]);
    a.close();
    CHECK(f.guard.id_of(a.server_handle()) == std::nullopt);
    CHECK(f.guard.id_of(b.server_handle()) == f.open_ids[1]);

    websocketpp::server<Plain> plain_server;
    ManualClock clock;
    wsguard::wspp::ServerGuard<Plain, wsguard::NullMutex, ManualClock> plain(plain_server, {},
                                                                             clock);
    std::vector<ConnectionId> opened, closed;
    auto on_open = plain.on_open.subscribe([&](ConnectionId id) { opened.push_back(id); });
    auto on_close = plain.on_close.subscribe(
        [&](ConnectionId id, const wsguard::wspp::CloseInfo&) { closed.push_back(id); });
    wsguard::test::IostreamPair<Plain> c(plain_server, f.client), d(plain_server, f.client);
    REQUIRE(opened.size() == 2);
    CHECK(plain.id_of(c.server_handle()) == opened[0]);
    CHECK(plain.id_of(d.server_handle()) == opened[1]);
    CHECK(plain.send(opened[1], "hello") == wsguard::wspp::SendStatus::sent);
    c.close();
    CHECK(closed == std::vector<ConnectionId>{opened[0]});
    CHECK(plain.id_of(c.server_handle()) == std::nullopt);
    d.close();
    CHECK(plain.stats().connections == 0);
}

TEST_CASE("release_handshake_headers drops the header maps after the open listeners ran",
          "[server_guard]") {
    for (const bool release : {false, true}) {
        wsguard::wspp::GuardOptions options;
        options.release_handshake_headers = release;
        Fixture f(options);
        std::size_t headers_seen_at_open = 0;
        auto peek = f.guard.on_open.subscribe([&](ConnectionId) {
            const auto con =
                f.server.get_con_from_hdl(*f.guard.registry().handle(f.open_ids.back()));
            headers_seen_at_open = con->get_request().get_headers().size();
        });
        Pair pair(f.server, f.client);
        REQUIRE(f.open_ids.size() == 1);
        CHECK(headers_seen_at_open > 0);  // listeners still see the handshake
        const auto con = f.server.get_con_from_hdl(pair.server_handle());
        CHECK(con->get_request().get_headers().empty() == release);
        CHECK(con->get_response().get_headers().empty() == release);
        // The connection works as before.
        CHECK(f.guard.send(f.open_ids[0], "hello") == wsguard::wspp::SendStatus::sent);
        pair.close();
        CHECK(f.guard.stats().connections == 0);
    }
}

namespace {
const websocketpp::uri* uri_of(Fixture& f, Pair& pair) {
    return f.server.get_con_from_hdl(pair.server_handle())->get_uri().get();
}
}  // namespace

TEST_CASE("connections that asked for the same URI share one parsed copy", "[server_guard]") {
    Fixture f;
    Pair a(f.server, f.client, "ws://localhost/chat");
    Pair b(f.server, f.client, "ws://localhost/chat");
    Pair c(f.server, f.client, "ws://localhost/other?x=1");
    REQUIRE(f.open_ids.size() == 3);
    CHECK(uri_of(f, a) == uri_of(f, b));
    CHECK(uri_of(f, a) != uri_of(f, c));
    CHECK(uri_of(f, a)->get_resource() == "/chat");
    CHECK(uri_of(f, c)->get_resource() == "/other?x=1");
    CHECK(f.guard.stats().shared_uris == 2);
    // Sharing is invisible to the connection: it still sends and closes.
    CHECK(f.guard.send(f.open_ids[1], "hi") == wsguard::wspp::SendStatus::sent);
    for (Pair* p : {&a, &b, &c}) {
        p->close();
    }
    CHECK(f.guard.stats().connections == 0);
}

TEST_CASE("max_shared_uris zero leaves every connection its own URI", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.max_shared_uris = 0;
    Fixture f(options);
    Pair a(f.server, f.client, "ws://localhost/chat");
    Pair b(f.server, f.client, "ws://localhost/chat");
    REQUIRE(f.open_ids.size() == 2);
    CHECK(uri_of(f, a) != uri_of(f, b));
    CHECK(uri_of(f, a)->str() == uri_of(f, b)->str());
    CHECK(f.guard.stats().shared_uris == 0);
}

TEST_CASE("the shared URI table is bounded and forgets URIs no connection uses", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.max_shared_uris = 1;
    Fixture f(options);
    auto a = std::make_unique<Pair>(f.server, f.client, "ws://localhost/a");
    Pair b1(f.server, f.client, "ws://localhost/b");
    Pair b2(f.server, f.client, "ws://localhost/b");
    REQUIRE(f.open_ids.size() == 3);
    // "/a" is in use and fills the table: the "/b" connections keep their own.
    CHECK(f.guard.stats().shared_uris == 1);
    CHECK(uri_of(f, b1) != uri_of(f, b2));
    CHECK(uri_of(f, b1)->get_resource() == "/b");

    a->close();
    a->release();
    a.reset();  // no connection uses "/a" now
    Pair b3(f.server, f.client, "ws://localhost/b");
    Pair b4(f.server, f.client, "ws://localhost/b");
    CHECK(f.guard.stats().shared_uris == 1);
    CHECK(uri_of(f, b3) == uri_of(f, b4));
    CHECK(uri_of(f, b3) != uri_of(f, b1));
}

TEST_CASE("max connections refuses with 1013 and counts it", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.max_connections = 2;
    Fixture f(options);
    Pair a(f.server, f.client), b(f.server, f.client), c(f.server, f.client);
    CHECK(f.open_ids.size() == 2);
    CHECK(c.client_connection()->get_remote_close_code() ==
          websocketpp::close::status::try_again_later);
    const auto s = f.guard.stats();
    CHECK(s.rejected_connections == 1);
    CHECK(s.connections == 2);
    // A refused connection never reaches on_close: it was never admitted.
    CHECK(f.close_ids.empty());
}

TEST_CASE("an oversized message closes with 1009", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.max_message_bytes = 64;
    Fixture f(options);
    Pair pair(f.server, f.client);
    pair.send(std::string(65, 'x'));
    REQUIRE(f.close_infos.size() == 1);
    CHECK(f.close_infos[0].local_code == websocketpp::close::status::message_too_big);
    CHECK(f.guard.stats().closed_oversized == 1);
}

TEST_CASE("idle connections close with 1000 but messages keep them open", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.idle_timeout = 1000ms;
    options.ping_interval = 0ms;
    Fixture f(options);
    Pair quiet(f.server, f.client), chatty(f.server, f.client);
    for (int i = 0; i < 5; ++i) {
        f.clock.advance(400ms);
        chatty.send("hello");
        f.guard.tick();
        quiet.pump();
        chatty.pump();
    }
    REQUIRE(f.close_ids.size() == 1);
    CHECK(f.close_ids[0] == f.open_ids[0]);
    CHECK(quiet.client_connection()->get_remote_close_code() == websocketpp::close::status::normal);
    CHECK(quiet.client_connection()->get_remote_close_reason() == "Idle timeout");
    CHECK(f.guard.stats().closed_idle == 1);
    CHECK(f.guard.stats().connections == 1);
}

TEST_CASE("messages the server sends count as activity unless sends_count_as_activity is off",
          "[server_guard]") {
    for (const bool sends_count : {true, false}) {
        INFO("sends_count_as_activity " << sends_count);
        wsguard::wspp::GuardOptions options;
        options.idle_timeout = 1000ms;
        options.ping_interval = 0ms;
        options.sends_count_as_activity = sends_count;
        Fixture f(options);
        // A room member that only reads, one that gets send(), one that gets
        // send_prepared(), and a talker whose own messages keep it active.
        Pair reader(f.server, f.client), direct(f.server, f.client), prepared(f.server, f.client),
            talker(f.server, f.client);
        const ConnectionId ids[] = {f.open_ids[0], f.open_ids[1], f.open_ids[2]};
        const ConnectionId talker_id = f.open_ids[3];
        REQUIRE(f.guard.join(ids[0], "r").value());
        REQUIRE(f.guard.join(talker_id, "r").value());
        for (int i = 0; i < 5; ++i) {  // 2 s: twice the idle timeout
            f.clock.advance(400ms);
            talker.send("hello");
            f.guard.broadcast("r", "room traffic", talker_id);
            f.guard.send(ids[1], "direct");
            f.guard.send_prepared(ids[2], f.guard.prepare("prepared"));
            f.guard.tick();
            for (Pair* p : {&reader, &direct, &prepared, &talker}) {
                p->pump();
            }
        }
        const auto s = f.guard.stats();
        if (sends_count) {
            CHECK(f.close_ids.empty());
            CHECK(reader.received().size() == 5);
            CHECK(s.closed_idle == 0);
            CHECK(s.connections == 4);
        } else {
            // Closed by the tick at 1.2 s, right after a third message went to each.
            CHECK(f.close_ids == std::vector<ConnectionId>(std::begin(ids), std::end(ids)));
            CHECK(reader.received().size() == 3);
            CHECK(reader.client_connection()->get_remote_close_code() ==
                  websocketpp::close::status::normal);
            CHECK(reader.client_connection()->get_remote_close_reason() == "Idle timeout");
            CHECK(s.closed_idle == 3);
            CHECK(s.connections == 1);
        }
    }
}

TEST_CASE("pongs keep a connection alive but do not count as activity", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.idle_timeout = 1000ms;
    options.ping_interval = 300ms;
    Fixture f(options);
    Pair pair(f.server, f.client);
    for (int i = 0; i < 3; ++i) {  // 900 ms: pinged and answered, not yet idle
        f.clock.advance(300ms);
        f.guard.tick();
        pair.pump();
    }
    CHECK(f.close_ids.empty());
    CHECK(f.guard.stats().pongs_received >= 2);
    f.clock.advance(300ms);
    f.guard.tick();
    pair.pump();
    REQUIRE(f.close_ids.size() == 1);
    CHECK(pair.client_connection()->get_remote_close_reason() == "Idle timeout");
    CHECK(f.guard.stats().terminated_dead == 0);
}

TEST_CASE("a peer that stops answering pings is terminated", "[server_guard]") {
    wsguard::wspp::GuardOptions options;
    options.idle_timeout = 0ms;
    options.ping_interval = 500ms;
    Fixture f(options);
    Pair alive(f.server, f.client), dead(f.server, f.client);
    dead.client_connection()->set_ping_handler(
        [](websocketpp::connection_hdl, std::string) { return false; });
    for (int i = 0; i < 4; ++i) {  // two ping intervals
        f.clock.advance(250ms);
        f.guard.tick();
        alive.pump();
        dead.pump();
    }
    REQUIRE(f.close_ids.size() == 1);
    CHECK(f.close_ids[0] == f.open_ids[1]);
    CHECK(f.close_infos[0].local_code == websocketpp::close::status::abnormal_close);
    CHECK(f.guard.stats().terminated_dead == 1);
    CHECK(f.guard.stats().connections == 1);
}

TEST_CASE("rooms are left when a connection closes or vanishes", "[server_guard]") {
    Fixture f;
    Pair a(f.server, f.client), b(f.server, f.client);
    const ConnectionId ida = f.open_ids[0], idb = f.open_ids[1];
    REQUIRE(f.guard.join(ida, "lobby").value());
    REQUIRE(f.guard.join(idb, "lobby").value());
    REQUIRE(f.guard.join(idb, "games").value());
    CHECK(f.guard.stats().memberships == 3);

    a.close();
    CHECK(f.guard.stats().memberships == 2);
    b.abort();
    const auto s = f.guard.stats();
    CHECK(s.memberships == 0);
    CHECK(s.rooms == 0);
    CHECK(s.connections == 0);
    CHECK_FALSE(f.guard.join(ida, "lobby").has_value());
}

namespace {

// A std::mutex that runs the test's hook before each lock(), given the lock's
// address: a test can run a close at exactly that point of a join, on the one
// thread, so the interleaving of two io threads is forced deterministically.
struct HookedMutex {
    static inline std::function<void(const void*)> before_lock;
    void lock() {
        if (before_lock) {
            before_lock(this);
        }
        m.lock();
    }
    bool try_lock() { return m.try_lock(); }
    void unlock() { m.unlock(); }
    std::mutex m;
};
using HookedGuard = wsguard::wspp::ServerGuard<Config, HookedMutex, ManualClock>;

// The one lock `f` takes.
template <class F>
const void* lock_taken_by(F f) {
    std::vector<const void*> taken;
    HookedMutex::before_lock = [&](const void* lock) { taken.push_back(lock); };
    f();
    HookedMutex::before_lock = nullptr;
    REQUIRE(taken.size() == 1);
    return taken[0];
}

}  // namespace

TEST_CASE("a join racing its connection's close leaves no membership behind", "[server_guard]") {
    websocketpp::server<Config> server;
    MemoryClient client;
    client.clear_access_channels(websocketpp::log::alevel::all);
    client.clear_error_channels(websocketpp::log::elevel::all);
    ManualClock clock;
    HookedGuard guard(server, {}, clock);
    std::vector<ConnectionId> ids;
    std::vector<std::string> created, emptied;
    auto opened = guard.on_open.subscribe([&](ConnectionId id) { ids.push_back(id); });
    auto on_created =
        guard.on_room_created.subscribe([&](const std::string& r) { created.push_back(r); });
    auto on_emptied =
        guard.on_room_emptied.subscribe([&](const std::string& r) { emptied.push_back(r); });
    const void* registry_lock = lock_taken_by([&] { (void)guard.registry().size(); });
    const void* rooms_lock = lock_taken_by([&] { (void)guard.rooms().stats(); });
    Pair pair(server, client);
    REQUIRE(ids.size() == 1);
    bool closed = false;

    SECTION("the close runs between the join's check and its insertion") {
        // Another io thread's close: registry_.remove, then the rooms are left.
        HookedMutex::before_lock = [&](const void* lock) {
            if (lock == rooms_lock && !closed) {
                closed = true;
                pair.abort();
            }
        };
        const auto joined = guard.join(ids[0], "r");
        HookedMutex::before_lock = nullptr;
        REQUIRE(closed);
        CHECK_FALSE(joined.has_value());
    }
    SECTION("the close runs after the insertion, before the join returns") {
        bool inserted = false;
        HookedMutex::before_lock = [&](const void* lock) {
            inserted = inserted || lock == rooms_lock;
            if (inserted && lock == registry_lock && !closed) {
                closed = true;
                pair.abort();
            }
        };
        guard.join(ids[0], "r");
        HookedMutex::before_lock = nullptr;
        if (!closed) {
            pair.abort();  // a join that takes no lock after inserting: the close follows it
        }
    }
    const auto s = guard.stats();
    CHECK(s.connections == 0);
    CHECK(s.memberships == 0);
    CHECK(s.rooms == 0);
    CHECK_FALSE(guard.is_member(ids[0], "r"));
    // A bridge following the rooms sees each creation matched by an emptying.
    CHECK(created.size() == emptied.size());
    CHECK_FALSE(guard.join(ids[0], "r").has_value());
}

TEST_CASE("broadcast frames once and reaches every member but the sender", "[server_guard]") {
    Fixture f;
    std::vector<std::unique_ptr<Pair>> pairs;
    for (int i = 0; i < 4; ++i) {
        pairs.push_back(std::make_unique<Pair>(f.server, f.client));
        REQUIRE(f.guard.join(f.open_ids.back(), "r").value());
    }
    const auto result = f.guard.broadcast("r", "hi all", f.open_ids[0]);
    for (auto& p : pairs) {
        p->pump();
    }
    CHECK(result.recipients == 3);
    CHECK(result.sent == 3);
    CHECK(pairs[0]->received().empty());
    for (int i = 1; i < 4; ++i) {
        REQUIRE(pairs[i]->received().size() == 1);
        CHECK(pairs[i]->received()[0] == "hi all");
    }
    CHECK(f.guard.broadcast("nobody-here", "x").recipients == 0);
}

TEST_CASE("sends to unknown or closed connections are refused and counted", "[server_guard]") {
    Fixture f;
    Pair pair(f.server, f.client);
    const ConnectionId id = f.open_ids[0];
    CHECK(f.guard.send(id, "one") == wsguard::wspp::SendStatus::sent);
    pair.pump();
    pair.close();
    CHECK(f.guard.send(id, "two") == wsguard::wspp::SendStatus::not_connected);
    CHECK(f.guard.send(12345, "three") == wsguard::wspp::SendStatus::not_connected);
    pair.pump();
    REQUIRE(pair.received().size() == 1);
    CHECK(f.guard.stats().messages_out == 1);
}

TEST_CASE("stats report sends to closed connections and sends websocketpp refused",
          "[server_guard]") {
    Fixture f;
    Pair pair(f.server, f.client);
    const ConnectionId id = f.open_ids[0];
    CHECK(f.guard.stats().send_not_connected == 0);
    CHECK(f.guard.stats().send_failed == 0);
    // A text message that is not UTF-8: websocketpp refuses to frame it.
    CHECK(f.guard.send(id, "\xff\xfe") == wsguard::wspp::SendStatus::failed);
    CHECK(f.guard.send(id, "ok") == wsguard::wspp::SendStatus::sent);
    CHECK(f.guard.send(999, "x") == wsguard::wspp::SendStatus::not_connected);
    pair.close();
    CHECK(f.guard.send(id, "late") == wsguard::wspp::SendStatus::not_connected);
    auto s = f.guard.stats();
    CHECK(s.send_failed == 1);
    CHECK(s.send_not_connected == 2);
    CHECK(s.messages_out == 1);
}

TEST_CASE("the guard owns fan-out: a room broadcast reaches local members and the bridge",
          "[server_guard]") {
    Fixture f;
    Pair a(f.server, f.client), b(f.server, f.client);
    const ConnectionId ida = f.open_ids[0], idb = f.open_ids[1];
    REQUIRE(f.guard.join(ida, "r").value());
    REQUIRE(f.guard.join(idb, "r").value());
    CHECK(f.guard.is_member(ida, "r"));
    CHECK_FALSE(f.guard.is_member(ida, "other"));
    CHECK_FALSE(f.guard.is_member(12345, "r"));
    CHECK(f.guard.member_count("r") == 2);
    CHECK(f.guard.member_count("other") == 0);

    SECTION("the in-process default keeps it on this node and counts it") {
        const auto result = f.guard.broadcast("r", "one", ida);
        CHECK(result.sent == 1);
        CHECK(result.bridge == wsguard::wspp::PublishStatus::local_only);
        CHECK(f.guard.bridge().stats().local_only == 1);
    }
    SECTION("an attached bridge gets every text broadcast, members here or not") {
        wsguard::test::RecordingBridge bridge;
        f.guard.set_bridge(&bridge);
        CHECK(&f.guard.bridge() == &bridge);
        CHECK(f.guard.broadcast("r", "to all", ida).bridge == wsguard::wspp::PublishStatus::queued);
        CHECK(f.guard.broadcast("elsewhere-only", "far").recipients == 0);
        // What a bridge delivers from other nodes goes to local members only.
        CHECK(f.guard.broadcast_local("r", "from another node").sent == 2);
        // A bridge carries text: binary stays on this node, and says so.
        CHECK(f.guard.broadcast("r", "bin", 0, websocketpp::frame::opcode::binary).bridge ==
              wsguard::wspp::PublishStatus::local_only);
        using Published = std::vector<std::pair<std::string, std::string>>;
        CHECK(bridge.published == Published{{"r", "to all"}, {"elsewhere-only", "far"}});
        a.pump();
        b.pump();
        CHECK(a.received() == std::vector<std::string>{"from another node", "bin"});
        CHECK(b.received() == std::vector<std::string>{"to all", "from another node", "bin"});

        f.guard.set_bridge(nullptr);  // back to this node only
        f.guard.broadcast("r", "local again");
        CHECK(bridge.published.size() == 2);
        CHECK(f.guard.bridge().stats().state == wsguard::wspp::BridgeState::local);
    }
}

TEST_CASE("a payload websocketpp cannot frame reaches nobody, here or through the bridge",
          "[server_guard]") {
    Fixture f;
    Pair a(f.server, f.client), b(f.server, f.client);
    const ConnectionId ida = f.open_ids[0], idb = f.open_ids[1];
    REQUIRE(f.guard.join(ida, "r").value());
    REQUIRE(f.guard.join(idb, "r").value());
    wsguard::test::RecordingBridge bridge;
    f.guard.set_bridge(&bridge);
    const std::string not_utf8 = "caf\xc3";  // a truncated two-byte sequence
    CHECK_FALSE(f.guard.prepare(not_utf8));
    CHECK_FALSE(f.guard.prepare("x", websocketpp::frame::opcode::ping));
    CHECK(f.guard.send_prepared(ida, nullptr) == wsguard::wspp::SendStatus::failed);

    auto result = f.guard.broadcast("r", not_utf8, ida);
    CHECK(result.invalid_payload);
    CHECK(result.sent == 0);
    CHECK(result.bridge == wsguard::wspp::PublishStatus::local_only);
    // No member here: still refused before it reaches the other nodes.
    result = f.guard.broadcast("elsewhere-only", not_utf8);
    CHECK(result.invalid_payload);
    CHECK(result.recipients == 0);
    CHECK(f.guard.broadcast_local("r", not_utf8).invalid_payload);
    // The same bytes as binary are a valid frame.
    CHECK(f.guard.broadcast("r", not_utf8, 0, websocketpp::frame::opcode::binary).sent == 2);
    CHECK(f.guard.broadcast("r", "fine", ida).sent == 1);
    CHECK(bridge.published == std::vector<std::pair<std::string, std::string>>{{"r", "fine"}});
    a.pump();
    b.pump();
    CHECK(a.received() == std::vector<std::string>{not_utf8});
    CHECK(b.received() == std::vector<std::string>{not_utf8, "fine"});
    // One for send_prepared(nullptr), one per member of each refused local broadcast.
    CHECK(f.guard.stats().send_failed == 1 + 1 + 2);
    f.guard.set_bridge(nullptr);
}

TEST_CASE("shutdown closes every connection with 1001 and refuses new ones", "[server_guard]") {
    Fixture f;
    Pair a(f.server, f.client), b(f.server, f.client);
    f.guard.shutdown();
    a.pump();
    b.pump();
    CHECK(a.client_connection()->get_remote_close_code() == websocketpp::close::status::going_away);
    CHECK(b.client_connection()->get_remote_close_code() == websocketpp::close::status::going_away);
    CHECK(f.guard.stats().connections == 0);
    CHECK(f.guard.stats().closed_shutdown == 2);
    Pair late(f.server, f.client);
    CHECK(f.open_ids.size() == 2);
    CHECK(late.client_connection()->get_state() != websocketpp::session::state::open);
}

TEST_CASE("listeners attached to the guard are counted and dropped with their handles",
          "[server_guard]") {
    Fixture f;
    const auto base = f.guard.stats().listeners;
    {
        auto l = f.guard.on_message.subscribe([](ConnectionId, const Guard::message_ptr&) {});
        CHECK(f.guard.stats().listeners == base + 1);
    }
    CHECK(f.guard.stats().listeners == base);
}

namespace {

// One connect / join / message / close-or-abort cycle.
void run_cycle(Fixture& f, int i) {
    Pair pair(f.server, f.client);
    const ConnectionId id = f.open_ids.back();
    const auto handle = pair.server_handle();
    f.guard.join(id, "room-" + std::to_string(i % 7));
    pair.send("hello");
    f.guard.broadcast("room-" + std::to_string(i % 7), "fanout");
    if (i % 3 == 0) {
        pair.abort();
    } else {
        pair.close();
    }
    pair.release();
    REQUIRE(handle.expired());
}

}  // namespace

TEST_CASE("10,000 cycles leave every count at zero and every handle expired", "[server_guard]") {
    Fixture f;
    for (int i = 0; i < 10000; ++i) {
        run_cycle(f, i);
    }
    const auto s = f.guard.stats();
    CHECK(s.connections == 0);
    CHECK(s.rooms == 0);
    CHECK(s.memberships == 0);
    CHECK(s.queued_bytes == 0);
    CHECK(f.guard.queued_bytes_scan() == 0);
    CHECK(f.guard.stats().queued_bytes == 0);
    CHECK(s.opened == 10000);
    CHECK(s.closed == 10000);
    CHECK(s.messages_in == 10000);
}

TEST_CASE("after warm-up, more cycles leave no net live allocations", "[server_guard]") {
    Fixture f;
    // Warm-up grows the tables (hash buckets, scratch buffers) to their steady size.
    for (int i = 0; i < 1000; ++i) {
        run_cycle(f, i);
    }
    f.open_ids.clear();
    f.close_ids.clear();
    f.close_infos.clear();
    f.open_ids.shrink_to_fit();
    f.close_ids.shrink_to_fit();
    f.close_infos.shrink_to_fit();
    f.open_ids.reserve(2000);
    f.close_ids.reserve(2000);
    f.close_infos.reserve(2000);
    const std::int64_t before = wsguard::test::live_allocations();
    for (int i = 0; i < 1000; ++i) {
        run_cycle(f, i);
    }
    f.close_infos.clear();  // the CloseInfo reasons are the test's own, not the guard's
    const std::int64_t after = wsguard::test::live_allocations();
    CHECK(after - before == 0);
}
