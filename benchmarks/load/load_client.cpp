// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Load client for the reference chat server and its baselines (naive room
// server, bare echo server). It speaks the chat protocol over websocketpp's
// asio client, runs one scenario bounded in time and count, stops by itself,
// and prints ONE machine-readable result line on stdout:
//
//   scenario=pingpong connections=C depth=D messages=N seconds=S rate=R p50_us=.. p99_us=..
//   errors=E
//
// Progress markers for a driving script (benchmarks/load/compare.py) go to
// stderr as `phase=<name> ...` lines: `ready` (every connection open and
// confirmed), `measure-start` / `measure-end` (the measured window, drained:
// every reply to what was sent inside it has arrived), `open` (idle: all held
// open), `progress` (churn: 10% of the cycles done), `closed` (all closed).
//
// Scenarios:
//   pingpong  C connections, D pings in flight on each; a reply of any kind
//             counts (the echo server echoes the ping), latency per round trip.
//             --ping-pad-bytes B adds a "pad" string of B bytes to each ping:
//             large inbound messages with a small reply, which is what the
//             server's read buffer size costs (benchmarks/RESULTS.md).
//   fanout    K members of one room; member 0 publishes and keeps D
//             room-messages in flight, paced by member 1's receipts (when
//             member 1 receives message i the publisher sends the next).
//             Deliveries = messages * (K-1) over all members; latency is send
//             to receipt at member 1.
//   idle      N connections opened, held --hold-s seconds, then closed.
//   churn     connect / join / room-message / close cycles, --parallel at a time;
//             --cycles 0 runs cycles for --duration-s instead (a soak), then lets
//             the cycles in flight finish.
//
// Every connection is confirmed before it counts as open: it joins its room
// (when the scenario has one) then sends a ping and waits for the reply, so a
// connection the server admitted and then refused is an error, not a success.
// Connection opening is paced (--open-concurrency handshakes in flight) so the
// server's listen backlog is never the thing measured.
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

/// websocketpp's asio client with both logs compiled out: a log line per
/// connect or message would cost more than the client's own work.
struct QuietClientConfig : websocketpp::config::asio_client {
    using type = QuietClientConfig;
    using base = websocketpp::config::asio_client;
    static const websocketpp::log::level alog_level = websocketpp::log::alevel::none;
    static const websocketpp::log::level elog_level = websocketpp::log::elevel::none;
};

using Client = websocketpp::client<QuietClientConfig>;
using Clock = std::chrono::steady_clock;

enum class Scenario { pingpong, fanout, idle, churn };

