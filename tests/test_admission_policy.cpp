// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Handshake admission's pure parts, without a server: check_handshake()
// refuses each hostile request for its own reason and passes an RFC 6455
// one; peer_address() takes the port off every endpoint form and peer_key()
// keys IPv6 by /64 and IPv4-mapped by IPv4; PeerCounts bounds each address
// and erases it with its last connection (under churn on several threads
// too, and when an allocation fails); HandshakeAdmission sets the refusal's
// response, chains the user's hook (one that throws, or answers a non-error
// status, still refuses) and counts every refusal once, on a stand-in
// connection; validated() normalises allowed_origins. The integration test
// (tests/integration/test_admission.cpp) drives the same over loopback with hostile raw clients.
#include <wsguard/null_mutex.hpp>
#include <wsguard/websocketpp/admission.hpp>
#include <wsguard/websocketpp/guard_types.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

// Allocation failure on demand, for the strong guarantee of PeerCounts: the
// calling thread's fail_after-th allocation from now throws std::bad_alloc.
namespace {
thread_local int fail_after = 0;  // 0: never
// Not inlined: GCC would see malloc's pointer freed by a delete across
// inlining (a -Wmismatched-new-delete false positive).
[[gnu::noinline]] void release_block(void* p) noexcept {
    std::free(p);
}
}  // namespace

void* operator new(std::size_t size) {
    if (fail_after > 0 && --fail_after == 0) {
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    release_block(p);
}
void operator delete(void* p, std::size_t) noexcept {
    release_block(p);
}
// The nothrow forms too (std::stable_sort's buffer): a block from the
// sanitizer's nothrow new freed by the delete above is a mismatch.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    release_block(p);
}

namespace {

using wsguard::wspp::AdmissionPolicy;
using wsguard::wspp::AdmissionVerdict;
using wsguard::wspp::check_handshake;
using wsguard::wspp::HandshakeAdmission;
using wsguard::wspp::HandshakeRequest;
using wsguard::wspp::peer_address;
using wsguard::wspp::peer_key;
using wsguard::wspp::PeerCounts;
using wsguard::wspp::RefusalReason;

HandshakeRequest good_request() {
    HandshakeRequest r;
    r.version = "13";
    r.uri = "/";
    return r;
}

/// The few members of a websocketpp connection admission touches.
struct FakeConnection {
    struct Request {
        std::map<std::string, std::string> headers;
        std::string uri = "/";
        const std::string& get_header(const std::string& k) const {
            static const std::string empty;
            const auto it = headers.find(k);
            return it == headers.end() ? empty : it->second;
        }
        const std::string& get_uri() const { return uri; }
    };
    Request request;
    std::string remote = "192.0.2.7:40000";
    int status = 0;
    std::string phrase, body;
    std::map<std::string, std::string> response_headers;
    std::error_code ec;  // websocketpp's m_ec: why the handshake failed

    FakeConnection() { request.headers["Sec-WebSocket-Version"] = "13"; }
    std::error_code get_ec() const { return ec; }
    const Request& get_request() const { return request; }
    std::string get_remote_endpoint() const { return remote; }
    void set_status(websocketpp::http::status_code::value code, const std::string& p) {
        status = static_cast<int>(code);
        phrase = p;
    }
    void replace_header(const std::string& k, const std::string& v) { response_headers[k] = v; }
    void set_body(const std::string& b) { body = b; }
    websocketpp::http::status_code::value get_response_code() const {
        return static_cast<websocketpp::http::status_code::value>(status);
    }
    std::string get_response_header(const std::string& k) const {
        const auto it = response_headers.find(k);
        return it == response_headers.end() ? std::string() : it->second;
    }
};

/// What websocketpp does around the validate handler: a refusal fails the
/// handshake with error::rejected (connection_impl.hpp, process_handshake_request).
template <class Admission>
bool validate(Admission& admission, FakeConnection& c) {
    const bool admitted = admission.admit(c, websocketpp::connection_hdl(), false);
    if (!admitted) {
        c.ec = websocketpp::error::make_error_code(websocketpp::error::rejected);
    }
    return admitted;
}

}  // namespace

