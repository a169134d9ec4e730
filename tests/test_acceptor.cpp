// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Acceptor over loopback, with ServerGuard::note_accepted as its admission:
// out of descriptors (RLIMIT_NOFILE lowered in this process) the loop backs
// off instead of spinning a core, and accepts again once descriptors are
// freed; it ends when the server stops listening; handshakes in progress are
// bounded (max_pending_handshakes: the next socket is closed unread) and
// counted until they open, fail or time out (slowloris), back to zero.
#include "support/loopback_server.hpp"

#include <wsguard/websocketpp/acceptor.hpp>
#include <wsguard/websocketpp/lean_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;
using Config = wsguard::wspp::asio_lean_single_thread;
using Loopback = wsguard::test::LoopbackServer<Config>;
using Server = Loopback::Server;
using SteadyClock = std::chrono::steady_clock;
using wsguard::test::eventually;

/// The server accepting through an Acceptor that asks the guard.
struct AcceptingServer {
    std::unique_ptr<wsguard::wspp::Acceptor<Server>> acceptor;
    Loopback loopback;

    explicit AcceptingServer(wsguard::wspp::GuardOptions o)
        : loopback(o, [this](Loopback& l) {
              acceptor = std::make_unique<wsguard::wspp::Acceptor<Server>>(
                  l.server(),
                  [&l](Server::connection_type& con) { return l.guard().note_accepted(con); });
              acceptor->start();
          }) {}
    ~AcceptingServer() {
        acceptor->stop();
        loopback.stop();
        // Before the server (its io_context, the acceptor's timer's service) goes.
        acceptor.reset();
    }
};

wsguard::wspp::GuardOptions quiet_options() {
    wsguard::wspp::GuardOptions o;
    o.ping_interval = 0ms;
    o.idle_timeout = 0ms;
    return o;
}

