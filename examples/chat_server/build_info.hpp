// wsguard reference chat server — what was built: the project's version (from
// CMake) and websocketpp's, for --version and /metrics' wsguard_build_info.
// SPDX-License-Identifier: MIT
#pragma once

#include <websocketpp/version.hpp>

#include <string>

// CMake defines it from the project's version (examples/chat_server/
// CMakeLists.txt); a build without CMake says so instead of guessing a number.
#ifndef WSGUARD_VERSION_STRING
#define WSGUARD_VERSION_STRING "unknown"
#endif

namespace chat {

/// The wsguard version this server was built from ("0.1.0"; "unknown"
/// without CMake's definition).
inline constexpr const char* wsguard_version = WSGUARD_VERSION_STRING;

/// websocketpp's version, "major.minor.patch", from websocketpp/version.hpp.
inline std::string websocketpp_version() {
    return std::to_string(websocketpp::major_version) + "." +
           std::to_string(websocketpp::minor_version) + "." +
           std::to_string(websocketpp::patch_version);
}

/// What `chat_server --version` prints (without the newline).
inline std::string version_line() {
    return std::string("chat_server ") + wsguard_version + " (wsguard " + wsguard_version +
           ", websocketpp " + websocketpp_version() + ")";
}

}  // namespace chat
