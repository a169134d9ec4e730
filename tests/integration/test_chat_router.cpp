// ChatRouter against a real ServerGuard over the iostream transport: every
// row of the protocol table, the error replies, the counts, and fan-out
// through the guard (local members and the guard's bridge), with no sockets.
#include "chat_router.hpp"

#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include "support/iostream_pair.hpp"
#include "support/recording_bridge.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

using wsguard::ConnectionId;
using Config = wsguard::wspp::core_lean;
using Guard = wsguard::wspp::ServerGuard<Config>;
using Pair = wsguard::test::IostreamPair<Config>;
using Router = chat::ChatRouter<Guard>;
using nlohmann::json;

/// A guard, the router on its message event, and a way to add clients.
struct Node {
    Node() : guard(server), router(guard) {
        client.clear_access_channels(websocketpp::log::alevel::all);
        client.clear_error_channels(websocketpp::log::elevel::all);
        server.clear_access_channels(websocketpp::log::alevel::all);
        opened = guard.on_open.subscribe([this](ConnectionId id) { last_id = id; });
        routed = guard.on_message.subscribe([this](ConnectionId id, const Guard::message_ptr& m) {
            if (m->get_opcode() == websocketpp::frame::opcode::text) {
                router.handle_text(id, m->get_payload());
            } else {
                router.handle_binary(id);
            }
        });
    }

    /// A new client and the id the guard gave it.
    std::pair<std::unique_ptr<Pair>, ConnectionId> connect() {
        auto p = std::make_unique<Pair>(server, client);
        return {std::move(p), last_id};
    }

    websocketpp::server<Config> server;
    wsguard::test::MemoryClient client;
    Guard guard;
    Router router;
    ConnectionId last_id = 0;
    wsguard::ScopedListener opened, routed;
};

/// Sends `text` from `from`, lets every pair talk, returns what `from` got back.
std::vector<json> say(Pair& from, const std::string& text, std::vector<Pair*> others = {}) {
    from.received().clear();
    from.send(text);
    from.pump();
    for (Pair* p : others) {
        p->pump();
    }
    std::vector<json> out;
    for (const auto& r : from.received()) {
        out.push_back(json::parse(r));
    }
    return out;
}

json error_of(const std::string& what) {
    return json{{"type", "error"}, {"error", what}};
}

}  // namespace

TEST_CASE("ChatRouter: ping, echo and every malformed input get the reply the table says",
          "[chat_router]") {
    Node node;
    auto [a, ida] = node.connect();
    CHECK(say(*a, R"({"type":"ping"})") == std::vector<json>{json{{"type", "pong"}}});
    // The pong is framed once and shared: a second one is the same bytes.
    CHECK(say(*a, R"({"type":"ping"})") == std::vector<json>{json{{"type", "pong"}}});
    CHECK(say(*a, R"({"type":"hello","n":[1,2]})") ==
          std::vector<json>{json{{"type", "echo"}, {"data", {{"type", "hello"}, {"n", {1, 2}}}}}});
    CHECK(say(*a, "not json") == std::vector<json>{error_of("Invalid JSON")});
    CHECK(say(*a, "[1,2]") == std::vector<json>{error_of("message must be a JSON object")});
    CHECK(say(*a, R"({"type":7})") ==
          std::vector<json>{error_of("message needs a string \"type\"")});
    CHECK(say(*a, R"({"type":"join","room":5})") ==
          std::vector<json>{error_of("\"room\" must be a string")});
    CHECK(say(*a, R"({"type":"room-message","room":"r"})") ==
          std::vector<json>{error_of("\"content\" is missing")});
    CHECK(say(*a, std::string(65, '[') + std::string(65, ']')) ==
          std::vector<json>{error_of("message nested too deeply (max 64 levels)")});
    // 64 levels is allowed: it parses, and is not an object.
    CHECK(say(*a, std::string(64, '[') + std::string(64, ']')) ==
          std::vector<json>{error_of("message must be a JSON object")});
    a->received().clear();
    a->client_connection()->send(std::string("\x01\x02"), websocketpp::frame::opcode::binary);
    a->pump();
    REQUIRE(a->received().size() == 1);
    CHECK(json::parse(a->received()[0]) ==
          error_of("binary frames are not supported; send JSON text"));

    const auto s = node.router.stats();
    CHECK(s.handled == 11);
    CHECK(s.errors == 8);
    CHECK(s.room_messages == 0);
    CHECK(s.deliveries == 0);
    CHECK(node.guard.stats().connections == 1);  // no error closed the connection
    (void)ida;
}

