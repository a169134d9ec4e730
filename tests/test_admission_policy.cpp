// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Handshake admission's pure parts, without a server: check_handshake()
// refuses each hostile request for its own reason and passes an RFC 6455
// one; peer_address() takes the port off every endpoint form; PeerCounts
// bounds each address and erases it with its last connection (under churn on
// several threads too); HandshakeAdmission sets the refusal's response,
// chains the user's hook and counts every refusal once, on a stand-in
// connection. The integration test (tests/integration/test_admission.cpp)
// drives the same over loopback with hostile raw clients.
#include <wsguard/null_mutex.hpp>
#include <wsguard/websocketpp/admission.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using wsguard::wspp::AdmissionPolicy;
using wsguard::wspp::AdmissionVerdict;
using wsguard::wspp::check_handshake;
using wsguard::wspp::HandshakeAdmission;
using wsguard::wspp::HandshakeRequest;
using wsguard::wspp::peer_address;
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

    FakeConnection() { request.headers["Sec-WebSocket-Version"] = "13"; }
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

TEST_CASE("PeerCounts bounds each address and erases it with its last connection", "[admission]") {
    PeerCounts<wsguard::NullMutex> t;
    int a1, a2, a3, b1;
    CHECK(t.try_acquire(&a1, "10.0.0.1", 2));
    CHECK(t.try_acquire(&a2, "10.0.0.1", 2));
    CHECK_FALSE(t.try_acquire(&a3, "10.0.0.1", 2));
    CHECK(t.try_acquire(&a2, "10.0.0.1", 2));  // counted already: not twice
    CHECK(t.try_acquire(&b1, "10.0.0.2", 2));  // per address
    CHECK(t.count("10.0.0.1") == 2);
    CHECK(t.addresses() == 2);
    CHECK(t.connections() == 3);

    t.release(&a1);
    t.release(&a1);  // idempotent
    t.release(&a3);  // never counted: nothing
    CHECK(t.count("10.0.0.1") == 1);
    CHECK(t.try_acquire(&a3, "10.0.0.1", 2));
    t.release(&a2);
    t.release(&a3);
    t.release(&b1);
    CHECK(t.addresses() == 0);
    CHECK(t.connections() == 0);
    CHECK(t.count("10.0.0.1") == 0);
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
                const std::string address = "10.0.0." + std::to_string(r % 3);
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
        CHECK_THROWS_AS(admission.admit(d, hdl, false), std::runtime_error);
        CHECK(admission.peer_addresses() == 0);

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
}
