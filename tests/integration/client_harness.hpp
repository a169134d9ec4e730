// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Loopback test harness for the reference chat server: the server in-process
// on an ephemeral port on its own thread (ServerRunner), real websocketpp
// clients on their own io thread (ClientEndpoint / ClientConnection), a raw
// TCP WebSocket client that can stop reading (RawWsClient), and a tiny HTTP
// GET for /stats and /metrics. Every wait is bounded; every thread is joined.
#pragma once

#include "chat_server.hpp"
#include "support/ws_frames.hpp"

#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <asio.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace wsguard::test {

using Millis = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

/// How many times slower than native this run is: WSGUARD_TIME_SCALE, 1 when
/// unset. The valgrind tests set it (memcheck runs the code 20-50x slower);
/// the waits and timing bounds a test states in wall time are multiplied by
/// it, so the normal run keeps them strict.
inline double time_scale() {
    static const double scale = [] {
        const char* s = std::getenv("WSGUARD_TIME_SCALE");
        const double v = s ? std::atof(s) : 1.0;
        return v > 1.0 ? v : 1.0;
    }();
    return scale;
}

/// `d` stretched by time_scale().
inline Millis scaled(Millis d) {
    return Millis{static_cast<Millis::rep>(static_cast<double>(d.count()) * time_scale())};
}

/// A repeat count `n` divided by WSGUARD_TEST_SCALE (1 when unset), at least
/// `floor`: the valgrind tests run the long loops shorter.
inline int scaled_count(int n, int floor = 1) {
    static const int divisor = [] {
        const char* s = std::getenv("WSGUARD_TEST_SCALE");
        const int v = s ? std::atoi(s) : 1;
        return v > 1 ? v : 1;
    }();
    return std::max(n / divisor, floor);
}

/// True when the valgrind tests run this binary (WSGUARD_UNDER_VALGRIND=1):
/// memcheck's own allocator and translation cache make memory readings
/// meaningless, so memory bounds are reported, not asserted, as under sanitizers.
inline bool under_valgrind() {
    static const bool on = [] {
        const char* s = std::getenv("WSGUARD_UNDER_VALGRIND");
        return s && *s && *s != '0';
    }();
    return on;
}

/// The bound on anything that should happen promptly on loopback (an open, a
/// reply, a close). Generous so a sanitizer build on a loaded machine passes;
/// a test that only succeeds thanks to it still fails on timing asserts.
inline const Millis prompt_wait = scaled(Millis{5000});

/// Calls `pred` every `interval` until it returns true or `timeout` passes.
/// Only for state that has no event to wait on (HTTP /stats).
template <class Pred>
bool eventually(Pred pred, Millis timeout = prompt_wait, Millis interval = Millis{10}) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
        if (pred()) {
            return true;
        }
        if (SteadyClock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(interval);
    }
}

inline std::chrono::duration<double, std::milli> since(SteadyClock::time_point t) {
    return SteadyClock::now() - t;
}

// ---------------------------------------------------------------------------
// The server under test.

/// The value of environment variable `name` in milliseconds, if set.
inline std::optional<Millis> env_millis(const char* name) {
    const char* s = std::getenv(name);
    if (s == nullptr || *s == '\0') {
        return std::nullopt;
    }
    return Millis{std::atoll(s)};
}

/// Options every in-process server starts from: loopback, ephemeral port, no
/// banner, fast housekeeping so time-based limits show within milliseconds.
/// WSGUARD_TEST_IDLE_TIMEOUT_MS and WSGUARD_TEST_PING_INTERVAL_MS replace the
/// guard's idle timeout and ping interval (CI runs the integration tests
/// three times with 3000 and 1000: what a test does not set itself must hold
/// with short timers too).
inline chat::ServerOptions test_server_options() {
    chat::ServerOptions o;
    o.port = 0;
    o.bind_address = "127.0.0.1";
    o.quiet = true;
    o.tick_interval = Millis{25};
    o.sample_interval = Millis{1000};
    o.guard.trim_after_closes = 0;
    if (const auto idle = env_millis("WSGUARD_TEST_IDLE_TIMEOUT_MS")) {
        o.guard.idle_timeout = *idle;
    }
    if (const auto ping = env_millis("WSGUARD_TEST_PING_INTERVAL_MS")) {
        o.guard.ping_interval = *ping;
    }
    return o;
}

