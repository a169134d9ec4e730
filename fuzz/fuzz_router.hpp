// wsguard fuzzing — the chat protocol router (examples/chat_server/chat_router.hpp).
// SPDX-License-Identifier: MIT
//
// Input: records separated by 0x1E (ASCII RS, the record separator of RFC 7464 JSON
// text sequences; it cannot occur in valid JSON, so splitting on it loses nothing a
// parser would accept). A record's first byte picks the sender (one of four
// connections) and the event: a text frame (the rest of the record is the payload,
// arbitrary bytes), a binary frame, or the connection closing (the server's close
// path: leave_all) or opening again. Without an RS the whole input after the first
// byte is one message.
//
// ChatRouter runs against a fake guard that holds a real RoomIndex with small limits
// (so join refusals happen) and records every frame sent, and a bridge that records
// every publish. An oracle computes, from the protocol table and a RoomModel, the
// frames and publishes each message must produce. After each record: every frame is
// valid JSON, an object whose "type" is pong, echo, error or message; the frames are
// exactly the expected ones (a non-JSON payload gets exactly one error reply "Invalid
// JSON"); a room message is published once, as the very bytes the local members got;
// the room index agrees with the model and its stats are consistent (memberships ==
// the sum of member_count over rooms); the router's counters agree.
#pragma once

#include <chat_router.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <nlohmann/json.hpp>

#include "fuzz_rooms.hpp"
#include "fuzz_support.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsguard::fuzz {

namespace router_detail {

using Json = nlohmann::ordered_json;

/// One frame the router asked the guard to send.
struct Frame {
    ConnectionId to;
    std::string text;
};

/// What ChatRouter needs of ServerGuard, over a real RoomIndex and an outbox.
class FakeGuard {
public:
    enum class SendStatus { sent, not_connected };
    struct BroadcastResult {
        std::size_t recipients = 0;
        std::size_t sent = 0;
    };
    using Rooms = RoomIndex<ConnectionId>;

    explicit FakeGuard(const RoomOptions& options) : rooms_(options) {}

    SendStatus send(ConnectionId id, std::string_view payload) {
        if (connected_.count(id) == 0) {
            return SendStatus::not_connected;
        }
        outbox_.push_back(Frame{id, std::string(payload)});
        return SendStatus::sent;
    }

    // A prepared message is the payload, shared: what reaches the outbox is
    // the same as send()'s.
    using message_ptr = std::shared_ptr<const std::string>;
    message_ptr prepare(std::string_view payload) {
        return std::make_shared<const std::string>(payload);
    }
    SendStatus send_prepared(ConnectionId id, const message_ptr& prepared) {
        return send(id, *prepared);
    }

    std::optional<JoinResult> join(ConnectionId id, const std::string& room) {
        if (connected_.count(id) == 0) {
            return std::nullopt;
        }
        return rooms_.join(id, room);
    }

    LeaveResult leave(ConnectionId id, const std::string& room) { return rooms_.leave(id, room); }

    // As ServerGuard: this node's members, then the bridge (the other nodes').
    BroadcastResult broadcast(const std::string& room, std::string_view payload,
                              ConnectionId except) {
        BroadcastResult result = broadcast_local(room, payload, except);
        if (bridge_ != nullptr) {
            bridge_->publish(room, payload);
        }
        return result;
    }

    // As ServerGuard: snapshot the recipients, then send outside the iteration.
    BroadcastResult broadcast_local(const std::string& room, std::string_view payload,
                                    ConnectionId except) {
        std::vector<ConnectionId> recipients;
        rooms_.for_each_member(room, [&](const ConnectionId& m) {
            if (m != except) {
                recipients.push_back(m);
            }
        });
        BroadcastResult result;
        result.recipients = recipients.size();
        for (const ConnectionId m : recipients) {
            if (send(m, payload) == SendStatus::sent) {
                ++result.sent;
            }
        }
        return result;
    }

    bool is_member(ConnectionId id, const std::string& room) const {
        return rooms_.contains(id, room);
    }
    void set_bridge(wspp::RoomBridge* bridge) noexcept { bridge_ = bridge; }

    const Rooms& rooms() const noexcept { return rooms_; }

    bool connected(ConnectionId id) const { return connected_.count(id) != 0; }
    void open(ConnectionId id) { connected_.insert(id); }
    // The server's close path: the connection leaves every room.
    void close(ConnectionId id) {
        connected_.erase(id);
        rooms_.leave_all(id);
    }

    std::vector<Frame> take_outbox() { return std::exchange(outbox_, {}); }

private:
    Rooms rooms_;
    std::set<ConnectionId> connected_;
    std::vector<Frame> outbox_;
    wspp::RoomBridge* bridge_ = nullptr;
};

/// A bridge to other nodes that only records what it is asked to publish.
class RecordingBridge final : public wspp::RoomBridge {
public:
    wspp::PublishStatus publish(const std::string& room, std::string_view payload) override {
        published_.emplace_back(room, std::string(payload));
        return wspp::PublishStatus::local_only;
    }
    void stop() noexcept override {}
    wspp::BridgeStats stats() const override { return {}; }