struct Options {
    Scenario scenario = Scenario::pingpong;
    std::string scenario_name = "pingpong";
    std::string host = "127.0.0.1";
    unsigned port = 8080;
    std::size_t connections = 100;
    std::size_t depth = 1;
    std::uint64_t messages = 0;  // 0: bounded by --duration-s only
    double duration_s = 10;
    std::size_t content_bytes = 64;
    std::size_t ping_pad_bytes = 0;
    double hold_s = 5;
    std::uint64_t cycles = 1000;  // 0: churn for --duration-s
    std::size_t parallel = 64;
    std::size_t churn_rooms = 16;
    unsigned threads = 1;
    std::size_t open_concurrency = 200;
    std::string room = "bench";
    double phase_timeout_s = 60;  // bound on opening, draining and closing each
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "load_client: %s\n"
                 "usage: load_client --scenario pingpong|fanout|idle|churn [--port N] [--host H]\n"
                 "  [--connections N] [--depth D] [--messages N] [--duration-s S]\n"
                 "  [--content-bytes B] [--ping-pad-bytes B] [--hold-s S] [--cycles N]\n"
                 "  [--parallel P] [--churn-rooms R] [--threads T] [--open-concurrency N]\n"
                 "  [--room NAME] [--phase-timeout-s S]\n",
                 why.c_str());
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    Options o;
    auto number = [](const std::string& flag, const char* text) {
        char* end = nullptr;
        const double v = std::strtod(text, &end);
        if (end == text || *end != '\0' || v < 0) {
            usage("bad value for " + flag + ": " + text);
        }
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            usage("help");
        }
        if (i + 1 >= argc) {
            usage("missing value for " + flag);
        }
        const char* value = argv[++i];
        if (flag == "--scenario") {
            o.scenario_name = value;
            if (o.scenario_name == "pingpong") {
                o.scenario = Scenario::pingpong;
            } else if (o.scenario_name == "fanout") {
                o.scenario = Scenario::fanout;
            } else if (o.scenario_name == "idle") {
                o.scenario = Scenario::idle;
            } else if (o.scenario_name == "churn") {
                o.scenario = Scenario::churn;
            } else {
                usage("unknown scenario " + o.scenario_name);
            }
        } else if (flag == "--host") {
            o.host = value;
        } else if (flag == "--room") {
            o.room = value;
        } else if (flag == "--port") {
            o.port = unsigned(number(flag, value));
        } else if (flag == "--connections") {
            o.connections = std::size_t(number(flag, value));
        } else if (flag == "--depth") {
            o.depth = std::size_t(number(flag, value));
        } else if (flag == "--messages") {
            o.messages = std::uint64_t(number(flag, value));
        } else if (flag == "--duration-s") {
            o.duration_s = number(flag, value);
        } else if (flag == "--content-bytes") {
            o.content_bytes = std::size_t(number(flag, value));
        } else if (flag == "--ping-pad-bytes") {
            o.ping_pad_bytes = std::size_t(number(flag, value));
        } else if (flag == "--hold-s") {
            o.hold_s = number(flag, value);
        } else if (flag == "--cycles") {
            o.cycles = std::uint64_t(number(flag, value));
        } else if (flag == "--parallel") {
            o.parallel = std::size_t(number(flag, value));
        } else if (flag == "--churn-rooms") {
            o.churn_rooms = std::size_t(number(flag, value));
        } else if (flag == "--threads") {
            o.threads = unsigned(number(flag, value));
        } else if (flag == "--open-concurrency") {
            o.open_concurrency = std::size_t(number(flag, value));
        } else if (flag == "--phase-timeout-s") {
            o.phase_timeout_s = number(flag, value);
        } else {
            usage("unknown option " + flag);
        }
    }
    if (o.port == 0 || o.port > 65535) {
        usage("--port must be 1..65535");
    }
    if (o.connections == 0 || o.depth == 0 || o.threads == 0 || o.open_concurrency == 0 ||
        o.parallel == 0 || o.churn_rooms == 0) {
        usage("counts must be at least 1");
    }
    if (o.scenario == Scenario::fanout && o.connections < 2) {
        usage("fanout needs at least 2 connections (a publisher and a receiver)");
    }
    return o;
}

/// Raises the descriptor limit to the hard limit: thousands of sockets.
void raise_fd_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

void marker(const std::string& text) {
    std::fprintf(stderr, "phase=%s\n", text.c_str());
    std::fflush(stderr);
}

bool contains(const std::string& haystack, const char* needle) {
    return haystack.find(needle) != std::string::npos;
}

std::uint32_t micros_since(Clock::time_point t0, Clock::time_point t1) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
    return us < 0 ? 0u : us > 0xffffffffLL ? 0xffffffffu : std::uint32_t(us);
}

enum class State { idle, connecting, confirming, ready, closing, done };

struct Worker;

/// One WebSocket connection; touched only on its worker's io thread.
struct Conn {
    std::size_t index = 0;
    Worker* worker = nullptr;
    Client::connection_ptr con;
    State state = State::idle;
    std::uint64_t generation = 0;  // handlers of an earlier churn cycle must not act
    std::deque<Clock::time_point> sent;
    Clock::time_point cycle_start;
    int churn_pongs = 0;
    std::string room;
};