TEST_CASE("check_handshake passes an RFC 6455 request and refuses each hostile one",
          "[admission]") {
    AdmissionPolicy policy;
    policy.max_uri_bytes = 16;
    CHECK_FALSE(check_handshake(good_request(), policy));

    SECTION("any version but 13 (Hixie-76 sends none) is 426") {
        for (const char* v : {"", "0", "7", "8", "12", "14", "13 ", "013"}) {
            INFO(v);
            HandshakeRequest r = good_request();
            r.version = v;
            const auto refusal = check_handshake(r, policy);
            REQUIRE(refusal);
            CHECK(refusal->reason == RefusalReason::version);
            CHECK(refusal->status == 426);
        }
    }
    SECTION("a declared body or any Transfer-Encoding is 400; Content-Length 0 is none") {
        for (const char* cl : {"1", "32000000", "x", "-1", " 5"}) {
            INFO(cl);
            HandshakeRequest r = good_request();
            r.content_length = cl;
            const auto refusal = check_handshake(r, policy);
            REQUIRE(refusal);
            CHECK(refusal->reason == RefusalReason::body);
            CHECK(refusal->status == 400);
        }
        HandshakeRequest r = good_request();
        r.transfer_encoding = "chunked";
        REQUIRE(check_handshake(r, policy));
        CHECK(check_handshake(r, policy)->reason == RefusalReason::body);
        r = good_request();
        r.content_length = "0";
        CHECK_FALSE(check_handshake(r, policy));
        r.content_length = "000";
        CHECK_FALSE(check_handshake(r, policy));
    }
    SECTION("a URI one byte past the bound is 414; at the bound passes") {
        HandshakeRequest r = good_request();
        const std::string at(16, 'a'), past(17, 'a');
        r.uri = at;
        CHECK_FALSE(check_handshake(r, policy));
        r.uri = past;
        REQUIRE(check_handshake(r, policy));
        CHECK(check_handshake(r, policy)->reason == RefusalReason::uri_too_long);
        CHECK(check_handshake(r, policy)->status == 414);
    }
    SECTION("Origin: empty list admits all; a list admits its own (any case) and no Origin") {
        HandshakeRequest r = good_request();
        r.origin = "https://evil.example";
        CHECK_FALSE(check_handshake(r, policy));
        policy.allowed_origins = {"https://chat.example", "http://localhost:8080"};
        REQUIRE(check_handshake(r, policy));
        CHECK(check_handshake(r, policy)->reason == RefusalReason::origin);
        CHECK(check_handshake(r, policy)->status == 403);
        r.origin = "HTTPS://Chat.Example";
        CHECK_FALSE(check_handshake(r, policy));
        r.origin = "https://chat.example.evil";
        CHECK(check_handshake(r, policy));
        r.origin = "null";
        CHECK(check_handshake(r, policy));
        r.origin = "";
        CHECK_FALSE(check_handshake(r, policy));
    }
    SECTION("the checks run in order: version before body before URI before Origin") {
        HandshakeRequest r;
        r.version = "8";
        r.content_length = "5";
        r.uri = std::string(100, 'a');
        r.origin = "https://evil.example";
        policy.allowed_origins = {"https://chat.example"};
        CHECK(check_handshake(r, policy)->reason == RefusalReason::version);
        r.version = "13";
        CHECK(check_handshake(r, policy)->reason == RefusalReason::body);
        r.content_length = "";
        CHECK(check_handshake(r, policy)->reason == RefusalReason::uri_too_long);
        r.uri = "/";
        CHECK(check_handshake(r, policy)->reason == RefusalReason::origin);
    }
}