    std::vector<std::pair<std::string, std::string>> take() {
        return std::exchange(published_, {});
    }

private:
    std::vector<std::pair<std::string, std::string>> published_;
};

/// What one message must produce: frames to connections and publishes to the bridge.
struct Expected {
    std::vector<std::pair<ConnectionId, Json>> frames;
    std::vector<std::pair<std::string, Json>> publishes;
};

/// The protocol table of chat_router.hpp, computed independently of the router.
/// The router's nesting rule, restated: more than 64 arrays/objects open at
/// once, counting brackets outside strings, is refused before parsing.
inline bool too_deep(std::string_view text) {
    int open = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '"') {
            // Skip to the closing quote, honouring backslash escapes.
            for (++i; i < text.size() && text[i] != '"'; ++i) {
                if (text[i] == '\\') {
                    ++i;
                }
            }
        } else if (text[i] == '[' || text[i] == '{') {
            if (++open > 64) {
                return true;
            }
        } else if (text[i] == ']' || text[i] == '}') {
            --open;
        }
    }
    return false;
}

class Oracle {
public:
    Oracle(const RoomOptions& options, FakeGuard& guard) : model_(options), guard_(guard) {}

    /// What a text message must produce.
    Expected text(ConnectionId from, std::string_view payload) {
        out_ = Expected{};
        ++stats_.handled;
        if (too_deep(payload)) {
            error(from, "message nested too deeply (max 64 levels)");
            return out_;
        }
        // accept() is a different entry point than the router's parse(): a SAX
        // acceptor that builds nothing.
        if (!Json::accept(payload)) {
            error(from, "Invalid JSON");
            return out_;
        }
        const Json msg = Json::parse(payload);
        if (!msg.is_object()) {
            error(from, "message must be a JSON object");
            return out_;
        }
        if (!msg.contains("type") || !msg["type"].is_string()) {
            error(from, "message needs a string \"type\"");
            return out_;
        }
        const std::string type = msg["type"].get<std::string>();
        if (type == "ping") {
            reply(from, Json{{"type", "pong"}});
            return out_;
        }
        if (type == "join" || type == "leave" || type == "room-message") {
            if (!msg.contains("room") || !msg["room"].is_string()) {
                error(from, "\"room\" must be a string");
                return out_;
            }
            const std::string room = msg["room"].get<std::string>();
            names_.insert(room);
            if (type == "join") {
                if (guard_.connected(from)) {
                    const JoinResult r = model_.join(from, room);
                    if (!r) {
                        error(from, wsguard::to_string(r.status));
                    }
                }
            } else if (type == "leave") {
                if (!model_.leave(from, room)) {
                    error(from, "not a member of this room");
                }
            } else if (!msg.contains("content")) {
                error(from, "\"content\" is missing");
            } else if (model_.rooms().count(room) == 0 ||
                       model_.rooms().at(room).count(from) == 0) {
                error(from, "join the room before sending to it");
            } else {
                ++stats_.room_messages;
                const Json message = {
                    {"type", "message"}, {"from", from}, {"content", msg["content"]}};
                for (const ConnectionId m : model_.rooms().at(room)) {
                    if (m != from && guard_.connected(m)) {
                        ++stats_.deliveries;
                        out_.frames.emplace_back(m, message);
                    }
                }
                // Other nodes get it too, even when no local member does.
                out_.publishes.emplace_back(room, message);
            }
            return out_;
        }
        reply(from, Json{{"type", "echo"}, {"data", msg}});
        return out_;
    }

    Expected binary(ConnectionId from) {
        out_ = Expected{};
        ++stats_.handled;
        error(from, "binary frames are not supported; send JSON text");
        return out_;
    }

    void closed(ConnectionId id) { model_.leave_all(id); }

    const RoomModel<ConnectionId>& model() const noexcept { return model_; }
    const std::set<std::string>& names() const noexcept { return names_; }
    const chat::RouterStats& stats() const noexcept { return stats_; }

private:
    void reply(ConnectionId to, Json value) {
        if (guard_.connected(to)) {
            out_.frames.emplace_back(to, std::move(value));
        }
    }
    void error(ConnectionId to, const char* what) {
        ++stats_.errors;
        reply(to, Json{{"type", "error"}, {"error", what}});
    }

    RoomModel<ConnectionId> model_;
    FakeGuard& guard_;
    std::set<std::string> names_;
    chat::RouterStats stats_;
    Expected out_;
};

// One text per value: what a JSON value reads back as after being sent, so numbers
// the parser turned into infinities compare as the null they are sent as.
inline std::string canonical(const Json& value) {
    return Json::parse(value.dump(-1, ' ', false, Json::error_handler_t::replace)).dump();
}