TEST_CASE("ChatRouter: joins, leaves and room messages go through the guard", "[chat_router]") {
    Node node;
    auto [a, ida] = node.connect();
    auto [b, idb] = node.connect();
    auto [c, idc] = node.connect();
    std::vector<Pair*> all = {a.get(), b.get(), c.get()};

    // Not a member yet: refused, nobody gets anything.
    CHECK(say(*a, R"({"type":"room-message","room":"r","content":"x"})", all) ==
          std::vector<json>{error_of("join the room before sending to it")});
    CHECK(say(*a, R"({"type":"leave","room":"r"})") ==
          std::vector<json>{error_of("not a member of this room")});

    CHECK(say(*a, R"({"type":"join","room":"r"})").empty());
    CHECK(say(*b, R"({"type":"join","room":"r"})").empty());
    CHECK(node.guard.is_member(ida, "r"));
    CHECK(node.guard.is_member(idb, "r"));
    CHECK_FALSE(node.guard.is_member(idc, "r"));
    CHECK(node.guard.member_count("r") == 2);

    b->received().clear();
    c->received().clear();
    CHECK(say(*a, R"({"type":"room-message","room":"r","content":{"k":1}})", all).empty());
    REQUIRE(b->received().size() == 1);
    CHECK(json::parse(b->received()[0]) ==
          json{{"type", "message"}, {"from", ida}, {"content", {{"k", 1}}}});
    CHECK(c->received().empty());  // not a member

    CHECK(say(*b, R"({"type":"leave","room":"r"})").empty());
    CHECK(node.guard.member_count("r") == 1);
    b->received().clear();
    CHECK(say(*a, R"({"type":"room-message","room":"r","content":"alone"})", all).empty());
    CHECK(b->received().empty());

    // A join the guard's limits refuse is an error reply naming the reason.
    const std::string too_long(node.guard.options().rooms.max_room_name_length + 1, 'n');
    const auto refused = say(*c, json{{"type", "join"}, {"room", too_long}}.dump());
    REQUIRE(refused.size() == 1);
    CHECK(refused[0]["type"] == "error");
    CHECK(node.guard.member_count(too_long) == 0);

    const auto s = node.router.stats();
    CHECK(s.room_messages == 2);
    CHECK(s.deliveries == 1);  // b got the first; nobody else was there for the second
}

TEST_CASE("ChatRouter: a room message reaches the other nodes through the guard's bridge",
          "[chat_router]") {
    Node node;
    wsguard::test::RecordingBridge bridge;
    node.guard.set_bridge(&bridge);
    auto [a, ida] = node.connect();
    CHECK(say(*a, R"({"type":"join","room":"lobby"})").empty());
    // No other member here: the other nodes still get it, once, as the members would.
    CHECK(say(*a, R"({"type":"room-message","room":"lobby","content":"hi"})").empty());
    REQUIRE(bridge.published.size() == 1);
    CHECK(bridge.published[0].first == "lobby");
    CHECK(json::parse(bridge.published[0].second) ==
          json{{"type", "message"}, {"from", ida}, {"content", "hi"}});
    // Refused messages never leave the node.
    CHECK(say(*a, R"({"type":"room-message","room":"elsewhere","content":"x"})").size() == 1);
    CHECK(bridge.published.size() == 1);
    node.guard.set_bridge(nullptr);
}
