// A RoomBridge that records what a guard publishes to the other nodes, for
// tests of fan-out through ServerGuard (no broker).
#pragma once

#include <wsguard/websocketpp/room_bridge.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsguard::test {

class RecordingBridge final : public wsguard::wspp::RoomBridge {
public:
    wsguard::wspp::PublishStatus publish(const std::string& room,
                                         std::string_view payload) override {
        published.emplace_back(room, std::string(payload));
        return wsguard::wspp::PublishStatus::queued;
    }
    void stop() noexcept override {}
    wsguard::wspp::BridgeStats stats() const override { return {}; }

    /// (room, payload) of every publish, in order.
    std::vector<std::pair<std::string, std::string>> published;
};

}  // namespace wsguard::test
