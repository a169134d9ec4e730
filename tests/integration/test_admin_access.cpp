// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Who may read the reference server's admin endpoints (/, /stats, /metrics,
// /history): loopback peers only by default, and with --admin-token only
// requests that carry "Authorization: Bearer <token>", loopback included.
// The peer that is not loopback is real: the server in a network namespace of
// this test's own, the client in another, joined by a veth pair (192.0.2.1
// and 192.0.2.2); no packet leaves the machine.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

using wsguard::test::http_request_to;
using wsguard::test::ServerRunner;

namespace {

const char* const admin_paths[] = {"/", "/stats", "/metrics", "/history"};

int status_of(std::uint16_t port, const std::string& path, const std::string& headers = {}) {
    auto r = http_request_to(asio::ip::make_address("127.0.0.1"), port, "GET", path, headers);
    return r ? r->status : -1;
}

/// Two network namespaces of this test's own joined by a veth pair:
/// 192.0.2.1 in the server's, 192.0.2.2 in the peer's. Neither address is
/// given to this machine's own namespace, whose interfaces may use the same
/// range. Fails the test, saying why, where they cannot be made.
class PeerNamespaces {
public:
    PeerNamespaces()
        : server_ns_("wsgs" + std::to_string(::getpid())),
          peer_ns_("wsgp" + std::to_string(::getpid())),
          veth_("wsgv" + std::to_string(::getpid() % 100000)) {
        if (::geteuid() != 0) {
            FAIL("a non-loopback peer needs network namespaces: run as root (CI does)");
        }
        const std::string s = "ip netns exec " + server_ns_ + " ";
        const std::string p = "ip netns exec " + peer_ns_ + " ";
        const std::string setup =
            "ip netns add " + server_ns_ + " && ip netns add " + peer_ns_ + " && ip link add " +
            veth_ + "s netns " + server_ns_ + " type veth peer name " + veth_ + "p netns " +
            peer_ns_ + " && " + s + "ip addr add 192.0.2.1/24 dev " + veth_ + "s && " + s +
            "ip link set " + veth_ + "s up && " + s + "ip link set lo up && " + p +
            "ip addr add 192.0.2.2/24 dev " + veth_ + "p && " + p + "ip link set " + veth_ + "p up";
        if (std::system((setup + " 2>&1").c_str()) != 0) {
            FAIL("could not make network namespaces " + server_ns_ + " and " + peer_ns_ +
                 " with `ip` (iproute2)");
        }
    }
    PeerNamespaces(const PeerNamespaces&) = delete;
    PeerNamespaces& operator=(const PeerNamespaces&) = delete;
    ~PeerNamespaces() {
        // Deleting a namespace deletes its end of the veth pair, and the pair.
        std::system(("ip netns del " + server_ns_ + " 2>/dev/null; ip netns del " + peer_ns_ +
                     " 2>/dev/null")
                        .c_str());
    }