inline void check_output(const std::vector<Frame>& got,
                         const std::vector<std::pair<std::string, std::string>>& published,
                         const Expected& expected, bool invalid_json, ConnectionId from,
                         bool from_connected) {
    std::vector<std::pair<ConnectionId, std::string>> got_canonical;
    for (const Frame& frame : got) {
        // Every frame is valid JSON: an object with a known string "type".
        const Json value = Json::parse(frame.text, nullptr, false);
        WSGUARD_FUZZ_CHECK(!value.is_discarded());
        WSGUARD_FUZZ_CHECK(value.is_object());
        const auto type = value.find("type");
        WSGUARD_FUZZ_CHECK(type != value.end() && type->is_string());
        const std::string& t = type->get_ref<const std::string&>();
        WSGUARD_FUZZ_CHECK(t == "pong" || t == "echo" || t == "error" || t == "message");
        got_canonical.emplace_back(frame.to, value.dump());
    }
    if (invalid_json) {
        // Exactly one reply, to the sender, saying so (nothing when it is gone).
        WSGUARD_FUZZ_CHECK(got.size() == (from_connected ? 1u : 0u));
        if (from_connected) {
            WSGUARD_FUZZ_CHECK(got[0].to == from);
            WSGUARD_FUZZ_CHECK(Json::parse(got[0].text) ==
                               (Json{{"type", "error"}, {"error", "Invalid JSON"}}));
        }
    }
    std::vector<std::pair<ConnectionId, std::string>> expected_canonical;
    for (const auto& [to, value] : expected.frames) {
        expected_canonical.emplace_back(to, canonical(value));
    }
    // Broadcast order is not part of the protocol: compare as multisets.
    std::sort(got_canonical.begin(), got_canonical.end());
    std::sort(expected_canonical.begin(), expected_canonical.end());
    WSGUARD_FUZZ_CHECK(got_canonical == expected_canonical);

    WSGUARD_FUZZ_CHECK(published.size() == expected.publishes.size());
    for (std::size_t i = 0; i < published.size(); ++i) {
        WSGUARD_FUZZ_CHECK(published[i].first == expected.publishes[i].first);
        const Json value = Json::parse(published[i].second, nullptr, false);
        WSGUARD_FUZZ_CHECK(!value.is_discarded());
        WSGUARD_FUZZ_CHECK(value.dump() == canonical(expected.publishes[i].second));
        // Encoded once: the bridge carries the very bytes the local members got.
        for (const Frame& frame : got) {
            if (frame.to != from) {
                WSGUARD_FUZZ_CHECK(frame.text == published[i].second);
            }
        }
    }
}

inline bool same_stats(const chat::RouterStats& a, const chat::RouterStats& b) {
    return a.handled == b.handled && a.errors == b.errors && a.room_messages == b.room_messages &&
           a.deliveries == b.deliveries;
}

}  // namespace router_detail

/// The fuzzer body: see the file comment. Throws CheckFailure on any disagreement.
inline void fuzz_router(const std::uint8_t* data, std::size_t size) {
    using namespace router_detail;
    constexpr std::uint8_t record_separator = 0x1e;

    RoomOptions options;
    options.max_rooms_per_member = 3;
    options.max_room_name_length = 8;
    options.max_rooms = 6;
    const std::vector<ConnectionId> ids = {1, 2, 3, 4};

    FakeGuard guard(options);
    for (const ConnectionId id : ids) {
        guard.open(id);
    }
    chat::ChatRouter<FakeGuard> router(guard);
    RecordingBridge bridge;
    guard.set_bridge(&bridge);
    Oracle oracle(options, guard);

    FuzzInput in(data, size);
    while (!in.empty()) {
        const std::string_view record = in.take_until(record_separator);
        if (record.empty()) {
            continue;
        }
        const auto head = static_cast<std::uint8_t>(record[0]);
        const std::string_view payload = record.substr(1);
        const ConnectionId from = ids[head & 3];
        const bool from_connected = guard.connected(from);
        switch ((head >> 2) & 3) {
            case 0:
            case 1: {
                const bool invalid_json = !too_deep(payload) && !Json::accept(payload);
                const auto expected = oracle.text(from, payload);
                router.handle_text(from, payload);
                check_output(guard.take_outbox(), bridge.take(), expected, invalid_json, from,
                             from_connected);
                break;
            }
            case 2: {
                const auto expected = oracle.binary(from);
                router.handle_binary(from);
                check_output(guard.take_outbox(), bridge.take(), expected, false, from,
                             from_connected);
                break;
            }
            default:
                if ((head & 0x10) != 0) {
                    guard.close(from);
                    oracle.closed(from);
                } else {
                    guard.open(from);
                }
                break;
        }
        check_rooms_same(guard.rooms(), oracle.model(), ids, oracle.names());
        WSGUARD_FUZZ_CHECK(same_stats(router.stats(), oracle.stats()));
    }
}

}  // namespace wsguard::fuzz
