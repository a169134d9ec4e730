// wsguard fuzzing — what every fuzzer body shares.
// SPDX-License-Identifier: MIT
//
// Each fuzzer body (fuzz/fuzz_<what>.hpp) is a plain function of the input bytes so
// that two callers run the very same code: the libFuzzer entry point
// (fuzz/fuzz_<what>.cpp, clang only) and the Catch2 replay of the seeds and of every
// input that once failed (tests/fuzz_regressions/, any compiler). A failed check
// throws CheckFailure: the entry point prints it and aborts (libFuzzer then saves the
// input), the replay test reports it as a failed REQUIRE_NOTHROW.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace wsguard::fuzz {

/// A broken invariant or a disagreement with the model: the message names the check.
class CheckFailure : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// Effect: throws CheckFailure naming the failed expression and where it is.
[[noreturn]] inline void fail(const char* expression, const char* file, int line) {
    std::string_view path(file);
    // The file's name is enough to find the check; the build machine's path is noise.
    const auto slash = path.find_last_of("/\\");
    if (slash != std::string_view::npos) {
        path.remove_prefix(slash + 1);
    }
    throw CheckFailure(std::string("fuzz check failed: ") + expression + " (" + std::string(path) +
                       ":" + std::to_string(line) + ")");
}

/// Effect: calls body(data, size); a CheckFailure or any other exception is printed
/// and turned into abort(), which libFuzzer reports as a crash and saves the input.
template <class Body>
int run_or_abort(Body body, const std::uint8_t* data, std::size_t size) {
    try {
        body(data, size);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        std::abort();
    }
    return 0;
}

/// Reads the fuzzer's bytes front to back. Once they run out every read returns 0,
/// so a body never needs to check for the end except to stop its loop.
class FuzzInput {
public:
    FuzzInput(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

    bool empty() const noexcept { return pos_ == size_; }
    std::size_t remaining() const noexcept { return size_ - pos_; }

    std::uint8_t byte() noexcept { return empty() ? 0 : data_[pos_++]; }

    /// A value in [0, n) for n in [1, 256], from one byte.
    std::size_t below(std::size_t n) noexcept { return n == 0 ? 0 : byte() % n; }

    bool flag() noexcept { return (byte() & 1) != 0; }

    /// The bytes up to (not including) the next `separator`, which is consumed; the
    /// rest of the input when there is none.
    std::string_view take_until(std::uint8_t separator) noexcept {
        const std::size_t start = pos_;
        while (pos_ < size_ && data_[pos_] != separator) {
            ++pos_;
        }
        const std::string_view out(reinterpret_cast<const char*>(data_ + start), pos_ - start);
        if (pos_ < size_) {
            ++pos_;
        }
        return out;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

/// Counts live Tracked objects, so a body can check that a component destroys exactly
/// what it stopped holding (ASan/LSan catch a leaked allocation, not a leaked count).
struct LiveCounter {
    long live = 0;
};

/// An element that counts itself in a LiveCounter and carries a value to compare
/// against the model. Moves are nothrow (as BoundedMessageQueue requires).
class Tracked {
public:
    Tracked(LiveCounter& counter, std::uint64_t value) noexcept
        : counter_(&counter), value_(value) {
        ++counter_->live;
    }
    Tracked(const Tracked& other) noexcept : counter_(other.counter_), value_(other.value_) {
        ++counter_->live;
    }
    Tracked(Tracked&& other) noexcept : counter_(other.counter_), value_(other.value_) {
        ++counter_->live;
    }
    Tracked& operator=(const Tracked& other) noexcept {
        value_ = other.value_;
        return *this;
    }
    Tracked& operator=(Tracked&& other) noexcept {
        value_ = other.value_;
        return *this;
    }
    ~Tracked() { --counter_->live; }

    std::uint64_t value() const noexcept { return value_; }
    void set_value(std::uint64_t value) noexcept { value_ = value; }

private:
    LiveCounter* counter_;  // never null: every constructor is given one
    std::uint64_t value_;
};

}  // namespace wsguard::fuzz

/// Checks an invariant inside a fuzzer body; throws wsguard::fuzz::CheckFailure.
#define WSGUARD_FUZZ_CHECK(expression) \
    ((expression) ? static_cast<void>(0) : ::wsguard::fuzz::fail(#expression, __FILE__, __LINE__))