/// A POSIX TCP socket, closed on destruction.
struct Fd {
    int fd = -1;
    Fd() = default;
    explicit Fd(int f) : fd(f) {}
    Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
    Fd& operator=(Fd&& o) noexcept {
        reset();
        fd = o.fd;
        o.fd = -1;
        return *this;
    }
    ~Fd() { reset(); }
    void reset() {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
};

Fd tcp_socket() {
    return Fd(::socket(AF_INET, SOCK_STREAM, 0));
}

bool connect_loopback(const Fd& s, std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(s.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
}

bool send_all(const Fd& s, const std::string& bytes) {
    return ::send(s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
}

/// What arrives within `timeout` (until EOF or error); "" if nothing.
std::string receive(const Fd& s, std::chrono::milliseconds timeout, bool* ended = nullptr) {
    std::string got;
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
        if (left.count() <= 0) {
            return got;
        }
        pollfd p{s.fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            return got;
        }
        char buf[1024];
        const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
        if (n <= 0) {
            if (ended) {
                *ended = true;
            }
            return got;
        }
        got.append(buf, static_cast<std::size_t>(n));
        if (got.find("\r\n\r\n") != std::string::npos) {
            return got;
        }
    }
}

double cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// Lowers the soft RLIMIT_NOFILE for its lifetime.
struct DescriptorLimit {
    rlimit saved{};
    explicit DescriptorLimit(rlim_t soft) {
        ::getrlimit(RLIMIT_NOFILE, &saved);
        rlimit lowered = saved;
        lowered.rlim_cur = soft;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    }
    ~DescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};

/// Descriptors free below `limit` (the ones a new socket can get).
int free_descriptors_below(int limit) {
    int free = 0;
    for (int fd = 0; fd < limit; ++fd) {
        if (::fcntl(fd, F_GETFD) == -1) {
            ++free;
        }
    }
    return free;
}

}  // namespace

TEST_CASE("out of descriptors the accept loop backs off, and accepts again once some are freed",
          "[acceptor]") {
    AcceptingServer server(quiet_options());
    const std::uint16_t port = server.loopback.port();
    constexpr int clients = 40;
    // Every client socket exists before the limit drops; connecting needs no new descriptor.
    std::vector<Fd> socks;
    for (int i = 0; i < clients; ++i) {
        socks.push_back(tcp_socket());
        REQUIRE(socks.back().fd >= 0);
    }
    int highest = 0;
    for (const Fd& s : socks) {
        highest = std::max(highest, s.fd);
    }
    double cpu_share = 1.0;
    {
        // Room for a few accepted sockets, then EMFILE with the rest still queued.
        const int limit = highest + 1 + 4;
        DescriptorLimit lowered(static_cast<rlim_t>(limit));
        const int room = free_descriptors_below(limit);
        REQUIRE(room < clients / 2);
        for (Fd& s : socks) {
            REQUIRE(connect_loopback(s, port));
        }
        const bool exhausted =
            eventually([&] { return server.acceptor->stats().exhausted > 0; }, 2s);
        INFO("room " << room << ", accepted " << server.acceptor->stats().accepted << ", errors "
                     << server.acceptor->stats().errors << ", refused "
                     << server.acceptor->stats().refused << ", last error "
                     << server.acceptor->stats().last_error.message() << " "
                     << server.acceptor->stats().last_error.category().name());
        REQUIRE(exhausted);
        CHECK(server.acceptor->stats().accepted == static_cast<std::uint64_t>(room));
        CHECK(server.loopback.stats().pending_handshakes == static_cast<std::size_t>(room));

        const double cpu_before = cpu_seconds();
        const auto wall_before = SteadyClock::now();
        std::this_thread::sleep_for(1s);
        const double wall = std::chrono::duration<double>(SteadyClock::now() - wall_before).count();
        cpu_share = (cpu_seconds() - cpu_before) / wall;
        const auto st = server.acceptor->stats();
        WARN("out of descriptors for " << wall << " s: process CPU " << cpu_share * 100
                                       << "% of a core, " << st.exhausted
                                       << " failed accepts, accepted " << st.accepted);
        CHECK(cpu_share < 0.10);
        CHECK(st.exhausted < 30);  // 10 ms doubling to 1 s: a handful per second
        CHECK(st.running);

        // Closing accepted clients frees the server's descriptors (it reads
        // their EOF), and the loop takes the queued connections.
        for (int i = 0; i < 10; ++i) {
            socks[static_cast<std::size_t>(i)].reset();
        }
        const std::uint64_t accepted_before = st.accepted;
        REQUIRE(eventually([&] { return server.acceptor->stats().accepted >= accepted_before + 5; },
                           3s));
        // One of them completes a WebSocket handshake.
        const Fd& late = socks[10];  // the first queued one still open
        REQUIRE(send_all(late, wsguard::test::upgrade_request(port)));
        const std::string response = receive(late, 3s);
        CHECK(response.rfind("HTTP/1.1 101", 0) == 0);
    }
    socks.clear();
    CHECK(eventually([&] { return server.loopback.stats().pending_handshakes == 0; }, 5s));
    CHECK(eventually([&] { return server.loopback.stats().connections == 0; }, 5s));
}

TEST_CASE("the accept loop ends when the server stops listening, or after stop()", "[acceptor]") {
    AcceptingServer server(quiet_options());
    REQUIRE(server.acceptor->stats().running);
    server.loopback.on_io([&] {
        std::error_code ec;
        server.loopback.server().stop_listening(ec);
    });
    CHECK(eventually([&] { return !server.acceptor->stats().running; }, 2s));

    // After stop(), a connection that still arrives is closed unread and the loop ends.
    AcceptingServer stopped(quiet_options());
    stopped.acceptor->stop();
    Fd late = tcp_socket();
    REQUIRE(connect_loopback(late, stopped.loopback.port()));
    bool ended = false;
    CHECK(receive(late, 2s, &ended).empty());
    CHECK(ended);
    CHECK(eventually([&] { return !stopped.acceptor->stats().running; }, 2s));
    CHECK(stopped.acceptor->stats().accepted == 0);
    CHECK(stopped.loopback.stats().pending_handshakes == 0);
}

TEST_CASE("handshakes in progress are bounded, refused unread past the bound, and time out to zero",
          "[acceptor][pending_handshakes]") {
    auto o = quiet_options();
    o.max_pending_handshakes = 8;
    o.open_handshake_timeout = 300ms;
    AcceptingServer server(o);
    const std::uint16_t port = server.loopback.port();

    // Slowloris: connect and send nothing.
    std::vector<Fd> silent;
    for (int i = 0; i < 8; ++i) {
        silent.push_back(tcp_socket());
        REQUIRE(connect_loopback(silent.back(), port));
    }
    REQUIRE(eventually([&] { return server.loopback.stats().pending_handshakes == 8; }, 2s));
    CHECK(server.loopback.stats().connections == 0);

    // The next is closed at once, before the server reads its request.
    Fd refused = tcp_socket();
    REQUIRE(connect_loopback(refused, port));
    const auto t0 = SteadyClock::now();
    bool ended = false;
    send_all(refused, wsguard::test::upgrade_request(port));
    const std::string answer = receive(refused, 2s, &ended);
    const auto refused_after =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0);
    CHECK(ended);
    CHECK(answer.empty());
    CHECK(refused_after < 250ms);
    CHECK(server.loopback.stats().refused_pending == 1);
    CHECK(server.loopback.stats().pending_handshakes == 8);

    // After the handshake timeout (plus the lingering close of sockets whose
    // peers never close) every pending handshake is gone.
    const auto t1 = SteadyClock::now();
    REQUIRE(eventually([&] { return server.loopback.stats().pending_handshakes == 0; }, 5s));
    WARN("8 silent handshakes counted down to zero after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t1).count()
         << " ms (handshake timeout 300 ms, socket-shutdown timeout "
         << wsguard::wspp::default_lean_socket_shutdown_ms << " ms)");
    const auto s = server.loopback.stats();
    CHECK(s.failed == 8);
    CHECK(s.refused_pending == 1);

    // Churn: completed handshakes, HTTP requests and aborted ones leave zero too.
    for (int i = 0; i < 20; ++i) {
        Fd ws = tcp_socket();
        REQUIRE(connect_loopback(ws, port));
        REQUIRE(send_all(ws, wsguard::test::upgrade_request(port)));
        CHECK(receive(ws, 2s).rfind("HTTP/1.1 101", 0) == 0);
        Fd http = tcp_socket();
        REQUIRE(connect_loopback(http, port));
        REQUIRE(send_all(http, "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
        CHECK(receive(http, 2s).rfind("HTTP/1.1 ", 0) == 0);
        Fd half = tcp_socket();
        REQUIRE(connect_loopback(half, port));
        REQUIRE(send_all(half, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    }
    CHECK(eventually([&] { return server.loopback.stats().pending_handshakes == 0; }, 5s));
    CHECK(eventually([&] { return server.loopback.stats().connections == 0; }, 5s));
    const auto after = server.loopback.stats();
    CHECK(after.opened == 20);
    CHECK(after.refused_pending == 1);
}
