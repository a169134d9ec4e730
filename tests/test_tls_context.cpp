// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// make_server_tls_context(): the options that keep an idle wss connection
// small and the protocol safe, read back from the SSL_CTX, and errors that
// name the file and OpenSSL's reason. The lean TLS configs are instantiated
// on a server too (they must build with the guard).
#include "support/test_cert.hpp"

#include <wsguard/websocketpp/lean_tls_config.hpp>
#include <wsguard/websocketpp/server_guard.hpp>
#include <wsguard/websocketpp/tls_context.hpp>

#include <catch2/catch.hpp>

#include <openssl/ssl.h>

#include <mutex>
#include <string>

namespace {

using wsguard::test::TestCert;
using wsguard::wspp::make_server_tls_context;
using wsguard::wspp::TlsContextError;

// The message of the TlsContextError that `f` throws ("" if none).
template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const TlsContextError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("the context releases buffers, needs TLS 1.2, has no compression or cache",
          "[tls_context]") {
    const TestCert cert;
    const auto ctx = make_server_tls_context(cert.cert_path(), cert.key_path());
    SSL_CTX* native = ctx->native_handle();
    CHECK((SSL_CTX_get_mode(native) & SSL_MODE_RELEASE_BUFFERS) != 0);
    CHECK(SSL_CTX_get_min_proto_version(native) == TLS1_2_VERSION);
    CHECK((SSL_CTX_get_options(native) & SSL_OP_NO_COMPRESSION) != 0);
    CHECK(SSL_CTX_get_session_cache_mode(native) == SSL_SESS_CACHE_OFF);
    // Each connection's SSL inherits the mode.
    SSL* ssl = SSL_new(native);
    REQUIRE(ssl != nullptr);
    CHECK((SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS) != 0);
    SSL_free(ssl);
}

TEST_CASE("a missing file names the file and the reason", "[tls_context]") {
    const TestCert cert;
    const std::string missing = cert.path("nope.pem");
    std::string what = error_of([&] { make_server_tls_context(missing, cert.key_path()); });
    CHECK(what.find("certificate chain file '" + missing + "'") != std::string::npos);
    CHECK(what.find("No such file") != std::string::npos);
    what = error_of([&] { make_server_tls_context(cert.cert_path(), missing); });
    CHECK(what.find("private key file '" + missing + "'") != std::string::npos);
    CHECK(what.find(cert.cert_path()) != std::string::npos);
    CHECK(what.find("No such file") != std::string::npos);
}

TEST_CASE("garbage PEM names the file and OpenSSL's reason", "[tls_context]") {
    const TestCert cert;
    const std::string garbage = cert.write_file("garbage.pem", "this is not a certificate\n");
    std::string what = error_of([&] { make_server_tls_context(garbage, cert.key_path()); });
    INFO(what);
    CHECK(what.find("certificate chain file '" + garbage + "': ") != std::string::npos);
    CHECK(what.size() > ("TLS certificate chain file '" + garbage + "': ").size());
    what = error_of([&] { make_server_tls_context(cert.cert_path(), garbage); });
    INFO(what);
    CHECK(what.find("private key file '" + garbage + "'") != std::string::npos);
    // A certificate where the key should be is refused too.
    what = error_of([&] { make_server_tls_context(cert.cert_path(), cert.cert_path()); });
    CHECK(what.find("private key file '" + cert.cert_path() + "'") != std::string::npos);
}

TEST_CASE("a key that does not match the certificate is refused", "[tls_context]") {
    const TestCert cert;
    const TestCert other;
    const std::string what =
        error_of([&] { make_server_tls_context(cert.cert_path(), other.key_path()); });
    INFO(what);
    CHECK(what.find("private key file '" + other.key_path() + "'") != std::string::npos);
    CHECK(what.find(cert.cert_path()) != std::string::npos);
    CHECK(what.find("values mismatch") != std::string::npos);
    // The failure left nothing in this thread's OpenSSL error queue.
    CHECK(ERR_peek_error() == 0);
}

TEST_CASE("the lean TLS configs build a guarded server", "[tls_context]") {
    websocketpp::server<wsguard::wspp::asio_tls_lean_single_thread> single;
    wsguard::wspp::ServerGuard<wsguard::wspp::asio_tls_lean_single_thread> g1(single);
    websocketpp::server<wsguard::wspp::asio_tls_lean> multi;
    wsguard::wspp::ServerGuard<wsguard::wspp::asio_tls_lean, std::mutex> g2(multi);
    STATIC_REQUIRE(wsguard::wspp::asio_tls_lean::connection_read_buffer_size ==
                   wsguard::wspp::default_lean_read_buffer_bytes);
    STATIC_REQUIRE(wsguard::wspp::asio_tls_lean::transport_config::timeout_socket_shutdown ==
                   wsguard::wspp::default_lean_socket_shutdown_ms);
    CHECK(g1.stats().connections == 0);
    CHECK(g2.stats().connections == 0);
}
