// TEMPORARY: verifies the CMake logic until the core headers exist.
#include <wsguard/null_mutex.hpp>
static_assert(__cplusplus >= 201703L, "no C++17");
int main() {
    wsguard::NullMutex m;
    m.lock();
    m.unlock();
    return 0;
}
