// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RedisAddress and parse_redis_url(): where the Redis bridge connects, from a
// redis:// URL. No hiredis or asio needed, so a server can check its flags
// before anything starts.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace wsguard::wspp {

/// Where Redis listens.
struct RedisAddress {
    std::string host = "127.0.0.1";
    int port = 6379;
    /// AUTH on every connection when not empty (Redis 6 ACL user when
    /// username is set too). Never logged, never in stats.
    std::string username;
    std::string password;
};

/// Effect: "host:port" ("[host]:port" for IPv6), without the credentials:
/// what log lines and errors name. Never fails. Thread safety: Safe.
/// Exceptions: std::bad_alloc.
inline std::string host_port(const RedisAddress& a) {
    const bool v6 = a.host.find(':') != std::string::npos;
    return (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

/// Effect: `s` with every %XX decoded; std::nullopt on a bad escape.
inline std::optional<std::string> percent_decoded(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) {
            return std::nullopt;
        }
        const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

/// Effect: parses "redis://[[user]:password@]host[:port][/]" (the scheme in
/// any case; port 6379 when absent; an IPv6 host in brackets,
/// "redis://[::1]:6379"; user and password percent-decoded).
/// Fails: std::nullopt on any other shape, with the reason in `*error` when
/// given: another scheme (rediss://, TLS, is not supported), a bad port, a
/// database number (pub/sub ignores databases), a query.
/// Thread safety: Safe. Exceptions: std::bad_alloc.
inline std::optional<RedisAddress> parse_redis_url(std::string_view url,
                                                   std::string* error = nullptr) {
    const auto fail = [error](const char* why) -> std::optional<RedisAddress> {
        if (error != nullptr) {
            *error = why;
        }
        return std::nullopt;
    };
    const auto lower_prefix = [url](std::size_t n) {
        std::string p(url.substr(0, n));
        for (char& c : p) {
            c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        return p;
    };
    if (lower_prefix(9) == "rediss://") {
        return fail(
            "rediss:// (TLS to Redis) is not supported: reach Redis over a private network or "
            "a TLS tunnel (stunnel, spiped) and give its redis:// address");
    }
    if (lower_prefix(8) != "redis://") {
        return fail("a Redis URL starts with redis://");
    }
    url.remove_prefix(8);
    // The authority ends at the first '/', '?' or '#' (RFC 3986 3.2): an '@'
    // after it is not a credentials separator.
    const auto authority_end = url.find_first_of("/?#");
    const std::string_view rest =
        authority_end == std::string_view::npos ? std::string_view() : url.substr(authority_end);
    url = url.substr(0, authority_end);
    if (rest.find_first_of("?#") != std::string_view::npos) {
        return fail("a Redis URL for the bridge takes no query or fragment");
    }
    if (rest.size() > 1) {
        return fail("a database number is meaningless for pub/sub: give redis://host[:port]");
    }
    RedisAddress credentials;
    if (const auto at = url.rfind('@'); at != std::string_view::npos) {
        const std::string_view userinfo = url.substr(0, at);
        url.remove_prefix(at + 1);
        const auto colon = userinfo.find(':');
        if (colon == std::string_view::npos) {
            return fail("credentials in a Redis URL are user:password@ or :password@");
        }
        const auto user = percent_decoded(userinfo.substr(0, colon));
        const auto password = percent_decoded(userinfo.substr(colon + 1));
        if (!user || !password) {
            return fail("bad percent-encoding in the Redis URL's credentials");
        }
        if (password->empty()) {
            return fail("the Redis URL names credentials with an empty password");
        }
        credentials.username = *user;
        credentials.password = *password;
    }
    RedisAddress a;
    std::string_view port;
    const bool bracketed = !url.empty() && url.front() == '[';
    if (bracketed) {
        const auto close = url.find(']');
        if (close == std::string_view::npos) {
            return fail("an IPv6 host in a Redis URL is written [address]");
        }
        a.host = std::string(url.substr(1, close - 1));
        url.remove_prefix(close + 1);
        if (!url.empty()) {
            if (url.front() != ':') {
                return fail("the Redis URL has no usable host");
            }
            port = url.substr(1);
        }
    } else {
        const auto colon = url.find(':');
        a.host = std::string(url.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = url.substr(colon + 1);
        }
    }
    if (bracketed) {
        in6_addr ignored{};
        if (::inet_pton(AF_INET6, a.host.c_str(), &ignored) != 1) {
            return fail("the Redis URL's [host] is not an IPv6 address");
        }
    } else if (a.host.empty() ||
               a.host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789.-_") != std::string::npos) {
        return fail("the Redis URL's host is not a host name or an IPv4 address");
    }
    if (!port.empty() || url.find(':') != std::string_view::npos) {
        if (port.empty() || port.size() > 5 ||
            port.find_first_not_of("0123456789") != std::string_view::npos) {
            return fail("the Redis URL's port is not a number from 1 to 65535");
        }
        a.port = std::stoi(std::string(port));
        if (a.port < 1 || a.port > 65535) {
            return fail("the Redis URL's port is not a number from 1 to 65535");
        }
    }
    a.username = std::move(credentials.username);
    a.password = std::move(credentials.password);
    return a;
}

}  // namespace wsguard::wspp
