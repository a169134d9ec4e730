// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// AsioTicker on a real asio endpoint, its io_context driven by the test
// (run_one / run_for, every wait bounded): ticks come no sooner than the
// period apart, run guard.tick() then the extra callback (or the callback
// only), and stop for good on stop(), on destruction and once the guard is
// shutting down, leaving no work on the io_context. A ticker destroyed while
// its tick is due leaves a handler that touches nothing (ASan checks it).
#include <wsguard/websocketpp/asio_ticker.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <catch2/catch.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using wsguard::wspp::AsioTicker;
using wsguard::wspp::TickerMode;
using Config = wsguard::wspp::asio_lean_single_thread;
using Server = websocketpp::server<Config>;
using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds period{20};
// Only stops a wedged test; the waits below end on their condition.
constexpr auto patience = 5s;  // only a failing case waits it out

void quiet_init(Server& server, asio::io_context& io) {
    server.clear_access_channels(websocketpp::log::alevel::all);
    server.clear_error_channels(websocketpp::log::elevel::all);
    server.init_asio(&io);
}

/// What AsioTicker needs of a guard, recording what the ticker does to it.
struct FakeGuard {
    using server_type = Server;

    explicit FakeGuard(asio::io_context& io) { quiet_init(endpoint, io); }

    server_type& server() noexcept { return endpoint; }
    void tick() { events.emplace_back("tick"); }
    bool shutting_down() const noexcept { return shutting; }

    std::size_t ticks() const {
        std::size_t n = 0;
        for (const auto& e : events) {
            n += e == "tick" ? 1 : 0;
        }
        return n;
    }

    Server endpoint;
    std::vector<std::string> events;
    bool shutting = false;
};

/// Runs handlers of `io` one at a time until `done()` or `patience` ran out.
template <class Done>
bool run_until(asio::io_context& io, Done done) {
    const auto deadline = SteadyClock::now() + patience;
    while (!done() && SteadyClock::now() < deadline) {
        io.run_one_for(deadline - SteadyClock::now());
    }
    return done();
}

/// True when `io` has no work left: run_for returns at once, stopped.
bool runs_out_of_work(asio::io_context& io) {
    io.restart();
    const auto start = SteadyClock::now();
    io.run_for(patience);
    return io.stopped() && SteadyClock::now() - start < patience;
}

}  // namespace

TEST_CASE("ticks come a period apart: guard.tick() then the callback", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    std::vector<SteadyClock::time_point> at;
    const auto start = SteadyClock::now();
    AsioTicker<FakeGuard> ticker(guard, period, [&] {
        guard.events.emplace_back("also");
        at.push_back(SteadyClock::now());
    });
    CHECK(guard.events.empty());  // nothing before the first period
    REQUIRE(run_until(io, [&] { return at.size() == 5; }));
    CHECK(guard.events == std::vector<std::string>{"tick", "also", "tick", "also", "tick", "also",
                                                   "tick", "also", "tick", "also"});
    // Never sooner than a period: the first from construction, each next from
    // the one before (it is scheduled after its callback returned).
    CHECK(at.front() - start >= period);
    for (std::size_t i = 1; i < at.size(); ++i) {
        INFO("tick " << i);
        CHECK(at[i] - at[i - 1] >= period);
    }
    // Nor many periods late: a loaded machine gets slack, a stalled ticker does not.
    CHECK(at.back() - start < 5 * period + patience);
}

TEST_CASE("stop(): no tick after it returns, and the io_context runs out of work",
          "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    AsioTicker<FakeGuard> ticker(guard, period);
    REQUIRE(run_until(io, [&] { return guard.ticks() == 2; }));
    ticker.stop();
    CHECK(runs_out_of_work(io));
    CHECK(guard.ticks() == 2);
    ticker.stop();  // twice is fine
}

TEST_CASE("stop() from inside a tick ends the ticking", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    std::unique_ptr<AsioTicker<FakeGuard>> ticker;
    int calls = 0;
    ticker = std::make_unique<AsioTicker<FakeGuard>>(guard, period, [&] {
        if (++calls == 3) {
            ticker->stop();
        }
    });
    CHECK(runs_out_of_work(io));
    CHECK(calls == 3);
    CHECK(guard.ticks() == 3);
}

TEST_CASE("destruction stops the ticking", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    auto ticker = std::make_unique<AsioTicker<FakeGuard>>(guard, period);
    REQUIRE(run_until(io, [&] { return guard.ticks() == 1; }));
    ticker.reset();  // the next tick is pending
    CHECK(runs_out_of_work(io));
    CHECK(guard.ticks() == 1);
}

TEST_CASE("a ticker destroyed after its tick fell due leaves a handler that does nothing",
          "[asio_ticker]") {
    // The destroying handler and the ticker's expire in the same pass of the
    // reactor: both are queued as completed (cancel() is too late), and the
    // ticker's then runs with no error, after the ticker is gone.
    asio::io_context io;
    FakeGuard guard(io);
    std::unique_ptr<AsioTicker<FakeGuard>> ticker;
    int calls = 0;
    asio::steady_timer destroyer(io, period - 5ms);  // expires first, whatever the clock reads
    ticker = std::make_unique<AsioTicker<FakeGuard>>(guard, period, [&] { ++calls; });
    bool destroyed = false;
    destroyer.async_wait([&](const asio::error_code&) {
        ticker.reset();
        destroyed = true;
    });
    std::this_thread::sleep_for(2 * period);  // both timers expired, no handler run yet
    CHECK(io.run_one() == 1);
    CHECK(destroyed);
    CHECK(runs_out_of_work(io));
    CHECK(calls == 0);
    CHECK(guard.ticks() == 0);
}

TEST_CASE("callback_only: the callback runs each period, guard.tick() never", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    int calls = 0;
    AsioTicker<FakeGuard> ticker(
        guard, period, [&] { ++calls; }, TickerMode::callback_only);
    REQUIRE(run_until(io, [&] { return calls == 3; }));
    CHECK(guard.ticks() == 0);
}

TEST_CASE("no tick is scheduled once the guard is shutting down", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    int calls = 0;
    AsioTicker<FakeGuard> ticker(guard, period, [&] {
        if (++calls == 2) {
            guard.shutting = true;
        }
    });
    CHECK(runs_out_of_work(io));
    CHECK(calls == 2);
    CHECK(guard.ticks() == 2);
}

TEST_CASE("the period must be positive and callback_only needs a callback", "[asio_ticker]") {
    asio::io_context io;
    FakeGuard guard(io);
    CHECK_THROWS_AS(AsioTicker<FakeGuard>(guard, 0ms), std::invalid_argument);
    CHECK_THROWS_AS(AsioTicker<FakeGuard>(guard, -5ms), std::invalid_argument);
    CHECK_THROWS_AS(AsioTicker<FakeGuard>(guard, period, nullptr, TickerMode::callback_only),
                    std::invalid_argument);
    CHECK(runs_out_of_work(io));  // a refused ticker scheduled nothing
}

TEST_CASE("on a ServerGuard: ticks until shutdown(), then the io_context ends", "[asio_ticker]") {
    asio::io_context io;
    Server server;
    quiet_init(server, io);
    wsguard::wspp::ServerGuard<Config> guard(server);
    int calls = 0;
    AsioTicker<decltype(guard)> ticker(guard, period, [&] {
        if (++calls == 2) {
            guard.shutdown();
        }
    });
    CHECK(runs_out_of_work(io));
    CHECK(calls == 2);
}
