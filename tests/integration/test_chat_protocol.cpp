// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Every row of the chat protocol (chat_router.hpp) over 127.0.0.1 with real
// websocketpp clients. join has no acknowledgement, so a ping/pong round trip
// orders it before anything relies on the membership: the server handles one
// connection's messages in order and queues its replies in order.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

using nlohmann::json;
using wsguard::test::ClientEndpoint;
using wsguard::test::ServerRunner;

namespace {

json join_msg(const std::string& room) {
    return {{"type", "join"}, {"room", room}};
}
json leave_msg(const std::string& room) {
    return {{"type", "leave"}, {"room", room}};
}
json say(const std::string& room, json content) {
    return {{"type", "room-message"}, {"room", room}, {"content", std::move(content)}};
}

// The next message must be the pong of a fresh ping: nothing else is pending.
bool only_pong_pending(wsguard::test::ClientConnection& c) {
    c.send(std::string(R"({"type":"ping"})"));
    auto j = c.next_json();
    if (!j) {
        return false;
    }
    UNSCOPED_INFO("next message: " << j->dump());
    return *j == json{{"type", "pong"}};
}

// Both clients open and members of `room`: each join ordered by a round trip.
bool join_both(const std::shared_ptr<wsguard::test::ClientConnection>& a,
               const std::shared_ptr<wsguard::test::ClientConnection>& b, const std::string& room) {
    if (!a || !b) {
        return false;
    }
    for (auto* m : {a.get(), b.get()}) {
        m->send(join_msg(room));
        if (!m->round_trip()) {
            return false;
        }
    }
    return true;
}

}  // namespace

TEST_CASE("ping is answered with pong", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);

    for (int i = 0; i < 3; ++i) {
        c->send(std::string(R"({"type":"ping"})"));
        auto reply = c->next_json();
        REQUIRE(reply);
        CHECK(*reply == json{{"type", "pong"}});
    }
    // Extra fields do not change what ping means.
    c->send(std::string(R"({"type":"ping","id":7})"));
    auto reply = c->next_json();
    REQUIRE(reply);
    CHECK(*reply == json{{"type", "pong"}});
    CHECK(c->pending() == 0);
    CHECK(server.stop());
}

TEST_CASE("a room message reaches every other member and never the sender", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    auto c = clients.connect_open(server.port());
    auto outsider = clients.connect_open(server.port());
    REQUIRE((a && b && c && outsider));
    for (auto* m : {a.get(), b.get(), c.get()}) {
        m->send(join_msg("lobby"));
        REQUIRE(m->round_trip());
    }
    outsider->send(join_msg("elsewhere"));
    REQUIRE(outsider->round_trip());

    a->send(say("lobby", "hello"));
    auto to_b = b->next_json();
    auto to_c = c->next_json();
    REQUIRE(to_b);
    REQUIRE(to_c);
    CHECK(to_b->value("type", "") == "message");
    CHECK(to_b->value("content", "") == "hello");
    REQUIRE(to_b->contains("from"));
    CHECK(to_b->at("from").is_number_unsigned());
    CHECK(to_b->size() == 3);  // type, from, content: nothing else
    CHECK(*to_c == *to_b);     // the same frame for every recipient
    const auto a_id = to_b->at("from").get<std::uint64_t>();

    // The sender's next message is the pong of a later ping, not its own message.
    CHECK(only_pong_pending(*a));
    CHECK(only_pong_pending(*outsider));

    // Another sender has another id; content of any JSON type goes through intact.
    const json rich = {{"text", "ünïcødé"}, {"n", 42}, {"list", {1, 2, 3}}, {"none", nullptr}};
    c->send(say("lobby", rich));
    auto to_a = a->next_json();
    to_b = b->next_json();
    REQUIRE(to_a);
    REQUIRE(to_b);
    CHECK(*to_a == json{{"type", "message"}, {"from", to_a->at("from")}, {"content", rich}});
    CHECK(*to_b == *to_a);
    CHECK(to_a->at("from").get<std::uint64_t>() != a_id);
    CHECK(only_pong_pending(*c));
    CHECK(only_pong_pending(*outsider));
    CHECK(server.stop());
}

