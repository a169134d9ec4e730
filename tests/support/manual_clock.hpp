// A clock the test moves by hand, so time-based behaviour needs no sleeps.
#pragma once

#include <chrono>
#include <memory>

namespace wsguard::test {

/// Copies share one time line: hand one copy to the component, keep another
/// in the test and advance it.
class ManualClock {
public:
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::steady_clock::time_point;
    static constexpr bool is_steady = true;

    ManualClock() : now_(std::make_shared<time_point>(time_point{} + std::chrono::hours(1))) {}

    time_point now() const noexcept { return *now_; }
    void advance(duration d) noexcept { *now_ += d; }
    void set(time_point t) noexcept { *now_ = t; }

private:
    std::shared_ptr<time_point> now_;
};

}  // namespace wsguard::test
