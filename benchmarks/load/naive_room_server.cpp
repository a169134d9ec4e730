// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Baseline for the load comparison: the room server a websocketpp user writes
// by hand, speaking the reference chat server's protocol so the same load
// client drives both. Deliberately plain: one map of rooms to connection
// handles, every message parsed with nlohmann::json, every reply built as its
// own JSON document and sent with server.send(hdl, std::string) to each member
// in turn. No limits, no counters, no reverse index: on close the handle is
// erased from every room by a scan, and empty rooms stay in the map. Default
// websocketpp asio config (16 KiB read buffer per connection), logging off.
//
// usage: naive_room_server [--port N] [--bind ADDRESS]   (port 0: any free port)
// Prints `ready port=N` on stdout once listening; SIGINT / SIGTERM stop it.
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <nlohmann/json.hpp>

#include <asio/signal_set.hpp>

#include <sys/resource.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace {

using Server = websocketpp::server<websocketpp::config::asio>;
using Hdl = websocketpp::connection_hdl;
using json = nlohmann::json;

class NaiveRoomServer {
public:
    NaiveRoomServer() {
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        server_.init_asio();
        server_.set_reuse_addr(true);
        server_.set_message_handler(
            [this](Hdl hdl, Server::message_ptr msg) { on_message(hdl, msg->get_payload()); });
        server_.set_close_handler([this](Hdl hdl) {
            for (auto& room : rooms_) {
                room.second.erase(hdl);
            }
        });
    }

    unsigned listen(const std::string& bind, unsigned port) {
        server_.listen(asio::ip::tcp::endpoint(asio::ip::make_address(bind),
                                               static_cast<unsigned short>(port)));
        server_.start_accept();
        websocketpp::lib::error_code ec;
        return server_.get_local_endpoint(ec).port();
    }

    Server& endpoint() { return server_; }

private:
    void reply(Hdl hdl, const json& j) {
        websocketpp::lib::error_code ec;
        server_.send(hdl, j.dump(), websocketpp::frame::opcode::text, ec);
    }

    void error(Hdl hdl, const char* what) { reply(hdl, json{{"type", "error"}, {"error", what}}); }

    void on_message(Hdl hdl, const std::string& payload) {
        json msg;
        try {
            msg = json::parse(payload);
        } catch (const json::parse_error&) {
            return error(hdl, "Invalid JSON");
        }
        if (!msg.is_object() || !msg.contains("type") || !msg["type"].is_string()) {
            return error(hdl, "message needs a string \"type\"");
        }
        const std::string type = msg["type"];
        if (type == "ping") {
            return reply(hdl, json{{"type", "pong"}});
        }
        if (type != "join" && type != "leave" && type != "room-message") {
            return reply(hdl, json{{"type", "echo"}, {"data", msg}});
        }
        if (!msg.contains("room") || !msg["room"].is_string()) {
            return error(hdl, "\"room\" must be a string");
        }
        const std::string room = msg["room"];
        if (type == "join") {
            rooms_[room].insert(hdl);
            return;
        }
        if (type == "leave") {
            rooms_[room].erase(hdl);
            return;
        }
        auto it = rooms_.find(room);
        if (it == rooms_.end() || it->second.count(hdl) == 0) {
            return error(hdl, "join the room before sending to it");
        }
        if (!msg.contains("content")) {
            return error(hdl, "\"content\" is missing");
        }
        // The connection's address is its id: no table to keep.
        const auto from = reinterpret_cast<std::uintptr_t>(hdl.lock().get());
        for (const Hdl& member : it->second) {
            if (member.owner_before(hdl) || hdl.owner_before(member)) {
                reply(member,
                      json{{"type", "message"}, {"from", from}, {"content", msg["content"]}});
            }
        }
    }

    Server server_;
    std::map<std::string, std::set<Hdl, std::owner_less<Hdl>>> rooms_;
};

}  // namespace

int main(int argc, char** argv) {
    unsigned port = 8080;
    std::string bind = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--port") {
            port = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10));
        } else if (flag == "--bind") {
            bind = argv[i + 1];
        } else {
            std::fprintf(stderr, "usage: naive_room_server [--port N] [--bind ADDRESS]\n");
            return 2;
        }
    }
    // Thousands of sockets: take the hard descriptor limit.
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    try {
        NaiveRoomServer server;
        const unsigned bound = server.listen(bind, port);
        asio::signal_set signals(server.endpoint().get_io_service(), SIGINT, SIGTERM);
        signals.async_wait([&](const std::error_code&, int) { server.endpoint().stop(); });
        std::printf("ready port=%u\n", bound);
        std::fflush(stdout);
        server.endpoint().run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "naive_room_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