TEST_CASE("one sender's room messages arrive in the order sent", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    REQUIRE(join_both(a, b, "seq"));
    constexpr int n = 200;
    for (int i = 0; i < n; ++i) {
        a->send(say("seq", i));
    }
    for (int i = 0; i < n; ++i) {
        auto m = b->next_json();
        REQUIRE(m);
        REQUIRE(m->value("content", -1) == i);
    }
    CHECK(only_pong_pending(*a));
    CHECK(server.stop());
}

TEST_CASE("leave stops delivery, and joining again resumes it", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    REQUIRE(join_both(a, b, "r"));
    a->send(say("r", "before"));
    auto got = b->next_json();
    REQUIRE(got);
    CHECK(got->value("content", "") == "before");

    b->send(leave_msg("r"));
    REQUIRE(b->round_trip());
    a->send(say("r", "after leave"));
    // a's pong is queued after its message was broadcast, so once it arrives
    // any copy for b is already queued ahead of b's own pong.
    REQUIRE(a->round_trip());
    CHECK(only_pong_pending(*b));

    // a is now alone in r: its messages go nowhere, but are not errors.
    a->send(say("r", "alone"));
    CHECK(only_pong_pending(*a));

    b->send(join_msg("r"));
    REQUIRE(b->round_trip());
    a->send(say("r", "welcome back"));
    got = b->next_json();
    REQUIRE(got);
    CHECK(got->value("content", "") == "welcome back");

    // Leaving the only room of a's empties nothing while b is still in it.
    a->send(leave_msg("r"));
    REQUIRE(a->round_trip());
    b->send(say("r", "anyone?"));
    REQUIRE(b->round_trip());
    CHECK(only_pong_pending(*a));

    json s;
    CHECK(wsguard::test::stats_eventually(
        server.port(), [](const json& j) { return wsguard::test::stat_of(j, "memberships") == 1; },
        s));
    CHECK(wsguard::test::stat_of(s, "rooms") == 1);
    CHECK(server.stop());
}

TEST_CASE("an object with an unknown type is echoed whole", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);

    const std::vector<json> objects = {
        {{"type", "shout"}},
        {{"type", "custom"}, {"n", 1}, {"nested", {{"a", {1, 2, {{"deep", true}}}}}}},
        {{"type", ""}, {"x", nullptr}},
        {{"type", "PING"}},  // types are case-sensitive
    };
    for (const auto& o : objects) {
        INFO("sent " << o.dump());
        c->send(o);
        auto reply = c->next_json();
        REQUIRE(reply);
        CHECK(*reply == json{{"type", "echo"}, {"data", o}});
    }
    CHECK(c->pending() == 0);
    CHECK(server.stop());
}

TEST_CASE("text that is not JSON gets an Invalid JSON error and the connection stays open",
          "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);

    for (const std::string bad : {"hello", "{", "{\"type\":\"ping\"", "", "[1,2", "{'type':'ping'}",
                                  "{\"type\":\"ping\"} trailing"}) {
        INFO("sent '" << bad << "'");
        c->send(bad);
        auto reply = c->next_json();
        REQUIRE(reply);
        CHECK(*reply == json{{"type", "error"}, {"error", "Invalid JSON"}});
        CHECK(only_pong_pending(*c));
    }
    CHECK(c->is_open());
    CHECK(server.stop());
}