/// One client endpoint with its own io_context and thread; connections are
/// spread over workers so no handler ever needs a lock.
struct Worker {
    Client client;
    std::thread thread;
    std::vector<Conn*> conns;
    std::size_t next_open = 0;
    std::size_t opening = 0;  // handshakes + confirmations in flight
    std::size_t open_limit = 1;
    std::vector<std::uint32_t> latencies_us;
};

class LoadClient {
public:
    explicit LoadClient(Options o) : o_(std::move(o)) {
        uri_ = "ws://" + o_.host + ":" + std::to_string(o_.port) + "/";
        ping_ = o_.ping_pad_bytes == 0
                    ? std::string(R"({"type":"ping"})")
                    : R"({"type":"ping","pad":")" + std::string(o_.ping_pad_bytes, 'x') + R"("})";
        publish_ = R"({"type":"room-message","room":")" + o_.room + R"(","content":")" +
                   std::string(o_.content_bytes, 'x') + R"("})";
        std::size_t conn_count = o_.connections;
        if (o_.scenario == Scenario::churn) {
            // Timed churn (--cycles 0) keeps --parallel cycles going.
            conn_count =
                o_.cycles == 0 ? o_.parallel : std::min<std::uint64_t>(o_.parallel, o_.cycles);
        }
        workers_.reserve(o_.threads);
        for (unsigned t = 0; t < o_.threads; ++t) {
            auto w = std::make_unique<Worker>();
            w->client.init_asio();
            // No Nagle on the client: a join followed by a ping would otherwise
            // wait for the server's delayed ACK (40 ms on Linux), and the
            // client's own latency would be what the scenario measures.
            w->client.set_socket_init_handler(
                [](websocketpp::connection_hdl, asio::ip::tcp::socket& s) {
                    asio::error_code ignored;
                    s.set_option(asio::ip::tcp::no_delay(true), ignored);
                });
            w->client.start_perpetual();
            w->open_limit = std::max<std::size_t>(1, o_.open_concurrency / o_.threads);
            w->latencies_us.reserve(1 << 16);
            workers_.push_back(std::move(w));
        }
        conns_.reserve(conn_count);
        for (std::size_t i = 0; i < conn_count; ++i) {
            auto c = std::make_unique<Conn>();
            c->index = i;
            // The fanout publisher (0) and pacing member (1) share worker 0:
            // the pacer's receipt drives the publisher's next send directly.
            const std::size_t w = i <= 1 ? 0 : i % o_.threads;
            c->worker = workers_[w].get();
            c->room = o_.room;
            workers_[w]->conns.push_back(c.get());
            conns_.push_back(std::move(c));
        }
        for (auto& w : workers_) {
            Worker* raw = w.get();
            w->thread = std::thread([raw] { raw->client.run(); });
        }
    }

    LoadClient(const LoadClient&) = delete;
    LoadClient& operator=(const LoadClient&) = delete;

    ~LoadClient() { stop_workers(); }

    int run() {
        switch (o_.scenario) {
            case Scenario::pingpong:
            case Scenario::fanout:
                return run_traffic();
            case Scenario::idle:
                return run_idle();
            case Scenario::churn:
                return run_churn();
        }
        return 2;
    }