TEST_CASE("peer_address takes the port off every endpoint form", "[admission]") {
    CHECK(peer_address("127.0.0.1:5000") == "127.0.0.1");
    CHECK(peer_address("[::1]:5000") == "::1");
    CHECK(peer_address("[::ffff:127.0.0.2]:1") == "::ffff:127.0.0.2");
    CHECK(peer_address("2001:db8::1") == "2001:db8::1");  // no port: whole
    CHECK(peer_address("::1") == "::1");
    CHECK(peer_address("iostream transport") == "iostream transport");
    CHECK(peer_address("host:") == "host:");
    CHECK(peer_address("host:http") == "host:http");
    CHECK(peer_address("") == "");
}

TEST_CASE("peer_key: IPv4-mapped is IPv4, IPv6 its /64, Unknown none, other text whole",
          "[admission]") {
    CHECK(peer_key("192.0.2.1:5000") == "192.0.2.1");
    CHECK(peer_key("[::ffff:192.0.2.1]:5000") == "192.0.2.1");
    CHECK(peer_key("[::FFFF:c000:201]:1") == "192.0.2.1");
    CHECK(peer_key("[2001:db8:1:2::5]:443") == "2001:db8:1:2::/64");
    CHECK(peer_key("[2001:db8:1:2:ffff:ffff:ffff:ffff]:443") == "2001:db8:1:2::/64");
    CHECK(peer_key("[2001:db8:1:3::5]:443") == "2001:db8:1:3::/64");
    CHECK(peer_key("[fe80::1%eth0]:80") == "fe80::/64");
    CHECK(peer_key("[::1]:80") == "::/64");
    CHECK(peer_key("2001:db8::1") == "2001:db8::/64");  // no port
    CHECK_FALSE(peer_key("Unknown"));                   // asio: getpeername failed
    CHECK(peer_key("iostream transport") == "iostream transport");
    CHECK(peer_key("[not:an:address]:1") == "not:an:address");
    CHECK(peer_key("") == "");
}

TEST_CASE("PeerCounts bounds each address and erases it with its last connection", "[admission]") {
    PeerCounts<wsguard::NullMutex> t;
    int a1, a2, a3, b1;
    CHECK(t.try_acquire(&a1, "127.0.0.11", 2));
    CHECK(t.try_acquire(&a2, "127.0.0.11", 2));
    CHECK_FALSE(t.try_acquire(&a3, "127.0.0.11", 2));
    CHECK(t.try_acquire(&a2, "127.0.0.11", 2));  // counted already: not twice
    CHECK(t.try_acquire(&b1, "127.0.0.12", 2));  // per address
    CHECK(t.count("127.0.0.11") == 2);
    CHECK(t.addresses() == 2);
    CHECK(t.connections() == 3);

    t.release(&a1);
    t.release(&a1);  // idempotent
    t.release(&a3);  // never counted: nothing
    CHECK(t.count("127.0.0.11") == 1);
    CHECK(t.try_acquire(&a3, "127.0.0.11", 2));
    t.release(&a2);
    t.release(&a3);
    t.release(&b1);
    CHECK(t.addresses() == 0);
    CHECK(t.connections() == 0);
    CHECK(t.count("127.0.0.11") == 0);
}

TEST_CASE("PeerCounts: an allocation failing in try_acquire leaves no count behind",
          "[admission]") {
    PeerCounts<wsguard::NullMutex> t;
    int held, c;
    REQUIRE(t.try_acquire(&held, "127.0.0.11", 3));
    int failures = 0;
    // Every allocation try_acquire makes, for a new address and a known one.
    for (const char* address : {"127.0.0.19", "127.0.0.11"}) {
        for (int n = 1; n <= 8; ++n) {
            INFO(address << ", allocation " << n);
            fail_after = n;
            bool acquired = false;
            try {
                acquired = t.try_acquire(&c, address, 3);
            } catch (const std::bad_alloc&) {
                ++failures;
            }
            fail_after = 0;
            if (acquired) {
                t.release(&c);
            }
            CHECK(t.connections() == 1);
            CHECK(t.count("127.0.0.11") == 1);
            CHECK(t.count("127.0.0.19") == 0);
            CHECK(t.addresses() == 1);
        }
    }
    CHECK(failures >= 2);  // the owner's node, for each address
    t.release(&held);
    CHECK(t.addresses() == 0);
}

