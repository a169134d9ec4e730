// wsguard reference chat server — the protocol, apart from any socket.
// SPDX-License-Identifier: MIT
//
// One JSON text frame in, zero or more frames out. Kept apart from the
// transport so the same code runs under tests, fuzzers and the real server.
//
//   {"type":"ping"}                              -> {"type":"pong"}
//   {"type":"join","room":R}                     -> sender joins R
//   {"type":"leave","room":R}                    -> sender leaves R
//   {"type":"room-message","room":R,"content":C} -> every other member of R gets
//                                                   {"type":"message","from":ID,"content":C}
//   any other object with a string "type"        -> {"type":"echo","data":<the object>}
//   text that is not JSON                        -> {"type":"error","error":"Invalid JSON"}
//   malformed fields                             -> {"type":"error","error":"<what is wrong>"}
// An error never closes the connection.
#pragma once

#include <wsguard/connection_registry.hpp>
#include <wsguard/room_index.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace chat {

/// Counts of what the router did, for /stats.
struct RouterStats {
    std::uint64_t handled = 0;
    std::uint64_t errors = 0;  ///< error replies sent
    std::uint64_t room_messages = 0;
    std::uint64_t deliveries = 0;  ///< room-message copies queued for members
};

/// Routes one message of the chat protocol. Guard is ServerGuard or any type
/// with the same send / prepare / send_prepared / join / leave / is_member /
/// broadcast members and message_ptr type (the fuzzer and the unit tests use a
/// fake). Fan-out is the guard's: a room message goes to guard.broadcast(),
/// which reaches this node's members and, through its bridge, every other node's.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe when the
/// guard's calls are (SyncServerGuard): the router keeps no state but its
/// atomic counters and a pong framed at construction, so several io threads
/// route at once with no lock of the router's own.
template <class Guard>
class ChatRouter {
public:
    explicit ChatRouter(Guard& guard) : guard_(guard), pong_(guard.prepare(kPong)) {}

    /// Effect: parses `payload` as one protocol message from connection `from`
    /// and carries it out, replying to `from` as the protocol says.
    /// Fails: never; bad input gets an error reply and changes no state.
    /// Exceptions: std::bad_alloc.
    void handle_text(wsguard::ConnectionId from, std::string_view payload) {
        add(handled_);
        // Replies copy and print the message recursively: refuse deep nesting
        // before it can overflow the stack (a 160 KB message of brackets would).
        if (nesting_exceeds(payload, kMaxNesting)) {
            return error(from, "message nested too deeply (max 64 levels)");
        }
        // Parse without exceptions: bad input is the normal case here, not an error.
        nlohmann::ordered_json msg = nlohmann::ordered_json::parse(payload, nullptr, false);
        if (msg.is_discarded()) {
            return error(from, "Invalid JSON");
        }
        if (!msg.is_object()) {
            return error(from, "message must be a JSON object");
        }
        const auto type_it = msg.find("type");
        if (type_it == msg.end() || !type_it->is_string()) {
            return error(from, "message needs a string \"type\"");
        }
        const std::string& type = type_it->template get_ref<const std::string&>();
        if (type == "ping") {
            return pong(from);
        }
        if (type == "join" || type == "leave" || type == "room-message") {
            const auto room_it = msg.find("room");
            if (room_it == msg.end() || !room_it->is_string()) {
                return error(from, "\"room\" must be a string");
            }
            const std::string& room = room_it->template get_ref<const std::string&>();
            if (type == "join") {
                return join(from, room);
            }
            if (type == "leave") {
                return leave(from, room);
            }
            const auto content_it = msg.find("content");
            if (content_it == msg.end()) {
                return error(from, "\"content\" is missing");
            }
            return room_message(from, room, *content_it);
        }
        nlohmann::ordered_json echo = {{"type", "echo"}, {"data", std::move(msg)}};
        reply(from, echo.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    }

    /// Effect: replies that binary frames are not part of the protocol.
    void handle_binary(wsguard::ConnectionId from) {
        add(handled_);
        error(from, "binary frames are not supported; send JSON text");
    }

    /// Effect: a snapshot of the counts (each read on its own, relaxed).
    /// Never fails. Thread safety: Safe. Exceptions: nothrow.
    RouterStats stats() const noexcept {
        RouterStats s;
        s.handled = handled_.load(std::memory_order_relaxed);
        s.errors = errors_.load(std::memory_order_relaxed);
        s.room_messages = room_messages_.load(std::memory_order_relaxed);
        s.deliveries = deliveries_.load(std::memory_order_relaxed);
        return s;
    }

    /// Deepest nesting of arrays and objects a message may have.
    static constexpr int kMaxNesting = 64;

    /// Effect: whether `text` opens more than `max` arrays/objects at once,
    /// counting brackets outside JSON strings. O(n), no allocation.
    static bool nesting_exceeds(std::string_view text, int max) noexcept {
        int depth = 0;
        bool in_string = false;
        bool escaped = false;
        for (const char c : text) {
            if (in_string) {
                if (escaped) {
                    escaped = false;
                } else if (c == '\\') {
                    escaped = true;
                } else if (c == '"') {
                    in_string = false;
                }
            } else if (c == '"') {
                in_string = true;
            } else if (c == '[' || c == '{') {
                if (++depth > max) {
                    return true;
                }
            } else if (c == ']' || c == '}') {
                --depth;
            }
        }
        return false;
    }

private:
    void join(wsguard::ConnectionId from, const std::string& room) {
        const auto result = guard_.join(from, room);
        if (!result) {
            return;  // closing connection: nobody to reply to
        }
        if (!*result) {
            error(from, wsguard::to_string(result->status));
        }
    }

    void leave(wsguard::ConnectionId from, const std::string& room) {
        if (!guard_.leave(from, room)) {
            error(from, "not a member of this room");
        }
    }

    void room_message(wsguard::ConnectionId from, const std::string& room,
                      const nlohmann::ordered_json& content) {
        if (!guard_.is_member(from, room)) {
            return error(from, "join the room before sending to it");
        }
        add(room_messages_);
        // Built once per message, not per member: the guard frames it once too.
        const nlohmann::ordered_json out = {
            {"type", "message"}, {"from", from}, {"content", content}};
        const std::string text =
            out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        // This node's members and, through the guard's bridge, every other node's.
        const auto result = guard_.broadcast(room, text, from);
        add(deliveries_, result.sent);
    }

    void reply(wsguard::ConnectionId to, std::string_view text) { guard_.send(to, text); }

    static constexpr std::string_view kPong = R"({"type":"pong"})";

    // The pong never changes: it is framed once, at construction, and shared
    // (perf showed a message allocation and a framing per reply as the
    // largest user-space cost of ping-pong).
    void pong(wsguard::ConnectionId to) { guard_.send_prepared(to, pong_); }

    static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) noexcept {
        counter.fetch_add(n, std::memory_order_relaxed);
    }

    void error(wsguard::ConnectionId to, const char* what) {
        add(errors_);
        const nlohmann::ordered_json out = {{"type", "error"}, {"error", what}};
        reply(to, out.dump());
    }

    Guard& guard_;
    const typename Guard::message_ptr pong_;
    std::atomic<std::uint64_t> handled_{0}, errors_{0}, room_messages_{0}, deliveries_{0};
};

}  // namespace chat
