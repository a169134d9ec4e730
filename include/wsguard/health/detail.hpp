// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Health internals: the number formats the checks', the triage's and the
// JSON writer's messages share. Not part of the API.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>

#include <wsguard/health/types.hpp>

namespace wsguard {

namespace detail {

/// printf's %f and %g follow the C locale's decimal point; a server that
/// called setlocale() must still write "0.7", not "0,7".
inline std::string c_locale_number(const char* buffer) {
    std::string s(buffer);
    std::replace(s.begin(), s.end(), ',', '.');
    return s;
}

inline std::string fixed(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return c_locale_number(buffer);
}

/// "512 B", "1.5 KiB", "80.0 MiB", "1.2 GiB".
inline std::string bytes(double value) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = value;
    std::size_t unit = 0;
    while ((v >= 1024.0 || v <= -1024.0) && unit + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        ++unit;
    }
    return fixed(v, unit == 0 ? 0 : 1) + " " + units[unit];
}

/// A count: no decimals from 10 up, one below ("0.5", "12").
inline std::string count(double value) {
    return fixed(value, std::fabs(value) >= 10.0 ? 0 : 1);
}

inline bool is_bytes(HealthSeries s) noexcept {
    return s == HealthSeries::resident_bytes || s == HealthSeries::heap_bytes ||
           s == HealthSeries::queued_bytes;
}

/// A signed rate per hour in the series' unit: "+80.0 MiB/h", "+720/h".
inline std::string rate(HealthSeries s, double per_hour) {
    const std::string sign = per_hour >= 0.0 ? "+" : "";
    return sign + (is_bytes(s) ? bytes(per_hour) : count(per_hour)) + "/h";
}

inline std::string percent(double fraction) {
    return fixed(fraction * 100.0, 1) + "%";
}

inline std::string hours(double h) {
    return h >= 48.0 ? fixed(h / 24.0, 1) + " days" : fixed(h, 1) + " h";
}

}  // namespace detail

}  // namespace wsguard