TEST_CASE("PeerCounts under churn on four threads returns to empty", "[admission]") {
    PeerCounts<std::mutex> t;
    constexpr int threads = 4, rounds = 2000, per_thread = 8;
    constexpr std::size_t limit = 5;
    std::vector<std::thread> pool;
    std::vector<int> over(threads, 0);
    for (int i = 0; i < threads; ++i) {
        pool.emplace_back([&, i] {
            int slots[per_thread];
            for (int r = 0; r < rounds; ++r) {
                const std::string address = "127.0.0." + std::to_string(20 + r % 3);
                bool held[per_thread] = {};
                for (int k = 0; k < per_thread; ++k) {
                    held[k] = t.try_acquire(&slots[k], address, limit);
                    if (t.count(address) > limit) {
                        ++over[static_cast<std::size_t>(i)];
                    }
                }
                for (int k = 0; k < per_thread; ++k) {
                    if (held[k]) {
                        t.release(&slots[k]);
                    }
                }
            }
        });
    }
    for (auto& th : pool) {
        th.join();
    }
    for (int n : over) {
        CHECK(n == 0);
    }
    CHECK(t.addresses() == 0);
    CHECK(t.connections() == 0);
}

TEST_CASE("HandshakeAdmission answers a refusal, chains the hook and counts each refusal once",
          "[admission]") {
    AdmissionPolicy policy;
    policy.allowed_origins = {"https://chat.example"};
    HandshakeAdmission<wsguard::NullMutex> admission(policy, 1);
    const websocketpp::connection_hdl hdl;

    SECTION("a version refusal is 426 with Sec-WebSocket-Version: 13") {
        FakeConnection c;
        c.request.headers["Sec-WebSocket-Version"] = "8";
        CHECK_FALSE(admission.admit(c, hdl, false));
        CHECK(c.status == 426);
        CHECK(c.response_headers["Sec-WebSocket-Version"] == "13");
        CHECK(c.body == c.phrase + "\n");
        admission.end(c, true);  // its fail handler: not counted again
        CHECK(admission.refused().of(RefusalReason::version) == 1);
        CHECK(admission.refused().total() == 1);
    }
    SECTION("shutting down is 503 before any other check") {
        FakeConnection c;
        c.request.headers["Sec-WebSocket-Version"] = "8";
        CHECK_FALSE(admission.admit(c, hdl, true));
        CHECK(c.status == 503);
        CHECK(admission.refused().of(RefusalReason::shutting_down) == 1);
        CHECK(admission.peer_addresses() == 0);
    }
    SECTION("per address: the second connection is 503 until the first ends") {
        FakeConnection a, b, other;
        other.remote = "192.0.2.8:1";
        CHECK(admission.admit(a, hdl, false));
        CHECK_FALSE(admission.admit(b, hdl, false));
        CHECK(b.status == 503);
        CHECK(admission.admit(other, hdl, false));
        CHECK(admission.peer_addresses() == 2);
        admission.end(b, true);  // refused: holds no count
        CHECK(admission.peer_addresses() == 2);
        admission.end(a, false);
        FakeConnection b2;
        CHECK(admission.admit(b2, hdl, false));
        admission.end(b2, false);
        admission.end(other, true);  // admitted, then failed: released too
        CHECK(admission.peer_addresses() == 0);
        CHECK(admission.refused().of(RefusalReason::per_ip) == 1);
    }
    SECTION("the hook runs after the guard's checks; its refusal undoes the address count") {
        int calls = 0;
        admission.set_hook([&](websocketpp::connection_hdl) {
            ++calls;
            return AdmissionVerdict::refuse(401, "token\r\nX-Injected: 1");
        });
        FakeConnection bad_origin;
        bad_origin.request.headers["Origin"] = "https://evil.example";
        CHECK_FALSE(admission.admit(bad_origin, hdl, false));
        CHECK(bad_origin.status == 403);
        CHECK(calls == 0);

        FakeConnection c;
        CHECK_FALSE(admission.admit(c, hdl, false));
        CHECK(calls == 1);
        CHECK(c.status == 401);
        CHECK(c.phrase == "token  X-Injected: 1");  // no header injection via the status line
        CHECK(admission.peer_addresses() == 0);
        CHECK(admission.refused().of(RefusalReason::user_hook) == 1);
        CHECK(admission.refused().of(RefusalReason::origin) == 1);

        admission.set_hook([](websocketpp::connection_hdl) -> AdmissionVerdict {
            throw std::runtime_error("hook failed");
        });
        FakeConnection d;
        bool admitted = true;
        // websocketpp does not catch: a throw would leave io_context::run().
        CHECK_NOTHROW(admitted = validate(admission, d));
        CHECK_FALSE(admitted);
        CHECK(d.status == 500);
        CHECK(d.phrase == "Internal Server Error");
        CHECK(admission.peer_addresses() == 0);
        CHECK(admission.refused().of(RefusalReason::user_hook) == 2);
        admission.set_hook([](websocketpp::connection_hdl) -> AdmissionVerdict { throw 42; });
        FakeConnection d2;
        CHECK_NOTHROW(admitted = validate(admission, d2));
        CHECK_FALSE(admitted);
        CHECK(d2.status == 500);
        CHECK(admission.peer_addresses() == 0);
        CHECK(admission.refused().of(RefusalReason::user_hook) == 3);
        admission.end(d2, true);
        CHECK(admission.refused().total() == 4);

        admission.set_hook(nullptr);
        FakeConnection e;
        CHECK(admission.admit(e, hdl, false));
        admission.end(e, false);
    }
    SECTION("websocketpp's own refusals are counted when the handshake fails") {
        FakeConnection too_big;
        too_big.status = 413;  // the body limit, answered before any handler
        admission.end(too_big, true);
        FakeConnection unknown_version;
        unknown_version.status = 400;
        unknown_version.response_headers["Sec-WebSocket-Version"] = "0,7,8,13";
        admission.end(unknown_version, true);
        FakeConnection other_400;
        other_400.status = 400;
        admission.end(other_400, true);
        CHECK(admission.refused().of(RefusalReason::body) == 1);
        CHECK(admission.refused().of(RefusalReason::version) == 1);
        CHECK(admission.refused().total() == 2);
    }
    SECTION("a hook's 413, or 400 with Sec-WebSocket-Version, is counted once, as user_hook") {
        admission.set_hook(
            [](websocketpp::connection_hdl) { return AdmissionVerdict::refuse(413, "Too Large"); });
        FakeConnection c;
        CHECK_FALSE(validate(admission, c));
        CHECK(c.status == 413);
        admission.end(c, true);
        admission.set_hook([](websocketpp::connection_hdl) {
            return AdmissionVerdict::refuse(400, "Bad Request");
        });
        FakeConnection d;
        CHECK_FALSE(validate(admission, d));
        d.response_headers["Sec-WebSocket-Version"] = "13";  // a hook may set it on the connection
        admission.end(d, true);
        CHECK(admission.refused().of(RefusalReason::user_hook) == 2);
        CHECK(admission.refused().of(RefusalReason::body) == 0);
        CHECK(admission.refused().of(RefusalReason::version) == 0);
        CHECK(admission.refused().total() == 2);
    }
    SECTION("a hook's status outside 400..599 is answered 403: a 101 would open the connection") {
        for (const int status : {0, 100, 101, 200, 204, 302, 399, 600, 65535}) {
            INFO(status);
            admission.set_hook([status](websocketpp::connection_hdl) {
                return AdmissionVerdict::refuse(static_cast<std::uint16_t>(status), "No");
            });
            FakeConnection c;
            CHECK_FALSE(validate(admission, c));
            CHECK(c.status == 403);
            admission.end(c, true);
        }
        for (const int status : {400, 451, 599}) {
            INFO(status);
            admission.set_hook([status](websocketpp::connection_hdl) {
                return AdmissionVerdict::refuse(static_cast<std::uint16_t>(status), "No");
            });
            FakeConnection c;
            CHECK_FALSE(validate(admission, c));
            CHECK(c.status == status);
            admission.end(c, true);
        }
        CHECK(admission.peer_addresses() == 0);
    }
    SECTION(
        "the peer's key: one IPv6 /64 shares a count, IPv4-mapped is its IPv4, Unknown "
        "is refused") {
        FakeConnection a, b, c, d, e, f;
        a.remote = "[2001:db8:1:2::1]:40000";
        b.remote = "[2001:db8:1:2::2]:40001";  // same /64: over the limit of 1
        c.remote = "[2001:db8:1:3::1]:40002";  // another /64
        CHECK(validate(admission, a));
        CHECK_FALSE(validate(admission, b));
        CHECK(b.status == 503);
        CHECK(validate(admission, c));
        d.remote = "192.0.2.9:1";
        e.remote = "[::ffff:192.0.2.9]:2";  // the same IPv4 peer through a dual-stack socket
        CHECK(validate(admission, d));
        CHECK_FALSE(validate(admission, e));
        f.remote = "Unknown";  // websocketpp's asio transport: getpeername failed
        CHECK_FALSE(validate(admission, f));
        CHECK(f.status == 503);
        CHECK(admission.peers().count("Unknown") == 0);
        CHECK(admission.refused().of(RefusalReason::per_ip) == 3);
        for (FakeConnection* x : {&a, &b, &c, &d, &e, &f}) {
            admission.end(*x, x == &b || x == &e || x == &f);
        }
        CHECK(admission.peer_addresses() == 0);
        CHECK(admission.refused().total() == 3);
    }
}