private:
    // ---- helpers run on the io threads --------------------------------------

    void send(Conn* c, const std::string& text) {
        if (c->con->send(text, websocketpp::frame::opcode::text)) {
            ++errors_;
        }
    }

    void open_more(Worker* w) {
        while (w->opening < w->open_limit && w->next_open < w->conns.size()) {
            Conn* c = w->conns[w->next_open++];
            ++w->opening;
            start_connect(c);
        }
    }

    void start_connect(Conn* c) {
        Worker* w = c->worker;
        websocketpp::lib::error_code ec;
        auto con = w->client.get_connection(uri_, ec);
        const std::uint64_t gen = ++c->generation;
        c->state = State::connecting;
        ++live_;
        c->sent.clear();
        c->churn_pongs = 0;
        c->cycle_start = Clock::now();
        if (ec) {
            on_fail(c, gen);
            return;
        }
        c->con = con;
        con->set_open_handler([this, c, gen](websocketpp::connection_hdl) { on_open(c, gen); });
        con->set_fail_handler([this, c, gen](websocketpp::connection_hdl) { on_fail(c, gen); });
        con->set_close_handler([this, c, gen](websocketpp::connection_hdl) { on_close(c, gen); });
        con->set_message_handler(
            [this, c, gen](websocketpp::connection_hdl, Client::message_ptr msg) {
                if (c->generation == gen) {
                    on_message(c, msg->get_payload());
                }
            });
        w->client.connect(con);
    }

    bool has_room() const {
        return o_.scenario == Scenario::fanout || o_.scenario == Scenario::churn;
    }

    void on_open(Conn* c, std::uint64_t gen) {
        if (c->generation != gen) {
            return;
        }
        c->state = State::confirming;
        if (has_room()) {
            send(c, R"({"type":"join","room":")" + c->room + R"("})");
        }
        send(c, ping_);
    }

    /// Leaves the opening window (confirmed, failed or closed while opening).
    void opened_or_gave_up(Conn* c) {
        if (o_.scenario == Scenario::churn) {
            return;
        }
        --c->worker->opening;
        open_more(c->worker);
    }

    void on_fail(Conn* c, std::uint64_t gen) {
        if (c->generation != gen) {
            return;
        }
        ++errors_;
        ++failed_;
        const State was = c->state;
        c->state = State::done;
        --live_;
        c->con.reset();
        if (was == State::connecting || was == State::confirming) {
            opened_or_gave_up(c);
        }
        if (o_.scenario == Scenario::churn) {
            finish_cycle(c);
        }
    }

    void on_close(Conn* c, std::uint64_t gen) {
        if (c->generation != gen) {
            return;
        }
        const State was = c->state;
        c->state = State::done;
        --live_;
        c->con.reset();
        ++closed_;
        if (was != State::closing) {
            ++errors_;  // the server closed it: refused, slow consumer, ...
            in_flight_ -= std::int64_t(c->sent.size());
            c->sent.clear();
        }
        if (was == State::connecting || was == State::confirming) {
            opened_or_gave_up(c);
        }
        if (o_.scenario == Scenario::churn) {
            if (was == State::closing) {
                c->worker->latencies_us.push_back(micros_since(c->cycle_start, Clock::now()));
            }
            finish_cycle(c);
        }
    }

    void on_message(Conn* c, const std::string& payload) {
        if (contains(payload, R"("type":"error")")) {
            ++errors_;
        }
        switch (c->state) {
            case State::confirming:
                // {"type":"pong"}, or the ping itself from the echo server.
                if (payload == ping_ || contains(payload, R"("type":"pong")")) {
                    c->state = State::ready;
                    ++ready_;
                    if (o_.scenario == Scenario::churn) {
                        churn_step(c);
                    } else {
                        opened_or_gave_up(c);
                    }
                }
                return;
            case State::ready:
                break;
            default:
                return;
        }
        switch (o_.scenario) {
            case Scenario::pingpong:
                return pingpong_reply(c);
            case Scenario::fanout:
                return fanout_receipt(c, payload);
            case Scenario::churn:
                if (contains(payload, R"("type":"pong")")) {
                    churn_step(c);
                }
                return;
            case Scenario::idle:
                return;
        }
    }

    bool take_budget() {
        if (stop_.load(std::memory_order_relaxed)) {
            return false;
        }
        return o_.messages == 0 || sent_.fetch_add(1, std::memory_order_relaxed) < o_.messages;
    }

    void send_ping(Conn* c) {
        if (!take_budget()) {
            return;
        }
        c->sent.push_back(Clock::now());
        ++in_flight_;
        send(c, ping_);
    }

    void pingpong_reply(Conn* c) {
        if (c->sent.empty()) {
            ++errors_;  // a reply to nothing we sent
            return;
        }
        c->worker->latencies_us.push_back(micros_since(c->sent.front(), Clock::now()));
        c->sent.pop_front();
        --in_flight_;
        ++received_;
        send_ping(c);
    }

    void publish() {
        Conn* pub = conns_[0].get();
        if (pub->state != State::ready || !take_budget()) {
            return;
        }
        pub->sent.push_back(Clock::now());
        ++published_;
        send(pub, publish_);
    }

    void fanout_receipt(Conn* c, const std::string& payload) {
        if (!contains(payload, R"("type":"message")")) {
            return;
        }
        ++received_;
        if (c->index != 1) {
            return;
        }
        Conn* pub = conns_[0].get();
        if (pub->sent.empty()) {
            ++errors_;
            return;
        }
        c->worker->latencies_us.push_back(micros_since(pub->sent.front(), Clock::now()));
        pub->sent.pop_front();
        publish();
    }

    // churn: open -> join + ping -> pong -> room-message + ping -> pong -> close
    void churn_step(Conn* c) {
        ++c->churn_pongs;
        if (c->churn_pongs == 1) {
            send(c, R"({"type":"room-message","room":")" + c->room + R"(","content":")" +
                        std::string(o_.content_bytes, 'x') + R"("})");
            send(c, ping_);
        } else if (c->churn_pongs == 2) {
            c->state = State::closing;
            websocketpp::lib::error_code ec;
            c->con->close(websocketpp::close::status::normal, "", ec);
            if (ec) {
                ++errors_;
            }
        }
    }

    void start_cycle(Conn* c) {
        if (o_.cycles == 0 && stop_.load()) {
            return;  // timed churn: the time is up
        }
        const std::uint64_t n = cycles_started_.fetch_add(1);
        if (o_.cycles != 0 && n >= o_.cycles) {
            return;
        }
        c->room = "churn-" + std::to_string(n % o_.churn_rooms);
        start_connect(c);
    }

    void finish_cycle(Conn* c) {
        ++cycles_done_;
        if (!stop_.load()) {
            start_cycle(c);
        }
    }

    // ---- the main thread -------------------------------------------------------

    template <class Fn>
    void on_each_worker(Fn fn) {
        for (auto& w : workers_) {
            Worker* raw = w.get();
            asio::post(raw->client.get_io_service(), [raw, fn] { fn(raw); });
        }
    }

    /// Polls `done` every millisecond until it holds or `limit` passes.
    template <class Pred>
    bool wait_until(Pred done, double limit_s) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(limit_s);
        while (!done()) {
            if (Clock::now() >= deadline) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

    /// Opens and confirms every connection; false if some never made it.
    bool open_all() {
        open_started_ = Clock::now();
        on_each_worker([this](Worker* w) { open_more(w); });
        const std::size_t total = conns_.size();
        const bool all_settled =
            wait_until([&] { return ready_.load() + failed_.load() + closed_.load() >= total; },
                       o_.phase_timeout_s);
        open_seconds_ = std::chrono::duration<double>(Clock::now() - open_started_).count();
        if (!all_settled || ready_.load() < total) {
            std::fprintf(stderr, "load_client: %zu of %zu connections opened\n", ready_.load(),
                         total);
            return false;
        }
        marker("ready connections=" + std::to_string(total));
        return true;
    }

    void close_all() {
        stop_ = true;
        on_each_worker([](Worker* w) {
            for (Conn* c : w->conns) {
                if (c->con && (c->state == State::ready || c->state == State::confirming)) {
                    c->state = State::closing;
                    websocketpp::lib::error_code ec;
                    c->con->close(websocketpp::close::status::normal, "", ec);
                }
            }
        });
        if (!wait_until([&] { return live_.load() == 0; }, o_.phase_timeout_s)) {
            std::fprintf(stderr, "load_client: %lld connections did not close in time\n",
                         static_cast<long long>(live_.load()));
            ++errors_;
        }
        marker("closed");
    }

    void stop_workers() {
        for (auto& w : workers_) {
            w->client.stop_perpetual();
        }
        for (auto& w : workers_) {
            // Connections that never closed would keep run() alive: stop it.
            w->client.stop();
            if (w->thread.joinable()) {
                w->thread.join();
            }
        }
    }

    std::pair<std::uint32_t, std::uint32_t> percentiles() {
        std::vector<std::uint32_t> all;
        for (auto& w : workers_) {
            all.insert(all.end(), w->latencies_us.begin(), w->latencies_us.end());
        }
        if (all.empty()) {
            return {0, 0};
        }
        auto at = [&all](double q) {
            const std::size_t k = std::min(all.size() - 1, std::size_t(q * double(all.size())));
            std::nth_element(all.begin(), all.begin() + std::ptrdiff_t(k), all.end());
            return all[k];
        };
        const std::uint32_t p50 = at(0.50);
        const std::uint32_t p99 = at(0.99);
        return {p50, p99};
    }

    int run_traffic() {
        const bool fanout = o_.scenario == Scenario::fanout;
        double seconds = 0;
        if (open_all()) {
            marker("measure-start");
            const auto t0 = Clock::now();
            if (fanout) {
                // Posted to worker 0, where the publisher and the pacer live.
                asio::post(conns_[0]->worker->client.get_io_service(), [this] {
                    for (std::size_t i = 0; i < o_.depth; ++i) {
                        publish();
                    }
                });
            } else {
                on_each_worker([this](Worker* w) {
                    for (Conn* c : w->conns) {
                        for (std::size_t i = 0; i < o_.depth && c->state == State::ready; ++i) {
                            send_ping(c);
                        }
                    }
                });
            }
            const std::uint64_t limit = o_.messages;
            wait_until(
                [&] {
                    const std::uint64_t done = fanout ? published_.load() : received_.load();
                    return limit != 0 && done >= limit;
                },
                o_.duration_s);
            stop_ = true;
            // Drain: the window ends when every reply to what was sent has come.
            const std::uint64_t members = o_.connections - 1;
            const bool drained = wait_until(
                [&] {
                    return fanout ? received_.load() >= published_.load() * members
                                  : in_flight_.load() <= 0;
                },
                o_.phase_timeout_s);
            seconds = std::chrono::duration<double>(Clock::now() - t0).count();
            marker("measure-end");
            if (!drained) {
                std::fprintf(stderr, "load_client: replies still missing after the drain\n");
                ++errors_;
            }
        } else {
            ++errors_;
        }
        close_all();
        stop_workers();
        const auto [p50, p99] = percentiles();
        const double received = double(received_.load());
        if (fanout) {
            std::printf(
                "scenario=fanout connections=%zu depth=%zu content_bytes=%zu messages=%llu "
                "deliveries=%llu seconds=%.3f rate=%.0f p50_us=%u p99_us=%u open_seconds=%.3f "
                "errors=%llu\n",
                o_.connections, o_.depth, o_.content_bytes,
                static_cast<unsigned long long>(published_.load()),
                static_cast<unsigned long long>(received_.load()), seconds,
                seconds > 0 ? received / seconds : 0.0, p50, p99, open_seconds_,
                static_cast<unsigned long long>(errors_.load()));
        } else {
            std::printf(
                "scenario=pingpong connections=%zu depth=%zu ping_pad_bytes=%zu messages=%llu "
                "seconds=%.3f rate=%.0f p50_us=%u p99_us=%u open_seconds=%.3f errors=%llu\n",
                o_.connections, o_.depth, o_.ping_pad_bytes,
                static_cast<unsigned long long>(received_.load()), seconds,
                seconds > 0 ? received / seconds : 0.0, p50, p99, open_seconds_,
                static_cast<unsigned long long>(errors_.load()));
        }
        std::fflush(stdout);
        return errors_.load() == 0 ? 0 : 1;
    }

    int run_idle() {
        if (open_all()) {
            marker("open connections=" + std::to_string(conns_.size()));
            std::this_thread::sleep_for(std::chrono::duration<double>(o_.hold_s));
        } else {
            ++errors_;
        }
        close_all();
        stop_workers();
        std::printf("scenario=idle connections=%zu open_seconds=%.3f hold_s=%.3f errors=%llu\n",
                    conns_.size(), open_seconds_, o_.hold_s,
                    static_cast<unsigned long long>(errors_.load()));
        std::fflush(stdout);
        return errors_.load() == 0 ? 0 : 1;
    }

    int run_churn() {
        const auto t0 = Clock::now();
        marker("measure-start");
        on_each_worker([this](Worker* w) {
            for (Conn* c : w->conns) {
                start_cycle(c);
            }
        });
        const std::uint64_t tenth = std::max<std::uint64_t>(1, o_.cycles / 10);
        bool progress_shown = false;
        bool finished = false;
        double limit = 0;
        if (o_.cycles == 0) {
            // Timed: cycles for --duration-s (progress at a tenth of it), then
            // no new cycle starts and the ones in flight run to their close.
            const auto tenth_time = t0 + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o_.duration_s / 10));
            wait_until(
                [&] {
                    if (!progress_shown && Clock::now() >= tenth_time) {
                        progress_shown = true;
                        marker("progress cycles=" + std::to_string(cycles_done_.load()));
                    }
                    return false;
                },
                o_.duration_s);
            stop_ = true;
            limit = o_.phase_timeout_s;
            finished = wait_until([&] { return live_.load() == 0; }, limit);
        } else {
            // Each cycle has its own phase timeout; the whole run gets as many
            // seconds as a slow machine needs at 100 cycles/s, plus one timeout.
            limit = o_.phase_timeout_s + double(o_.cycles) / 100.0;
            finished = wait_until(
                [&] {
                    const std::uint64_t done = cycles_done_.load();
                    if (!progress_shown && done >= tenth) {
                        progress_shown = true;
                        marker("progress cycles=" + std::to_string(done));
                    }
                    return done >= o_.cycles;
                },
                limit);
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        marker("measure-end");
        if (!finished) {
            std::fprintf(stderr, "load_client: churn did not finish in %.0f s\n",
                         o_.cycles == 0 ? o_.duration_s + limit : limit);
            ++errors_;
        }
        close_all();
        stop_workers();
        const auto [p50, p99] = percentiles();
        const double done = double(cycles_done_.load());
        std::printf(
            "scenario=churn cycles=%llu parallel=%zu rooms=%zu seconds=%.3f rate=%.0f p50_us=%u "
            "p99_us=%u errors=%llu\n",
            static_cast<unsigned long long>(cycles_done_.load()), conns_.size(), o_.churn_rooms,
            seconds, seconds > 0 ? done / seconds : 0.0, p50, p99,
            static_cast<unsigned long long>(errors_.load()));
        std::fflush(stdout);
        return errors_.load() == 0 ? 0 : 1;
    }

    Options o_;
    std::string uri_, ping_, publish_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> ready_{0}, failed_{0}, closed_{0};
    std::atomic<std::uint64_t> errors_{0}, sent_{0}, received_{0}, published_{0};
    std::atomic<std::int64_t> in_flight_{0};
    std::atomic<std::uint64_t> cycles_started_{0}, cycles_done_{0};
    std::atomic<std::int64_t> live_{0};  // connections started and not yet closed or failed
    Clock::time_point open_started_;
    double open_seconds_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    const Options options = parse_options(argc, argv);
    raise_fd_limit();
    // websocketpp detects byte order lazily in a function-local static; settle
    // it here, before worker threads frame messages concurrently.
    static_cast<void>(websocketpp::lib::net::_htonll(1));
    try {
        LoadClient client(options);
        return client.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "load_client: %s\n", e.what());
        return 2;
    }
}
