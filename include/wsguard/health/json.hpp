// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// to_json(HealthReport): the report as compact JSON, with a small writer.
//
// Why it is in the library: the core depends on nothing but the standard
// library, so a user of the core gets a stable, tested serialization of the
// report (for /stats, logs, alerts) without pulling in a JSON library; and
// the critical snapshot (snapshot.hpp) needs exactly this serialization.
// It is presentation, so it lives apart: the checks never depend on it.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

#include <wsguard/health/detail.hpp>
#include <wsguard/health/types.hpp>

namespace wsguard {

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

namespace detail {

/// Appends `s` as a JSON string: quotes, backslashes and control characters
/// escaped; other bytes (UTF-8) copied as they are.
inline void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    static constexpr char hex[] = "0123456789abcdef";
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xF];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

/// Appends a JSON number; NaN and infinities (not JSON) become null.
inline void append_json_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += "null";
        return;
    }
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.15g", value);
    out += c_locale_number(buffer);
}

inline void append_json_key(std::string& out, const char* key) {
    append_json_string(out, key);
    out += ':';
}

}  // namespace detail

/// Effect: Returns the report as compact JSON:
///         {"level":"...","checks":[{"name","level","measured","value",
///         "warning_at","critical_at","message"}...],"findings":[{"series",
///         "level","growth_per_hour","r_squared","message"}...]}, keys in that
///         order; strings escaped; non-finite numbers as null.
/// Fails: Never fails.
/// Thread safety: Safe.
/// Exceptions: std::bad_alloc.
inline std::string to_json(const HealthReport& report) {
    std::string out;
    out += '{';
    detail::append_json_key(out, "level");
    detail::append_json_string(out, to_string(report.level));
    out += ',';
    detail::append_json_key(out, "checks");
    out += '[';
    for (std::size_t i = 0; i < report.checks.size(); ++i) {
        const CheckResult& c = report.checks[i];
        out += i == 0 ? "{" : ",{";
        detail::append_json_key(out, "name");
        detail::append_json_string(out, c.name);
        out += ',';
        detail::append_json_key(out, "level");
        detail::append_json_string(out, to_string(c.level));
        out += ',';
        detail::append_json_key(out, "measured");
        out += c.measured ? "true" : "false";
        out += ',';
        detail::append_json_key(out, "value");
        detail::append_json_number(out, c.value);
        out += ',';
        detail::append_json_key(out, "warning_at");
        detail::append_json_number(out, c.warning_at);
        out += ',';
        detail::append_json_key(out, "critical_at");
        detail::append_json_number(out, c.critical_at);
        out += ',';
        detail::append_json_key(out, "message");
        detail::append_json_string(out, c.message);
        out += '}';
    }
    out += "],";
    detail::append_json_key(out, "findings");
    out += '[';
    for (std::size_t i = 0; i < report.findings.size(); ++i) {
        const Finding& f = report.findings[i];
        out += i == 0 ? "{" : ",{";
        detail::append_json_key(out, "series");
        detail::append_json_string(out, f.series);
        out += ',';
        detail::append_json_key(out, "level");
        detail::append_json_string(out, to_string(f.level));
        out += ',';
        detail::append_json_key(out, "growth_per_hour");
        detail::append_json_number(out, f.growth_per_hour);
        out += ',';
        detail::append_json_key(out, "r_squared");
        detail::append_json_number(out, f.r_squared);
        out += ',';
        detail::append_json_key(out, "message");
        detail::append_json_string(out, f.message);
        out += '}';
    }
    out += "]}";
    return out;
}

}  // namespace wsguard