TEST_CASE("validated() normalises allowed_origins as browsers send them", "[admission]") {
    wsguard::wspp::GuardOptions o;
    o.allowed_origins = {"https://a.example/",    " https://b.example",    "https://c.example:443",
                         "HTTP://d.example:80\t", "http://e.example:8080", "https://f.example:4430",
                         "wss://g.example:443",   "https://[::1]:443/",    "http://h.example:443"};
    const auto v = wsguard::wspp::validated(o);
    CHECK(v.allowed_origins == std::vector<std::string>{"https://a.example", "https://b.example",
                                                        "https://c.example", "HTTP://d.example",
                                                        "http://e.example:8080",
                                                        "https://f.example:4430", "wss://g.example",
                                                        "https://[::1]", "http://h.example:443"});
    AdmissionPolicy policy{o.max_uri_bytes, v.allowed_origins};
    HandshakeRequest r = good_request();
    for (const char* origin :
         {"https://a.example", "https://b.example", "https://c.example", "http://d.example"}) {
        INFO(origin);
        r.origin = origin;
        CHECK_FALSE(check_handshake(r, policy));
    }

    for (const char* bad : {"https://x.example/app", "https://*.example", "*", "x.example",
                            "://x.example", "https://", "", "  ", "null", "https://x.example//"}) {
        INFO(bad);
        o.allowed_origins = {"https://ok.example", bad};
        try {
            wsguard::wspp::validated(o);
            FAIL("accepted");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find("allowed_origins entry \"" + std::string(bad) +
                                             "\"") != std::string::npos);
        }
    }
}