/// A ChatServer running on its own thread from construction until stop() (or
/// destruction), which shuts it down gracefully and joins the thread. Server:
/// another instance of chat::ChatServer (test_tls runs the wss one).
template <class Lock = NullMutex, class Server = chat::ChatServer<Lock>>
class ServerRunner {
public:
    explicit ServerRunner(chat::ServerOptions options = test_server_options())
        : server_(std::move(options)), done_(finished_.get_future()) {
        thread_ = std::thread([this] {
            try {
                server_.run();
                finished_.set_value();
            } catch (...) {
                finished_.set_exception(std::current_exception());
            }
        });
    }

    ServerRunner(const ServerRunner&) = delete;
    ServerRunner& operator=(const ServerRunner&) = delete;

    ~ServerRunner() {
        if (thread_.joinable()) {
            try {
                stop();
            } catch (...) {
                // run() threw and the test already failed; the thread is joined either way.
            }
        }
    }

    std::uint16_t port() const noexcept { return server_.port(); }

    /// The server; only safe to inspect from the test thread after stop().
    Server& server() noexcept { return server_; }

    /// Runs `f` on the server's io thread (where the guard may be called
    /// while it runs) and returns its result once it ran.
    template <class F>
    auto on_io_thread(F f) -> decltype(f()) {
        // Shared: the io thread may still be leaving task() when get() returns.
        auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
        auto result = task->get_future();
        asio::post(server_.endpoint().get_io_service(), [task] { (*task)(); });
        return result.get();
    }

    /// Starts a graceful shutdown (from this thread) without waiting for it.
    void request_shutdown() { server_.request_shutdown(); }

    /// True once run() returned, waiting at most `timeout`.
    bool wait_stopped(Millis timeout) {
        return done_.wait_for(timeout) == std::future_status::ready;
    }

    /// Graceful shutdown; true if run() returned within `timeout`. Either way
    /// the thread is joined on return (forced with endpoint().stop() if late).
    /// Rethrows what run() threw.
    bool stop(Millis timeout = Millis{10000}) {
        if (!thread_.joinable()) {
            return true;
        }
        server_.request_shutdown();
        const bool in_time = wait_stopped(timeout);
        if (!in_time) {
            server_.endpoint().stop();  // io_context::stop is thread-safe
        }
        thread_.join();
        done_.get();
        return in_time;
    }

private:
    Server server_;
    std::promise<void> finished_;
    std::future<void> done_;
    std::thread thread_;
};

// ---------------------------------------------------------------------------
// websocketpp clients.

using WsClient = ::websocketpp::client<::websocketpp::config::asio_client>;

/// How a ClientConnection behaves.
struct ConnectOptions {
    /// Answer the server's pings (websocketpp's default). False: a dead peer.
    bool answer_pings = true;
    /// Keep received texts for next_text(); false only counts them (floods).
    bool keep_messages = true;
    std::string path = "/";
};

/// One client connection, observed from the test thread. Every operation is
/// posted to the endpoint's io thread; every observation is under a lock.
/// Must not outlive its ClientEndpoint.
class ClientConnection {
public:
    struct State {
        std::mutex m;
        std::condition_variable cv;
        bool opened = false;
        bool closed = false;  // close or fail handler ran
        bool failed = false;  // never opened
        std::uint16_t remote_code = 0;
        std::string remote_reason;
        std::uint16_t local_code = 0;
        std::deque<std::string> texts;
        std::string server_header;  // of the handshake response
        std::size_t received = 0;
        std::size_t binaries = 0;
        std::size_t pings = 0;
        SteadyClock::time_point opened_at{}, closed_at{};
        // Written and read on the io thread only.
        ::websocketpp::connection_hdl hdl;
    };

    ClientConnection(WsClient& ep, std::shared_ptr<State> st) : ep_(ep), st_(std::move(st)) {}

    bool wait_open(Millis timeout = prompt_wait) {
        std::unique_lock<std::mutex> lock(st_->m);
        st_->cv.wait_for(lock, timeout, [&] { return st_->opened || st_->closed; });
        return st_->opened;
    }

    /// True once the connection closed (for any reason) within `timeout`.
    bool wait_closed(Millis timeout = prompt_wait) {
        std::unique_lock<std::mutex> lock(st_->m);
        return st_->cv.wait_for(lock, timeout, [&] { return st_->closed; });
    }

