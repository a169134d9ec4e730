// A websocketpp client and server connection joined in memory through the
// iostream transport: no sockets, no timers, every byte moved by pump().
#pragma once

#include <websocketpp/client.hpp>
#include <websocketpp/config/core_client.hpp>
#include <websocketpp/server.hpp>

#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace wsguard::test {

/// A client-side endpoint shared by every pair of one test.
struct QuietClientConfig : websocketpp::config::core_client {
    static const websocketpp::log::level alog_level = websocketpp::log::alevel::none;
    static const websocketpp::log::level elog_level = websocketpp::log::elevel::none;
};
using MemoryClient = websocketpp::client<QuietClientConfig>;

/// One client connection talking to one server connection. Bytes each side
/// writes wait in a buffer until pump() hands them to the other side, so no
/// handler ever runs inside another's write.
template <class ServerConfig>
class IostreamPair {
public:
    using Server = websocketpp::server<ServerConfig>;

    IostreamPair(Server& server, MemoryClient& client, const std::string& uri = "ws://localhost/")
        : buffers_(std::make_shared<Buffers>()) {
        std::weak_ptr<Buffers> weak = buffers_;
        server_con_ = server.get_connection();
        server_con_->set_write_handler(
            [weak](websocketpp::connection_hdl, const char* data, std::size_t len) {
                if (auto b = weak.lock()) {
                    b->to_client.append(data, len);
                }
                return std::error_code();
            });
        server_con_->set_shutdown_handler([weak](websocketpp::connection_hdl) {
            if (auto b = weak.lock()) {
                b->server_shut = true;
            }
            return std::error_code();
        });
        std::error_code ec;
        client_con_ = client.get_connection(uri, ec);
        client_con_->set_write_handler(
            [weak](websocketpp::connection_hdl, const char* data, std::size_t len) {
                if (auto b = weak.lock()) {
                    b->to_server.append(data, len);
                }
                return std::error_code();
            });
        client_con_->set_shutdown_handler([weak](websocketpp::connection_hdl) {
            if (auto b = weak.lock()) {
                b->client_shut = true;
            }
            return std::error_code();
        });
        client_con_->set_message_handler(
            [weak](websocketpp::connection_hdl, MemoryClient::message_ptr m) {
                if (auto b = weak.lock()) {
                    b->received.push_back(m->get_payload());
                }
            });
        server_hdl_ = server_con_;
        server_con_->start();
        client.connect(client_con_);
        pump();
    }

    /// Moves bytes both ways until neither side has anything to say.
    void pump() {
        for (int round = 0; round < 1000; ++round) {
            std::string to_server, to_client;
            to_server.swap(buffers_->to_server);
            to_client.swap(buffers_->to_client);
            if (to_server.empty() && to_client.empty()) {
                break;
            }
            if (!to_server.empty() && server_con_) {
                server_con_->read_all(to_server.data(), to_server.size());
            }
            if (!to_client.empty() && client_con_) {
                client_con_->read_all(to_client.data(), to_client.size());
            }
        }
        // A side that shut its transport down sees end of stream on the other.
        if (buffers_->server_shut && client_con_ && !client_eof_) {
            client_eof_ = true;
            client_con_->eof();
        }
        if (buffers_->client_shut && server_con_ && !server_eof_) {
            server_eof_ = true;
            server_con_->eof();
        }
    }

    /// The peer vanishes: the server sees end of stream, no close frame.
    void abort() {
        if (server_con_ && !server_eof_) {
            server_eof_ = true;
            server_con_->eof();
        }
    }

    void send(const std::string& text) {
        client_con_->send(text, websocketpp::frame::opcode::text);
        pump();
    }

    void close(websocketpp::close::status::value code = websocketpp::close::status::normal) {
        std::error_code ec;
        client_con_->close(code, "bye", ec);
        pump();
    }

    /// Drops this pair's connection pointers: afterwards only websocketpp's
    /// own references (none, once closed) keep a connection alive.
    void release() {
        server_con_.reset();
        client_con_.reset();
    }

    std::vector<std::string>& received() { return buffers_->received; }
    websocketpp::connection_hdl server_handle() const { return server_hdl_; }
    typename Server::connection_ptr server_connection() const { return server_con_; }
    MemoryClient::connection_ptr client_connection() const { return client_con_; }

private:
    struct Buffers {
        std::string to_server;
        std::string to_client;
        std::vector<std::string> received;
        bool server_shut = false;
        bool client_shut = false;
    };
    std::shared_ptr<Buffers> buffers_;
    typename Server::connection_ptr server_con_;
    MemoryClient::connection_ptr client_con_;
    websocketpp::connection_hdl server_hdl_;
    bool client_eof_ = false;
    bool server_eof_ = false;
};

}  // namespace wsguard::test