TEST_CASE("malformed fields get an error reply, change nothing, and the connection stays usable",
          "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    auto peer = clients.connect_open(server.port());  // a member of R who must receive nothing
    REQUIRE(join_both(c, peer, "R"));

    struct Row {
        std::string sent;
        std::string error_mentions;
    };
    const std::string too_long(129, 'x');
    const std::vector<Row> rows = {
        {R"({"type":"join","room":5})", "room"},
        {R"({"type":"join"})", "room"},
        {R"({"type":"leave","room":["R"]})", "room"},
        {R"({"type":"room-message","room":null,"content":"x"})", "room"},
        {R"({"type":"room-message","room":{"name":"R"},"content":"x"})", "room"},
        {json{{"type", "join"}, {"room", too_long}}.dump(), "too long"},
        {json{{"type", "room-message"}, {"room", too_long}, {"content", "x"}}.dump(), "join"},
        {R"({"type":"join","room":""})", "empty"},
        {R"({"type":"room-message","room":"R"})", "content"},
        {R"([{"type":"ping"}])", "object"},
        {R"("ping")", "object"},
        {R"(42)", "object"},
        {R"(null)", "object"},
        {R"({"no_type":"ping"})", "type"},
        {R"({"type":7})", "type"},
        {R"({"type":"room-message","room":"not-joined","content":"x"})", "join"},
        {R"({"type":"leave","room":"not-joined"})", "not a member"},
    };
    for (const auto& row : rows) {
        INFO("sent " << row.sent);
        c->send(row.sent);
        auto reply = c->next_json();
        REQUIRE(reply);
        CHECK(reply->value("type", "") == "error");
        CHECK(reply->size() == 2);
        CHECK(reply->value("error", "").find(row.error_mentions) != std::string::npos);
        CHECK(only_pong_pending(*c));
    }
    c->send_binary(std::string("\x01\x02\x03", 3));
    auto reply = c->next_json();
    REQUIRE(reply);
    CHECK(reply->value("type", "") == "error");
    CHECK(reply->value("error", "").find("binary") != std::string::npos);

    // No refused message reached the other member, and no refused join or
    // leave changed a membership.
    CHECK(only_pong_pending(*peer));
    json s;
    CHECK(wsguard::test::stats_eventually(
        server.port(), [](const json& j) { return wsguard::test::stat_of(j, "memberships") == 2; },
        s));
    CHECK(wsguard::test::stat_of(s, "rooms") == 1);
    CHECK(wsguard::test::stat_of(s, "connections") == 2);

    // Still fully usable: a room message after all the errors is delivered.
    c->send(say("R", "still here"));
    auto got = peer->next_json();
    REQUIRE(got);
    CHECK(got->value("content", "") == "still here");
    CHECK(c->is_open());
    CHECK(server.stop());
}

TEST_CASE("room names: 128 bytes is accepted, joining twice is not an error", "[chat_protocol]") {
    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    REQUIRE((a && b));
    const std::string longest(128, 'r');
    for (auto* m : {a.get(), b.get()}) {
        m->send(join_msg(longest));
        REQUIRE(only_pong_pending(*m));  // no error reply to a valid join
    }
    a->send(join_msg(longest));  // already a member: still a member, no reply
    CHECK(only_pong_pending(*a));
    a->send(say(longest, "long room"));
    auto got = b->next_json();
    REQUIRE(got);
    CHECK(got->value("content", "") == "long room");
    CHECK(only_pong_pending(*a));
    CHECK(server.stop());
}

TEST_CASE("messages many times the read buffer arrive whole and in order", "[chat_protocol]") {
    using Config = chat::ChatServer<>::Config;
    static_assert(Config::connection_read_buffer_size == WSGUARD_CHAT_READ_BUFFER_BYTES);
    const std::size_t buffer = Config::connection_read_buffer_size;

    ServerRunner<> server;
    ClientEndpoint clients;
    auto a = clients.connect_open(server.port());
    auto b = clients.connect_open(server.port());
    REQUIRE(join_both(a, b, "big"));
    // Sizes around and far beyond the buffer: each takes many read calls, and
    // one frame's end and the next frame's start share a read.
    const std::vector<std::size_t> sizes{buffer - 40,    buffer,    buffer + 1,
                                         4 * buffer + 3, 64 * 1024, 300 * 1024};
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const std::string content(sizes[i], static_cast<char>('a' + i));
        a->send(say("big", content));
        a->send(json{{"type", "note"}, {"text", content}});
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const std::string content(sizes[i], static_cast<char>('a' + i));
        auto got = b->next_json();
        REQUIRE(got);
        CHECK((*got)["type"] == "message");
        CHECK((*got)["content"].get<std::string>() == content);
        auto echo = a->next_json();
        REQUIRE(echo);
        CHECK((*echo)["type"] == "echo");
        CHECK((*echo)["data"]["text"].get<std::string>() == content);
    }
    CHECK(only_pong_pending(*a));
    CHECK(only_pong_pending(*b));
    CHECK(server.stop());
}