    bool is_open() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->opened && !st_->closed;
    }
    bool is_closed() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->closed;
    }
    bool failed() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->failed;
    }
    /// The close code the server sent (1006 when the TCP connection just ended).
    std::uint16_t remote_close_code() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->remote_code;
    }
    std::string remote_close_reason() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->remote_reason;
    }
    /// Time from open to close as this client saw it.
    Millis open_duration() {
        std::lock_guard<std::mutex> lock(st_->m);
        return std::chrono::duration_cast<Millis>(st_->closed_at - st_->opened_at);
    }
    SteadyClock::time_point opened_at() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->opened_at;
    }
    std::size_t received() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->received;
    }
    /// The handshake response's Server header ("" when absent).
    std::string server_header() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->server_header;
    }
    std::size_t pings_seen() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->pings;
    }
    /// Received texts not taken by next_text() yet.
    std::size_t pending() {
        std::lock_guard<std::mutex> lock(st_->m);
        return st_->texts.size();
    }
    /// True once `n` messages in all were received, waiting at most `timeout`.
    bool wait_received(std::size_t n, Millis timeout) {
        std::unique_lock<std::mutex> lock(st_->m);
        return st_->cv.wait_for(lock, timeout, [&] { return st_->received >= n; });
    }

    /// The next received text, waiting at most `timeout`.
    std::optional<std::string> next_text(Millis timeout = prompt_wait) {
        std::unique_lock<std::mutex> lock(st_->m);
        if (!st_->cv.wait_for(lock, timeout, [&] { return !st_->texts.empty(); })) {
            return std::nullopt;
        }
        std::string t = std::move(st_->texts.front());
        st_->texts.pop_front();
        return t;
    }

    /// The next received text parsed as JSON (a discarded value if it is not
    /// JSON), waiting at most `timeout`.
    std::optional<nlohmann::json> next_json(Millis timeout = prompt_wait) {
        auto t = next_text(timeout);
        if (!t) {
            return std::nullopt;
        }
        return nlohmann::json::parse(*t, nullptr, false);
    }

    /// Skips received messages until one of `type` arrives; it is returned.
    std::optional<nlohmann::json> next_of_type(const std::string& type,
                                               Millis timeout = prompt_wait) {
        const auto deadline = SteadyClock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            auto j = next_json(left);
            if (!j) {
                return std::nullopt;
            }
            if (j->is_object() && j->value("type", "") == type) {
                return j;
            }
        }
    }

    void send(std::string text) { send_op(std::move(text), ::websocketpp::frame::opcode::text); }
    void send(const nlohmann::json& j) { send(j.dump()); }
    void send_binary(std::string bytes) {
        send_op(std::move(bytes), ::websocketpp::frame::opcode::binary);
    }

    /// Sends `{"type":"ping"}` and waits for the pong, skipping other
    /// messages: after it, every earlier message of ours was handled.
    bool round_trip(Millis timeout = prompt_wait) {
        send(std::string(R"({"type":"ping"})"));
        return next_of_type("pong", timeout).has_value();
    }

    /// Starts the closing handshake.
    void close(std::uint16_t code = ::websocketpp::close::status::normal,
               std::string reason = "bye") {
        post([code, reason](WsClient& ep, State& st) {
            std::error_code ec;
            ep.close(st.hdl, code, reason, ec);
        });
    }

    /// Ends the TCP connection at once with a reset (no close frame, no FIN):
    /// the server sees the peer vanish.
    void abort() {
        post([](WsClient& ep, State& st) {
            std::error_code ec;
            auto con = ep.get_con_from_hdl(st.hdl, ec);
            if (ec || !con) {
                return;
            }
            auto& sock = con->get_raw_socket();
            sock.set_option(asio::socket_base::linger(true, 0), ec);
            sock.close(ec);
        });
    }

private:
    void send_op(std::string payload, ::websocketpp::frame::opcode::value op) {
        post([payload = std::move(payload), op](WsClient& ep, State& st) {
            std::error_code ec;
            ep.send(st.hdl, payload, op, ec);
        });
    }

    void post(std::function<void(WsClient&, State&)> f) {
        asio::post(ep_.get_io_service(), [ep = &ep_, st = st_, f = std::move(f)] { f(*ep, *st); });
    }

    WsClient& ep_;
    std::shared_ptr<State> st_;
};

