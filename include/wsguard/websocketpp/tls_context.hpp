// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The OpenSSL context of a wss server, built once and shared by every
// connection (websocketpp asks for one per connection through the tls init
// handler: return the same one). Choices, each for memory or safety:
//  - SSL_MODE_RELEASE_BUFFERS: OpenSSL frees a connection's read and write
//    buffers (~34 KiB together) whenever they are empty, so an idle wss
//    connection does not hold them (uWebSockets sets it for the same reason);
//  - no server-side session cache: every full handshake would add a session
//    to it (up to 20,480 by default), memory that grows with connection churn;
//    resumption still works through session tickets, which the server does
//    not store;
//  - TLS 1.2 and later, no compression (CRIME).
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <asio/ssl/context.hpp>

#include <memory>
#include <stdexcept>
#include <string>

namespace wsguard::wspp {

/// A TLS context could not be built: the message names the file and gives
/// OpenSSL's reason.
class TlsContextError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

/// OpenSSL's reason for the oldest error queued on this thread (the root
/// cause; later entries are its consequences), and clears the queue so that
/// the next OpenSSL call on this thread does not report it again.
inline std::string take_openssl_reason() {
    const unsigned long first = ERR_get_error();
    ERR_clear_error();
    if (first == 0) {
        return "unknown OpenSSL error";
    }
    const char* reason = ERR_reason_error_string(first);
    if (reason != nullptr) {
        return reason;
    }
    char buffer[256];
    ERR_error_string_n(first, buffer, sizeof buffer);
    return buffer;
}

}  // namespace detail

/// Effect: a server context for wss: the certificate chain from
/// `cert_chain_file` (PEM: the server's certificate first, then any
/// intermediates) and the private key from `key_file` (PEM, unencrypted),
/// TLS 1.2+, no compression, no session cache, SSL_MODE_RELEASE_BUFFERS.
/// Fails: throws TlsContextError naming the file and OpenSSL's reason when a
/// file is missing or unreadable, is not PEM of the right kind, or the key
/// does not match the certificate; std::bad_alloc.
/// Thread safety: safe to call from any thread; the context it returns may be
/// shared by connections on several threads (OpenSSL locks its SSL_CTX).
/// Exceptions: strong (nothing is kept on failure).
inline std::shared_ptr<asio::ssl::context> make_server_tls_context(
    const std::string& cert_chain_file, const std::string& key_file) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    SSL_CTX* native = ctx->native_handle();
    ERR_clear_error();  // a reason left over by someone else must not be reported as ours
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
        throw TlsContextError("cannot require TLS 1.2: " + detail::take_openssl_reason());
    }
    SSL_CTX_set_options(
        native, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(native, cert_chain_file.c_str()) != 1) {
        throw TlsContextError("TLS certificate chain file '" + cert_chain_file +
                              "': " + detail::take_openssl_reason());
    }
    // OpenSSL compares the key with the certificate while loading it ("key
    // values mismatch"), so the message names the certificate file too.
    const std::string key_what = "TLS private key file '" + key_file +
                                 "' (for the certificate in '" + cert_chain_file + "')";
    if (SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(native) != 1) {
        throw TlsContextError(key_what + ": " + detail::take_openssl_reason());
    }
    return ctx;
}

}  // namespace wsguard::wspp
