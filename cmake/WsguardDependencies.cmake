# Third-party packages for tests, examples and benchmarks: the system's first
# (Debian: catch2 libwebsocketpp-dev libasio-dev nlohmann-json3-dev libcli11-dev
# libbenchmark-dev libboost-dev), else a pinned FetchContent download.
# The library target itself needs none of them; websocketpp and asio are the
# adapter's (WsguardAdapters.cmake).
include(FetchContent)

if(WSGUARD_BUILD_TESTS)
  find_package(Catch2 2 QUIET)
  if(NOT Catch2_FOUND)
    message(STATUS "wsguard: Catch2 v2 not found on the system, fetching v2.13.10")
    FetchContent_Declare(Catch2
      GIT_REPOSITORY https://github.com/catchorg/Catch2.git
      GIT_TAG v2.13.10)
    FetchContent_MakeAvailable(Catch2)
    list(APPEND CMAKE_MODULE_PATH "${catch2_SOURCE_DIR}/contrib")
  endif()
endif()

if(WSGUARD_BUILD_TESTS OR WSGUARD_BUILD_EXAMPLES OR WSGUARD_BUILD_BENCHMARKS)
  find_package(nlohmann_json 3.2 QUIET)
  if(NOT nlohmann_json_FOUND)
    message(STATUS "wsguard: nlohmann_json not found on the system, fetching v3.11.2")
    FetchContent_Declare(nlohmann_json
      URL https://github.com/nlohmann/json/releases/download/v3.11.2/json.tar.xz
      URL_HASH SHA256=8c4b26bf4b422252e13f332bc5e388ec0ab5c3443d24399acb675e68278d341f)
    FetchContent_MakeAvailable(nlohmann_json)
  endif()
endif()

if(WSGUARD_BUILD_EXAMPLES OR WSGUARD_BUILD_TESTS)
  find_package(CLI11 2 QUIET)
  if(NOT CLI11_FOUND)
    message(STATUS "wsguard: CLI11 not found on the system, fetching v2.3.2")
    FetchContent_Declare(CLI11
      GIT_REPOSITORY https://github.com/CLIUtils/CLI11.git
      GIT_TAG v2.3.2)
    FetchContent_MakeAvailable(CLI11)
  endif()
endif()

if(WSGUARD_BUILD_BENCHMARKS)
  find_package(benchmark QUIET)
  if(NOT benchmark_FOUND)
    message(STATUS "wsguard: Google Benchmark not found on the system, fetching v1.7.1")
    set(BENCHMARK_ENABLE_TESTING OFF CACHE BOOL "" FORCE)
    FetchContent_Declare(benchmark
      GIT_REPOSITORY https://github.com/google/benchmark.git
      GIT_TAG v1.7.1)
    FetchContent_MakeAvailable(benchmark)
  endif()
  # boost::signals2 is a baseline in the emitter benchmark (header-only).
  find_package(Boost 1.65 QUIET)
endif()