/// A websocketpp asio client endpoint with its own io thread. Its destructor
/// ends every connection it made and joins the thread.
class ClientEndpoint {
public:
    ClientEndpoint() {
        ep_.clear_access_channels(::websocketpp::log::alevel::all);
        ep_.clear_error_channels(::websocketpp::log::elevel::all);
        ep_.init_asio();
        ep_.start_perpetual();
        thread_ = std::thread([this] {
            ep_.run();
            std::lock_guard<std::mutex> lock(m_);
            stopped_ = true;
            cv_.notify_all();
        });
    }

    ClientEndpoint(const ClientEndpoint&) = delete;
    ClientEndpoint& operator=(const ClientEndpoint&) = delete;

    ~ClientEndpoint() {
        std::vector<std::weak_ptr<ClientConnection::State>> all;
        {
            std::lock_guard<std::mutex> lock(m_);
            all.swap(connections_);
        }
        asio::post(ep_.get_io_service(), [this, all = std::move(all)] {
            for (auto& w : all) {
                if (auto st = w.lock()) {
                    std::error_code ec;
                    auto con = ep_.get_con_from_hdl(st->hdl, ec);
                    if (!ec && con && con->get_state() != ::websocketpp::session::state::closed) {
                        con->terminate(std::error_code());
                    }
                }
            }
            ep_.stop_perpetual();
        });
        std::unique_lock<std::mutex> lock(m_);
        if (!cv_.wait_for(lock, prompt_wait, [&] { return stopped_; })) {
            ep_.stop();  // a connection that would not end: stop the loop anyway
        }
        lock.unlock();
        thread_.join();
    }

    /// Starts a connection to ws://127.0.0.1:`port``path`; wait_open() on the
    /// result tells whether it opened.
    std::shared_ptr<ClientConnection> connect(std::uint16_t port, ConnectOptions opts = {}) {
        auto st = std::make_shared<ClientConnection::State>();
        {
            std::lock_guard<std::mutex> lock(m_);
            // Forget connections that are gone so long loops stay O(live).
            if (connections_.size() > 64) {
                std::vector<std::weak_ptr<ClientConnection::State>> live;
                for (auto& w : connections_) {
                    if (!w.expired()) {
                        live.push_back(w);
                    }
                }
                connections_.swap(live);
            }
            connections_.push_back(st);
        }
        const std::string uri = "ws://127.0.0.1:" + std::to_string(port) + opts.path;
        asio::post(ep_.get_io_service(), [this, st, uri, opts] { start(st, uri, opts); });
        return std::make_shared<ClientConnection>(ep_, st);
    }

    /// connect() and wait_open(); nullptr if it did not open in time.
    std::shared_ptr<ClientConnection> connect_open(std::uint16_t port, ConnectOptions opts = {}) {
        auto c = connect(port, std::move(opts));
        return c->wait_open() ? c : nullptr;
    }

private:
    using State = ClientConnection::State;

    // Runs on the io thread. Handlers hold the state, never the connection.
    void start(const std::shared_ptr<State>& st, const std::string& uri,
               const ConnectOptions& opts) {
        std::error_code ec;
        WsClient::connection_ptr con = ep_.get_connection(uri, ec);
        if (ec) {
            std::lock_guard<std::mutex> lock(st->m);
            st->closed = st->failed = true;
            st->cv.notify_all();
            return;
        }
        st->hdl = con->get_handle();
        con->set_open_handler([this, st](::websocketpp::connection_hdl h) {
            std::error_code e;
            const auto c = ep_.get_con_from_hdl(h, e);
            std::lock_guard<std::mutex> lock(st->m);
            if (c) {
                st->server_header = c->get_response_header("Server");
            }
            st->opened = true;
            st->opened_at = SteadyClock::now();
            st->cv.notify_all();
        });
        const bool keep = opts.keep_messages;
        con->set_message_handler(
            [st, keep](::websocketpp::connection_hdl, WsClient::message_ptr msg) {
                std::lock_guard<std::mutex> lock(st->m);
                ++st->received;
                if (msg->get_opcode() != ::websocketpp::frame::opcode::text) {
                    ++st->binaries;
                } else if (keep) {
                    st->texts.push_back(msg->get_payload());
                }
                st->cv.notify_all();
            });
        const bool answer = opts.answer_pings;
        con->set_ping_handler([st, answer](::websocketpp::connection_hdl, std::string) {
            std::lock_guard<std::mutex> lock(st->m);
            ++st->pings;
            return answer;
        });
        auto on_end = [this, st](::websocketpp::connection_hdl h, bool failed) {
            std::error_code e;
            auto c = ep_.get_con_from_hdl(h, e);
            std::lock_guard<std::mutex> lock(st->m);
            if (c) {
                st->remote_code = c->get_remote_close_code();
                st->remote_reason = c->get_remote_close_reason();
                st->local_code = c->get_local_close_code();
            }
            st->failed = failed;
            st->closed = true;
            st->closed_at = SteadyClock::now();
            st->cv.notify_all();
        };
        con->set_close_handler([on_end](::websocketpp::connection_hdl h) { on_end(h, false); });
        con->set_fail_handler([on_end](::websocketpp::connection_hdl h) { on_end(h, true); });
        ep_.connect(con);
    }

