// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// prewarm_socket_pool: opens and closes up to `count` sockets at once, so
// asio's reactor keeps `count` descriptor states for later sockets; returns
// how many it opened, and stops early, without error, when the process runs
// out of descriptors. The pool's effect is seen through the counting
// allocator: sockets opened after the prewarm take their states from the pool
// (no allocation) up to `count` at once, and only past it does the pool grow.
#include <wsguard/websocketpp/socket_pool.hpp>

#include "support/counting_new.hpp"

#include <catch2/catch.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>

namespace {

using wsguard::wspp::prewarm_socket_pool;

constexpr int kMaxDescriptor = 4096;  // far above what the test binary opens

/// The descriptors this process has open now (below kMaxDescriptor).
std::size_t open_descriptors() {
    std::size_t n = 0;
    for (int fd = 0; fd < kMaxDescriptor; ++fd) {
        n += ::fcntl(fd, F_GETFD) != -1 ? 1 : 0;
    }
    return n;
}

/// The highest open descriptor.
int highest_descriptor() {
    int highest = -1;
    for (int fd = 0; fd < kMaxDescriptor; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1) {
            highest = fd;
        }
    }
    return highest;
}

/// Opens `count` sockets on `io` at once and closes them; returns how many
/// times operator new ran while they were opened (the vector reserved first).
std::uint64_t allocations_to_open(asio::io_context& io, std::size_t count) {
    std::vector<asio::ip::tcp::socket> sockets;
    sockets.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        sockets.emplace_back(io);
    }
    const std::uint64_t before = wsguard::test::allocations();
    for (auto& s : sockets) {
        asio::error_code ec;
        s.open(asio::ip::tcp::v4(), ec);
        REQUIRE_FALSE(ec);
    }
    return wsguard::test::allocations() - before;
}

/// Sets the soft descriptor limit for the scope, then puts it back.
class DescriptorLimit {
public:
    explicit DescriptorLimit(rlim_t soft) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        rlimit lowered = saved_;
        lowered.rlim_cur = soft;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
    }
    DescriptorLimit(const DescriptorLimit&) = delete;
    DescriptorLimit& operator=(const DescriptorLimit&) = delete;
    ~DescriptorLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

private:
    rlimit saved_{};
};

}  // namespace

TEST_CASE("prewarm opens count sockets and leaves none open", "[socket_pool]") {
    asio::io_context io;
    // The reactor opens its own descriptors with the first socket: before counting.
    REQUIRE(prewarm_socket_pool(io, 1) == 1);
    const std::size_t before = open_descriptors();
    CHECK(prewarm_socket_pool(io, 64) == 64);
    CHECK(open_descriptors() == before);
    CHECK(prewarm_socket_pool(io, 0) == 0);
    CHECK(open_descriptors() == before);
}

TEST_CASE("after a prewarm of count, count sockets at once take no new descriptor state",
          "[socket_pool]") {
    constexpr std::size_t count = 32;

    SECTION("prewarmed: the first count sockets come from the pool, the next grows it") {
        asio::io_context io;
        REQUIRE(prewarm_socket_pool(io, count) == count);
        CHECK(allocations_to_open(io, count) == 0);
        CHECK(allocations_to_open(io, count + 8) >= 8);
    }
    SECTION("without the prewarm the same sockets allocate their states one by one") {
        asio::io_context io;
        // One socket first, so the services it creates are not counted.
        REQUIRE(prewarm_socket_pool(io, 1) == 1);
        CHECK(allocations_to_open(io, count) >= count - 1);
    }
}

TEST_CASE("prewarm stops early, without error, when descriptors run out", "[socket_pool]") {
    asio::io_context io;
    // The reactor opens its own descriptors with the first socket: before counting.
    REQUIRE(prewarm_socket_pool(io, 1) == 1);
    // A limit 10 above the highest descriptor: the free numbers below it.
    const int limit = highest_descriptor() + 1 + 10;
    const std::size_t open = open_descriptors();
    const std::size_t free_below_limit = static_cast<std::size_t>(limit) - open;
    std::size_t opened = 0;
    {
        const DescriptorLimit lowered(static_cast<rlim_t>(limit));
        REQUIRE_NOTHROW(opened = prewarm_socket_pool(io, 1000));
    }
    // Every descriptor under the limit, and not one more.
    CHECK(opened == free_below_limit);
    CHECK(open_descriptors() == open);
    // The pool holds what was opened: that many sockets again allocate nothing.
    CHECK(allocations_to_open(io, opened) == 0);
}
