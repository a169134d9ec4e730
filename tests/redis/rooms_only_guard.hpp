// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RoomsOnlyGuard: what a RedisBridge needs of a guard (the room events,
// member_count(), the bridge seat, broadcast_local()), with rooms the test
// sets directly and what the bridge delivers recorded. For the bridge's
// tests without a server.
#pragma once

#include <wsguard/connection_registry.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/scoped_listener.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsguard::test {

struct RoomsOnlyGuard {
    wsguard::Emitter<std::string> on_room_created, on_room_emptied;
    wsguard::RoomIndex<wsguard::ConnectionId, std::string> index;
    std::vector<std::pair<std::string, std::string>> delivered;
    wsguard::wspp::LocalBridge local;
    wsguard::wspp::RoomBridge* attached = &local;

    std::size_t member_count(const std::string& room) const { return index.member_count(room); }
    void set_bridge(wsguard::wspp::RoomBridge* b) { attached = b != nullptr ? b : &local; }
    void detach_bridge(wsguard::wspp::RoomBridge* b) {
        if (attached == b) {
            attached = &local;
        }
    }
    wsguard::wspp::RoomBridge& bridge() const { return *attached; }
    void broadcast_local(const std::string& room, std::string_view payload, wsguard::ConnectionId) {
        delivered.emplace_back(room, std::string(payload));
    }
    void join(wsguard::ConnectionId id, const std::string& room) {
        if (index.join(id, room).room_created) {
            on_room_created.emit(room);
        }
    }
    void leave(wsguard::ConnectionId id, const std::string& room) {
        if (index.leave(id, room).room_now_empty) {
            on_room_emptied.emit(room);
        }
    }
};

}  // namespace wsguard::test