    WsClient ep_;
    std::thread thread_;
    std::mutex m_;
    std::condition_variable cv_;
    bool stopped_ = false;
    std::vector<std::weak_ptr<ClientConnection::State>> connections_;
};

// ---------------------------------------------------------------------------
// Raw TCP: a WebSocket client that can stop reading, and HTTP GET.

/// Runs `io` until `done` or `timeout`; true if done. Cancels what is left.
template <class Socket>
bool run_until(asio::io_context& io, Socket& sock, const bool& done, Millis timeout) {
    io.restart();
    const auto deadline = SteadyClock::now() + timeout;
    while (!done && !io.stopped() && SteadyClock::now() < deadline) {
        io.run_one_for(std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()));
    }
    if (!done) {
        // Cancelled operations complete at once with operation_aborted; run
        // them now, while the variables their handlers refer to still exist.
        std::error_code ec;
        sock.cancel(ec);
        io.restart();
        io.run();
    }
    return done;
}

/// Connects `sock` to `address`:`port`, running `io` for at most `timeout`;
/// true once connected.
inline bool connect_within(asio::io_context& io, asio::ip::tcp::socket& sock,
                           const asio::ip::address& address, std::uint16_t port, Millis timeout) {
    bool done = false;
    std::error_code result;
    sock.async_connect({address, port}, [&](const std::error_code& e) {
        result = e;
        done = true;
    });
    return run_until(io, sock, done, timeout) && !result;
}

/// A WebSocket client on a bare TCP socket with a hand-written handshake. It
/// reads the handshake response and then only what the test asks for, so it
/// can play a reader that stopped reading. Synchronous, test thread only.
class RawWsClient {
public:
    RawWsClient() : sock_(io_) {}

    /// One frame as the server sent it (unmasked).
    using Frame = ServerFrame;

    /// Connects with SO_RCVBUF = `receive_buffer` (0: the system's) and does
    /// the opening handshake. True on "101 Switching Protocols".
    bool connect(std::uint16_t port, int receive_buffer = 0, Millis timeout = prompt_wait) {
        if (!connect_tcp(port, receive_buffer, timeout)) {
            return false;
        }
        if (!write(upgrade_request(port), timeout)) {
            return false;
        }
        bool done = false;
        std::error_code result;
        asio::async_read_until(sock_, asio::dynamic_buffer(inbox_), "\r\n\r\n",
                               [&](const std::error_code& e, std::size_t) {
                                   result = e;
                                   done = true;
                               });
        if (!run_until(io_, sock_, done, timeout) || result) {
            return false;
        }
        const bool upgraded = inbox_.rfind("HTTP/1.1 101", 0) == 0;
        // What follows the response head is frames, for read_frame().
        inbox_.erase(0, inbox_.find("\r\n\r\n") + 4);
        return upgraded;
    }

    /// Only the TCP connection, no handshake: for tests that write raw bytes.
    bool connect_tcp(std::uint16_t port, int receive_buffer = 0, Millis timeout = prompt_wait) {
        std::error_code ec;
        sock_.open(asio::ip::tcp::v4(), ec);
        if (ec) {
            return false;
        }
        if (receive_buffer > 0) {
            // Before connect, so the window the kernel advertises is small from the start.
            sock_.set_option(asio::socket_base::receive_buffer_size(receive_buffer), ec);
        }
        return connect_within(io_, sock_, asio::ip::make_address("127.0.0.1"), port, timeout);
    }