    /// Runs `f` with this thread in the server's namespace: the sockets it
    /// creates (a listening socket, and the connections it accepts) live there.
    template <class F>
    void in_server_namespace(F&& f) const {
        const int home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        const int there = ::open(("/run/netns/" + server_ns_).c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(home >= 0);
        REQUIRE(there >= 0);
        REQUIRE(::setns(there, CLONE_NEWNET) == 0);
        try {
            f();
        } catch (...) {
            ::setns(home, CLONE_NEWNET);
            ::close(home);
            ::close(there);
            throw;
        }
        REQUIRE(::setns(home, CLONE_NEWNET) == 0);
        ::close(home);
        ::close(there);
    }

    /// The status line of GET `path` sent from the peer to 192.0.2.1:`port`.
    std::string get_from_peer(std::uint16_t port, const std::string& path,
                              const std::string& header = {}) const {
        const std::string request = "GET " + path + " HTTP/1.1\\r\\nHost: 192.0.2.1\\r\\n" +
                                    header + (header.empty() ? "" : "\\r\\n") + "\\r\\n";
        const std::string cmd =
            "ip netns exec " + peer_ns_ + " timeout 10 bash -c 'exec 3<>/dev/tcp/192.0.2.1/" +
            std::to_string(port) + " && printf \"" + request + "\" >&3 && head -n1 <&3' 2>&1";
        std::string out;
        if (FILE* pipe = ::popen(cmd.c_str(), "r")) {
            char buf[512];
            while (std::fgets(buf, sizeof buf, pipe)) {
                out += buf;
            }
            ::pclose(pipe);
        }
        return out;
    }

private:
    std::string server_ns_;
    std::string peer_ns_;
    std::string veth_;
};

}  // namespace

TEST_CASE("admin access: loopback, IPv4-mapped loopback and nothing else without a token",
          "[admin]") {
    using chat::admin_allowed;
    const auto addr = [](const char* a) { return std::optional(asio::ip::make_address(a)); };
    CHECK(admin_allowed(addr("127.0.0.1"), "", ""));
    CHECK(admin_allowed(addr("127.5.6.7"), "", ""));
    CHECK(admin_allowed(addr("::1"), "", ""));
    CHECK(admin_allowed(addr("::ffff:127.0.0.1"), "", ""));
    CHECK_FALSE(admin_allowed(addr("::ffff:192.0.2.2"), "", ""));
    CHECK_FALSE(admin_allowed(addr("192.0.2.2"), "", ""));
    CHECK_FALSE(admin_allowed(addr("192.0.2.3"), "Bearer ", ""));
    CHECK_FALSE(admin_allowed(std::nullopt, "", ""));
    // Through a proxy on this machine: the peer is loopback, the client is not.
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "", "", true));
    CHECK(admin_allowed(addr("127.0.0.1"), "Bearer s3cret", "s3cret", true));

    // With a token: the header, from anyone, loopback included.
    CHECK(admin_allowed(addr("192.0.2.2"), "Bearer s3cret", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "Bearer s3cre", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "Bearer s3cretX", "s3cret"));
    CHECK(admin_allowed(addr("127.0.0.1"), "bearer s3cret", "s3cret"));  // RFC 7235
    CHECK(admin_allowed(addr("127.0.0.1"), "BEARER s3cret", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "Bearer S3CRET", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "Basic s3cret", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "Bearer  s3cret", "s3cret"));
    CHECK_FALSE(admin_allowed(addr("127.0.0.1"), "s3cret", "s3cret"));
}

TEST_CASE("without a token the admin endpoints answer a loopback peer", "[admin]") {
    ServerRunner<> server;
    for (const char* path : admin_paths) {
        INFO(path);
        CHECK(status_of(server.port(), path) == 200);
    }
    CHECK(status_of(server.port(), "/nope") == 404);
    // What a reverse proxy on this machine forwards is not a loopback client's.
    for (const char* header : {"X-Forwarded-For: 192.0.2.9\r\n", "X-Real-IP: 192.0.2.9\r\n",
                               "Forwarded: for=192.0.2.9\r\n"}) {
        INFO(header);
        CHECK(status_of(server.port(), "/stats", header) == 403);
    }
}

TEST_CASE("with --admin-token only the bearer of the token reads them, loopback included",
          "[admin]") {
    auto options = wsguard::test::test_server_options();
    options.admin_token = "s3cret-token";
    ServerRunner<> server(options);
    for (const char* path : admin_paths) {
        INFO(path);
        CHECK(status_of(server.port(), path) == 403);
        CHECK(status_of(server.port(), path, "Authorization: Bearer wrong\r\n") == 403);
        CHECK(status_of(server.port(), path, "Authorization: Bearer s3cret-token\r\n") == 200);
    }
    auto r = http_request_to(asio::ip::make_address("127.0.0.1"), server.port(), "GET", "/stats");
    REQUIRE(r);
    CHECK(r->body.find("forbidden") != std::string::npos);
    CHECK(r->body.find("connections") == std::string::npos);  // nothing leaks in the 403
    // WebSocket clients need no token.
    wsguard::test::ClientEndpoint clients;
    auto c = clients.connect_open(server.port());
    REQUIRE(c);
    CHECK(c->round_trip());
}

TEST_CASE("a peer that is not loopback gets 403, and 200 with the token", "[admin][netns]") {
    PeerNamespaces net;
    auto options = wsguard::test::test_server_options();
    options.bind_address = "0.0.0.0";
    {
        std::optional<ServerRunner<>> server;
        net.in_server_namespace([&] { server.emplace(options); });
        const std::string line = net.get_from_peer(server->port(), "/stats");
        INFO(line);
        CHECK(line.rfind("HTTP/1.1 403", 0) == 0);
    }
    options.admin_token = "s3cret-token";
    std::optional<ServerRunner<>> server;
    net.in_server_namespace([&] { server.emplace(options); });
    const std::string refused = net.get_from_peer(server->port(), "/metrics");
    const std::string allowed =
        net.get_from_peer(server->port(), "/metrics", "Authorization: Bearer s3cret-token");
    INFO(refused << allowed);
    CHECK(refused.rfind("HTTP/1.1 403", 0) == 0);
    CHECK(allowed.rfind("HTTP/1.1 200", 0) == 0);
}
