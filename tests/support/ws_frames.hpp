// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The pieces of a raw WebSocket client that hostile-peer tests write by hand
// (RFC 6455): the opening request, masked client frames, and a parser for
// what the server sends back. One copy for the adapter's transport tests and
// the integration harness.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace wsguard::test {

/// The opening handshake a raw client sends.
inline std::string upgrade_request(std::uint16_t port) {
    return "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
           "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

/// The header of one masked client frame carrying `payload_size` bytes; the
/// payload that follows must be masked with `mask` (all zero: sent as is).
/// `fin` false makes it a fragment of a message that continues.
inline std::string client_frame_header(std::uint8_t opcode, std::uint64_t payload_size,
                                       const char (&mask)[4], bool fin = true) {
    std::string out;
    out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | opcode));
    if (payload_size < 126) {
        out.push_back(static_cast<char>(0x80 | payload_size));
    } else if (payload_size <= 0xFFFF) {
        out.push_back(static_cast<char>(0x80 | 126));
        out.push_back(static_cast<char>((payload_size >> 8) & 0xFF));
        out.push_back(static_cast<char>(payload_size & 0xFF));
    } else {
        out.push_back(static_cast<char>(0x80 | 127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            out.push_back(static_cast<char>((payload_size >> shift) & 0xFF));
        }
    }
    out.append(mask, 4);
    return out;
}

/// Appends one masked client frame to `out` (RFC 6455 section 5.2), masked
/// with the four bytes of `mask_seed`.
inline void append_client_frame(std::string& out, std::uint8_t opcode, const std::string& payload,
                                std::uint32_t mask_seed, bool fin = true) {
    const char mask[4] = {static_cast<char>(mask_seed >> 24), static_cast<char>(mask_seed >> 16),
                          static_cast<char>(mask_seed >> 8), static_cast<char>(mask_seed)};
    out += client_frame_header(opcode, payload.size(), mask, fin);
    for (std::size_t i = 0; i < payload.size(); ++i) {
        out.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
    }
}

/// The status code of a close frame's payload; 1005 (none) if it has none.
inline std::uint16_t close_code_of(const std::string& payload) {
    if (payload.size() < 2) {
        return 1005;
    }
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                      static_cast<unsigned char>(payload[1]));
}

/// One frame as the server sent it (unmasked).
struct ServerFrame {
    std::uint8_t opcode = 0;
    bool fin = false;
    std::string payload;
    std::uint16_t close_code() const { return close_code_of(payload); }
};

/// One server frame taken off the front of `inbox` (after the handshake
/// response), if a whole one is there.
inline std::optional<ServerFrame> take_server_frame(std::string& inbox) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(inbox[i]); };
    if (inbox.size() < 2) {
        return std::nullopt;
    }
    std::size_t at = 2;
    std::uint64_t n = byte(1) & 0x7F;
    const std::size_t extra = n == 126 ? 2 : n == 127 ? 8 : 0;
    if (inbox.size() < at + extra) {
        return std::nullopt;
    }
    if (extra > 0) {
        n = 0;
        for (std::size_t i = 0; i < extra; ++i) {
            n = (n << 8) | byte(at + i);
        }
        at += extra;
    }
    if (inbox.size() - at < n) {
        return std::nullopt;
    }
    ServerFrame f;
    f.fin = (byte(0) & 0x80) != 0;
    f.opcode = byte(0) & 0x0F;
    f.payload = inbox.substr(at, static_cast<std::size_t>(n));
    inbox.erase(0, at + static_cast<std::size_t>(n));
    return f;
}

}  // namespace wsguard::test