    /// Sends one text frame; true if written within `timeout`.
    bool send_text(const std::string& text, Millis timeout = prompt_wait) {
        return send_frame(0x1, text, true, timeout);
    }

    /// Sends one frame of any opcode, a fragment if `fin` is false.
    bool send_frame(std::uint8_t opcode, const std::string& payload, bool fin = true,
                    Millis timeout = prompt_wait) {
        std::string frame;
        append_client_frame(frame, opcode, payload, next_mask(), fin);
        return write(frame, timeout);
    }

    /// Sends `bytes` as they are (frames built with append_client_frame, or
    /// anything else); true if all were written within `timeout`.
    bool send_bytes(const std::string& bytes, Millis timeout = prompt_wait) {
        return write(bytes, timeout);
    }

    /// The next frame from the server; nullopt on timeout or once the
    /// connection ended.
    std::optional<Frame> read_frame(Millis timeout = prompt_wait) {
        const auto deadline = SteadyClock::now() + timeout;
        for (;;) {
            if (auto f = parse_frame()) {
                return f;
            }
            const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
            if (left.count() <= 0 || !read_more(left)) {
                return std::nullopt;
            }
        }
    }

    /// Everything that arrives until the server ends the connection (EOF or
    /// reset), after what was read already; nullopt if it is still open after
    /// `timeout`.
    std::optional<std::string> read_to_end(Millis timeout = prompt_wait) {
        const auto deadline = SteadyClock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            if (!read_more(left)) {
                if (!ended_) {
                    return std::nullopt;
                }
                std::string all = std::move(inbox_);
                inbox_.clear();
                return all;
            }
        }
    }

    /// Closes the socket (a reset if unread data is pending).
    void close() {
        std::error_code ec;
        sock_.close(ec);
    }

    asio::ip::tcp::socket& socket() noexcept { return sock_; }

private:
    bool write(const std::string& bytes, Millis timeout) {
        bool done = false;
        std::error_code result;
        asio::async_write(sock_, asio::buffer(bytes), [&](const std::error_code& e, std::size_t) {
            result = e;
            done = true;
        });
        return run_until(io_, sock_, done, timeout) && !result;
    }

    std::uint32_t next_mask() { return static_cast<std::uint32_t>(rng_()); }

    // Appends what arrives within `timeout` to inbox_; false on timeout or
    // once the connection ended (ended_ tells which).
    bool read_more(Millis timeout) {
        if (ended_) {
            return false;
        }
        char chunk[4096];
        bool done = false;
        std::error_code result;
        std::size_t n = 0;
        sock_.async_read_some(asio::buffer(chunk), [&](const std::error_code& e, std::size_t k) {
            result = e;
            n = k;
            done = true;
        });
        // A timeout cancels the read, which then completes with operation_aborted.
        if (!run_until(io_, sock_, done, timeout) || result == asio::error::operation_aborted) {
            return false;
        }
        inbox_.append(chunk, n);
        if (result) {
            ended_ = true;  // EOF or reset: either way the server ended it
            return n > 0;
        }
        return true;
    }

    // Takes one whole server frame off the front of inbox_, if there is one.
    std::optional<Frame> parse_frame() { return take_server_frame(inbox_); }

    asio::io_context io_;
    asio::ip::tcp::socket sock_;
    std::string inbox_;
    bool ended_ = false;
    std::minstd_rand rng_{12345};
};

/// One HTTP response, as the tiny client below reads it.
struct HttpResponse {
    int status = 0;
    std::string head;  ///< status line and headers
    std::string body;

    /// The value of header `name` (case-insensitive), or "".
    std::string header(const std::string& name) const {
        auto lower = [](std::string s) {
            for (auto& c : s) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            return s;
        };
        const std::string h = lower(head);
        const std::string key = "\r\n" + lower(name) + ":";
        const auto at = h.find(key);
        if (at == std::string::npos) {
            return {};
        }
        auto begin = at + key.size();
        const auto end = head.find("\r\n", begin);
        while (begin < end && head[begin] == ' ') {
            ++begin;
        }
        return head.substr(begin, end - begin);
    }
};

