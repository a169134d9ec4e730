// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The UTF-8 check websocketpp leaves to its user: a text message that arrived
// in several frames is validated byte by byte but never checked to end on a
// whole code point.
#pragma once

#include <cstddef>
#include <string_view>

namespace wsguard::wspp::detail {

/// True unless `text` ends inside a UTF-8 sequence. websocketpp validates
/// every byte of a text message as it arrives, but checks that the message
/// ends on a whole code point only when it came in one frame (hybi13's
/// finalize_message looks at the last frame's opcode, a continuation when
/// fragmented), so only the tail is left to check: O(1).
inline bool ends_on_code_point(std::string_view text) noexcept {
    std::size_t continuation = 0;
    for (auto it = text.rbegin(); it != text.rend() && continuation < 4; ++it) {
        const auto b = static_cast<unsigned char>(*it);
        if ((b & 0xC0) == 0x80) {
            ++continuation;
            continue;
        }
        const std::size_t length = b < 0x80             ? 1
                                   : (b & 0xE0) == 0xC0 ? 2
                                   : (b & 0xF0) == 0xE0 ? 3
                                   : (b & 0xF8) == 0xF0 ? 4
                                                        : 0;
        return length == continuation + 1;
    }
    return continuation == 0;
}

}  // namespace wsguard::wspp::detail