/// `method` `path` on `address`:`port` with `headers` ("Name: value\r\n"
/// each) added (websocketpp closes after one response, so the body is
/// whatever arrives before EOF). nullopt on timeout or error.
inline std::optional<HttpResponse> http_request_to(const asio::ip::address& address,
                                                   std::uint16_t port, const std::string& method,
                                                   const std::string& path,
                                                   const std::string& headers = {},
                                                   Millis timeout = prompt_wait) {
    asio::io_context io;
    asio::ip::tcp::socket sock(io);
    if (!connect_within(io, sock, address, port, timeout)) {
        return std::nullopt;
    }
    const std::string request = method + " " + path +
                                " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                                "\r\nContent-Length: 0\r\nConnection: close\r\n" + headers + "\r\n";
    bool done = false;
    std::error_code result;
    asio::async_write(sock, asio::buffer(request), [&](const std::error_code& e, std::size_t) {
        result = e;
        done = true;
    });
    if (!run_until(io, sock, done, timeout) || result) {
        return std::nullopt;
    }
    std::string raw;
    done = false;
    asio::async_read(sock, asio::dynamic_buffer(raw), [&](const std::error_code& e, std::size_t) {
        result = e;
        done = true;
    });
    if (!run_until(io, sock, done, timeout) || result != asio::error::eof) {
        return std::nullopt;
    }
    const auto head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos || raw.rfind("HTTP/1.1 ", 0) != 0) {
        return std::nullopt;
    }
    HttpResponse r;
    r.head = raw.substr(0, head_end);
    r.body = raw.substr(head_end + 4);
    r.status = std::atoi(raw.c_str() + 9);
    return r;
}

/// `method` `path` on 127.0.0.1:`port`; see http_request_to().
inline std::optional<HttpResponse> http_request(std::uint16_t port, const std::string& method,
                                                const std::string& path,
                                                Millis timeout = prompt_wait) {
    return http_request_to(asio::ip::make_address("127.0.0.1"), port, method, path, {}, timeout);
}

/// GET `path`; see http_request().
inline std::optional<HttpResponse> http_get(std::uint16_t port, const std::string& path,
                                            Millis timeout = prompt_wait) {
    return http_request(port, "GET", path, timeout);
}

/// GET /stats parsed; a discarded JSON value if it failed.
inline nlohmann::json get_stats(std::uint16_t port) {
    auto r = http_get(port, "/stats");
    if (!r || r->status != 200) {
        return nlohmann::json(nlohmann::json::value_t::discarded);
    }
    return nlohmann::json::parse(r->body, nullptr, false);
}

/// A top-level (or nested, with a second key) count from a /stats object; -1 if absent.
inline long long stat_of(const nlohmann::json& s, const char* key, const char* sub = nullptr) {
    if (!s.is_object() || !s.contains(key)) {
        return -1;
    }
    const auto& v = sub ? s.at(key).value(sub, nlohmann::json()) : s.at(key);
    return v.is_number() ? v.get<long long>() : -1;
}

/// Polls /stats until `pred(stats)` holds; the last stats read go to `last`.
template <class Pred>
bool stats_eventually(std::uint16_t port, Pred pred, nlohmann::json& last,
                      Millis timeout = prompt_wait) {
    return eventually(
        [&] {
            last = get_stats(port);
            return !last.is_discarded() && pred(last);
        },
        timeout, Millis{20});
}

}  // namespace wsguard::test

// Compiled once, in harness_instances.cpp, for every binary that includes this
// harness: the server and both websocketpp endpoints are most of a test file's
// build time, and each file would otherwise instantiate them again. Targets
// that link wsguard_integration_harness see these; others build their own.
#ifdef WSGUARD_HARNESS_INSTANCES
extern template class chat::ChatServer<wsguard::NullMutex>;
extern template class chat::ChatServer<std::mutex>;
extern template class websocketpp::server<chat::ChatServer<wsguard::NullMutex>::Config>;
extern template class websocketpp::connection<chat::ChatServer<wsguard::NullMutex>::Config>;
extern template class websocketpp::server<chat::ChatServer<std::mutex>::Config>;
extern template class websocketpp::connection<chat::ChatServer<std::mutex>::Config>;
extern template class websocketpp::client<websocketpp::config::asio_client>;
extern template class websocketpp::connection<websocketpp::config::asio_client>;
#endif
