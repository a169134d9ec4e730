// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The chat_server command line, run as a child process: refused values exit 2
// with a message on stderr, --help exits 0 and lists every flag, and SIGTERM
// closes every connection with 1001 and exits 0. The child is killed by its
// pid on every path out of a test.
#include "client_harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef WSGUARD_CHAT_SERVER_PATH
#error "WSGUARD_CHAT_SERVER_PATH must name the chat_server binary"
#endif

extern char** environ;

using wsguard::test::ClientEndpoint;
using wsguard::test::Millis;
using wsguard::test::SteadyClock;

namespace {

/// chat_server as a child with its stdout and stderr on pipes. The destructor
/// kills it (SIGKILL, by pid) if it still runs, and reaps it.
class Child {
public:
    /// `launcher`, if any, runs first with chat_server's path and `args`
    /// after its own arguments (e.g. a shell that lowers a limit, then execs).
    explicit Child(const std::vector<std::string>& args,
                   const std::vector<std::string>& launcher = {}) {
        int out[2], err[2];
        REQUIRE(::pipe(out) == 0);
        REQUIRE(::pipe(err) == 0);
        posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_addclose(&actions, out[0]);
        ::posix_spawn_file_actions_addclose(&actions, err[0]);
        ::posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        ::posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
        ::posix_spawn_file_actions_addclose(&actions, out[1]);
        ::posix_spawn_file_actions_addclose(&actions, err[1]);
        std::vector<std::string> argv_storage = launcher;
        argv_storage.push_back(WSGUARD_CHAT_SERVER_PATH);
        argv_storage.insert(argv_storage.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_storage) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        ::posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        ::close(err[1]);
        out_ = out[0];
        err_ = err[0];
        REQUIRE(rc == 0);
    }

    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    ~Child() {
        if (!status_ && pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
        }
        ::close(out_);
        ::close(err_);
    }

    pid_t pid() const noexcept { return pid_; }

    /// Reads stdout until it shows the WebSocket URL the server prints once it
    /// listens ("ws://<host>:<port>/"); that host and port, or nullopt after
    /// `timeout`.
    std::optional<std::pair<std::string, int>> wait_listening_url(Millis timeout) {
        static const std::string prefix = "ws://";
        const auto deadline = SteadyClock::now() + timeout;
        for (;;) {
            const auto at = stdout_.find(prefix);
            const auto end = at == std::string::npos ? at : stdout_.find('/', at + prefix.size());
            if (end != std::string::npos) {
                const std::string host_port =
                    stdout_.substr(at + prefix.size(), end - at - prefix.size());
                const auto colon = host_port.rfind(':');
                if (colon != std::string::npos && colon + 1 < host_port.size() &&
                    host_port.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
                    return std::pair(host_port.substr(0, colon),
                                     std::stoi(host_port.substr(colon + 1)));
                }
            }
            const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
            if (left.count() <= 0 || !read_some(left)) {
                return std::nullopt;
            }
        }
    }

    /// The port of wait_listening_url(), which must be on 127.0.0.1.
    std::optional<int> wait_listening_port(Millis timeout) {
        const auto url = wait_listening_url(timeout);
        if (!url || url->first != "127.0.0.1") {
            return std::nullopt;
        }
        return url->second;
    }

    /// Waits for the child to exit, reading its output meanwhile; its exit
    /// code, or nullopt if it is still running (or died of a signal).
    std::optional<int> wait_exit(Millis timeout) {
        const auto deadline = SteadyClock::now() + timeout;
        while (!status_) {
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                status_ = st;
                break;
            }
            const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            // Drain the pipes so the child never blocks on a full one.
            if (!read_some(std::min(left, Millis{20}))) {
                ::poll(nullptr, 0, 5);
            }
        }
        while (read_some(Millis{0})) {
        }
        if (!WIFEXITED(*status_)) {
            return std::nullopt;
        }
        return WEXITSTATUS(*status_);
    }

    const std::string& out() const noexcept { return stdout_; }
    const std::string& err() const noexcept { return stderr_; }

private:
    // Reads whatever is ready on either pipe within `timeout`; false if nothing.
    bool read_some(Millis timeout) {
        pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
        if (::poll(fds, 2, static_cast<int>(timeout.count())) <= 0) {
            return false;
        }
        bool any = false;
        char buf[4096];
        std::string* sinks[2] = {&stdout_, &stderr_};
        for (int i = 0; i < 2; ++i) {
            if (fds[i].revents & (POLLIN | POLLHUP)) {
                const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                if (n > 0) {
                    sinks[i]->append(buf, static_cast<std::size_t>(n));
                    any = true;
                }
            }
        }
        return any;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    int err_ = -1;
    std::optional<int> status_;
    std::string stdout_, stderr_;
};

int exit_code_of(const std::vector<std::string>& args, std::string* out = nullptr,
                 std::string* err = nullptr) {
    Child child(args);
    const auto rc = child.wait_exit(Millis{10000});
    if (out) {
        *out = child.out();
    }
    if (err) {
        *err = child.err();
    }
    return rc ? *rc : -1;
}

/// The variable that sets `flag` ("--max-rooms": "WSGUARD_MAX_ROOMS"), by
/// the README's rule, written out again here so that a change to the rule
/// shows.
std::string env_name_of(const std::string& flag) {
    std::string env = "WSGUARD_";
    for (const char c : flag.substr(2)) {
        env += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return env;
}

using EnvVars = std::vector<std::pair<std::string, std::string>>;

/// Sets environment variables for the children spawned in its lifetime
/// (they inherit environ); unsets them when it goes.
class ScopedEnv {
public:
    explicit ScopedEnv(EnvVars vars) : vars_(std::move(vars)) {
        for (const auto& [name, value] : vars_) {
            REQUIRE(::setenv(name.c_str(), value.c_str(), 1) == 0);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
    ~ScopedEnv() {
        for (const auto& [name, value] : vars_) {
            ::unsetenv(name.c_str());
        }
    }

private:
    EnvVars vars_;
};

/// The bridge row's warning_at in `port`'s /stats (-1 if absent).
double bridge_warning_at(int port) {
    const auto stats = wsguard::test::get_stats(static_cast<std::uint16_t>(port));
    for (const auto& c : stats["health"]["checks"]) {
        if (c["name"] == "bridge") {
            return c["warning_at"].get<double>();
        }
    }
    return -1;
}

}  // namespace

TEST_CASE("chat_server refuses bad values with exit code 2 and a message on stderr", "[cli]") {
    const std::vector<std::vector<std::string>> bad = {
        {"--port", "abc"},
        {"--port", "70000"},
        {"--slow-consumer", "maybe"},
        {"--max-connections", "0"},
        {"--max-payload-bytes", "0"},
        {"--threads", "0"},
        {"--idle-timeout-ms", "-1"},
        {"--no-such-flag"},
        {"--port"},
        {"--max-uri-bytes", "0"},
        {"--max-rooms", "0"},
        {"--max-room-name-bytes", "0"},
        {"--max-rooms-per-connection", "0"},
        {"--max-connections-per-ip", "-1"},
        {"--log-level", "loud"},
        {"--log-level", "WARN"},
        {"--bind", "300.1.2.3"},
        {"--bind", "::12345"},
        {"--max-uri-bytes", "16001"},
        {"--allowed-origins", "https://a.example/app"},
        {"--bridge-down-warning-seconds", "abc"},
        {"--bridge-down-warning-seconds", "-1"},
        {"--bridge-down-warning-seconds", "1.5"},
        {"--bridge-down-warning-seconds", "86401"},
        {"--bridge-down-warning-seconds", "99999999999999999999"},
        {"--bridge-down-warning-seconds"},
    };
    for (const auto& args : bad) {
        std::string joined;
        for (const auto& a : args) {
            joined += a + ' ';
        }
        INFO("chat_server " << joined);
        std::string out, err;
        CHECK(exit_code_of(args, &out, &err) == 2);
        CHECK_FALSE(err.empty());
        // Refused before anything started listening.
        CHECK(out.find("listening") == std::string::npos);
    }
}

TEST_CASE("chat_server refuses a Redis URL it cannot use, says why, and never echoes a password",
          "[cli]") {
    struct Case {
        const char* url;
        const char* reason;
    };
    for (const Case& c : {Case{"rediss://cache.example:6380", "TLS"},
                          Case{"redis://:sekret-pw@127.0.0.1:6379/3", "database"},
                          Case{"redis://app@127.0.0.1", "credentials"},
                          Case{"http://127.0.0.1:6379", "redis://"}}) {
        INFO(c.url);
        std::string out, err;
        CHECK(exit_code_of({"--port", "0", "--redis", c.url}, &out, &err) == 2);
        CHECK(err.find(c.reason) != std::string::npos);
        CHECK(err.find("sekret-pw") == std::string::npos);
        CHECK(out.find("sekret-pw") == std::string::npos);
        CHECK(out.find("listening") == std::string::npos);
    }
}

TEST_CASE("chat_server --tls-cert and --tls-key come together, and bad files exit 2", "[cli]") {
    struct Case {
        std::vector<std::string> args;
        const char* message;
    };
    const Case cases[] = {
        {{"--port", "0", "--tls-cert", "cert.pem"}, "--tls-cert requires --tls-key"},
        {{"--port", "0", "--tls-key", "key.pem"}, "--tls-key requires --tls-cert"},
#ifdef WSGUARD_HAVE_OPENSSL
        // Checked before the port is opened; the message names the file.
        {{"--port", "0", "--tls-cert", "no-such-cert.pem", "--tls-key", "no-such-key.pem"},
         "TLS certificate chain file 'no-such-cert.pem': "},
#else
        {{"--port", "0", "--tls-cert", "no-such-cert.pem", "--tls-key", "no-such-key.pem"},
         "built without TLS"},
#endif
    };
    for (const auto& c : cases) {
        INFO(c.message);
        std::string out, err;
        CHECK(exit_code_of(c.args, &out, &err) == 2);
        CHECK(err.find(c.message) != std::string::npos);
        CHECK(out.find("listening") == std::string::npos);
    }
}

TEST_CASE("chat_server --help exits 0 and lists every flag", "[cli]") {
    std::string out, err;
    REQUIRE(exit_code_of({"--help"}, &out, &err) == 0);
    for (const char* flag : {"--port",
                             "--bind",
                             "--max-connections",
                             "--idle-timeout-ms",
                             "--ping-interval-ms",
                             "--max-payload-bytes",
                             "--max-buffered-bytes",
                             "--slow-consumer",
                             "--sample-interval-ms",
                             "--snapshot-dir",
                             "--growth-window",
                             "--threads",
                             "--redis",
                             "--node-id",
                             "--max-connections-per-ip",
                             "--allowed-origins",
                             "--max-uri-bytes",
                             "--max-http-body-bytes",
                             "--max-rooms",
                             "--max-rooms-per-connection",
                             "--max-room-name-bytes",
                             "--log-level",
                             "--admin-token",
                             "--bridge-down-warning-seconds",
                             "--version",
                             "--tls-cert",
                             "--tls-key",
                             "--help"}) {
        INFO(flag);
        CHECK(out.find(flag) != std::string::npos);
        // Every flag with a value names its variable: WSGUARD_ + NAME.
        if (std::string_view(flag) != "--help" && std::string_view(flag) != "--version") {
            CHECK(out.find("Env:" + env_name_of(flag)) != std::string::npos);
        }
    }
}

TEST_CASE(
    "chat_server on --port 0 prints its real port and exits 0 on SIGTERM after closing "
    "clients with 1001",
    "[cli]") {
    Child child({"--port", "0", "--bind", "127.0.0.1"});
    const auto listening = child.wait_listening_port(Millis{10000});
    INFO("stdout: " << child.out() << "\nstderr: " << child.err());
    REQUIRE(listening);
    const int port = *listening;
    REQUIRE(port > 0);
    REQUIRE(port < 65536);

    ClientEndpoint clients;
    auto c = clients.connect_open(static_cast<std::uint16_t>(port));
    REQUIRE(c);
    CHECK(c->round_trip());
    auto stats = wsguard::test::get_stats(static_cast<std::uint16_t>(port));
    CHECK(wsguard::test::stat_of(stats, "connections") == 1);

    REQUIRE(::kill(child.pid(), SIGTERM) == 0);
    REQUIRE(c->wait_closed());
    CHECK(c->remote_close_code() == 1001);
    const auto rc = child.wait_exit(Millis{10000});
    REQUIRE(rc);
    CHECK(*rc == 0);
    CHECK(child.out().find("stopped") != std::string::npos);
}

TEST_CASE("chat_server's admission and room flags reach the guard", "[cli]") {
    Child child({"--port", "0", "--bind", "127.0.0.1", "--allowed-origins",
                 "https://a.example,https://b.example", "--max-connections-per-ip", "2",
                 "--max-uri-bytes", "100", "--max-rooms", "1", "--max-rooms-per-connection", "1",
                 "--max-room-name-bytes", "4"});
    const auto listening = child.wait_listening_port(Millis{10000});
    INFO("stdout: " << child.out() << "\nstderr: " << child.err());
    REQUIRE(listening);
    const auto port = static_cast<std::uint16_t>(*listening);
    const auto status_of = [port](const std::string& path, const std::string& origin) {
        wsguard::test::RawWsClient c;
        REQUIRE(c.connect_tcp(port));
        REQUIRE(
            c.send_bytes("GET " + path +
                         " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nOrigin: " +
                         origin + "\r\n\r\n"));
        const auto answer = c.read_to_end();
        return answer && answer->rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(answer->c_str() + 9) : 0;
    };
    CHECK(status_of("/", "https://c.example") == 403);
    CHECK(status_of("/" + std::string(100, 'u'), "https://a.example") == 414);

    wsguard::test::RawWsClient a, b, c;
    REQUIRE(a.connect(port));
    REQUIRE(b.connect(port));
    CHECK_FALSE(c.connect(port));                       // the third from 127.0.0.1: 503
    CHECK(status_of("/", "https://b.example") == 503);  // past the Origin check, then per-IP
    const auto error_of = [](wsguard::test::RawWsClient& client, const std::string& room) {
        REQUIRE(client.send_text(R"({"type":"join","room":")" + room + R"("})"));
        REQUIRE(client.send_text(R"({"type":"ping"})"));
        // The error, if any, comes before the pong.
        std::string error;
        for (;;) {
            const auto f = client.read_frame();
            REQUIRE(f);
            const auto j = nlohmann::json::parse(f->payload, nullptr, false);
            if (j.value("type", std::string()) == "pong") {
                return error;
            }
            error = j.value("error", std::string());
        }
    };
    CHECK(error_of(a, "abcde") == "room name is too long");
    CHECK(error_of(a, "r1").empty());
    CHECK(error_of(a, "r2") == "too many rooms joined");
    CHECK(error_of(b, "r2") == "too many rooms on the server");
    const auto stats = wsguard::test::get_stats(port);
    CHECK(wsguard::test::stat_of(stats, "refused", "origin") == 1);
    CHECK(wsguard::test::stat_of(stats, "refused", "uri_too_long") == 1);
    CHECK(wsguard::test::stat_of(stats, "refused", "per_ip") == 2);
    CHECK(wsguard::test::stat_of(stats, "peer_addresses") == 1);

    a.close();
    b.close();
    REQUIRE(::kill(child.pid(), SIGTERM) == 0);
    const auto rc = child.wait_exit(Millis{10000});
    REQUIRE(rc);
    CHECK(*rc == 0);
}

TEST_CASE("chat_server exits 0 on SIGINT with no client connected", "[cli]") {
    Child child({"--port", "0", "--bind", "127.0.0.1", "--threads", "2"});
    REQUIRE(child.wait_listening_port(Millis{10000}));
    REQUIRE(::kill(child.pid(), SIGINT) == 0);
    const auto rc = child.wait_exit(Millis{10000});
    INFO("stdout: " << child.out() << "\nstderr: " << child.err());
    REQUIRE(rc);
    CHECK(*rc == 0);
}

TEST_CASE("chat_server --bind takes a host name and IPv6, and its banner prints URLs that work",
          "[cli]") {
    const std::vector<std::pair<std::string, std::string>> binds = {
        {"localhost", ""}, {"::1", "[::1]"}, {"0.0.0.0", "127.0.0.1"}, {"127.0.0.1", "127.0.0.1"}};
    for (const auto& [bind, expected_host] : binds) {
        INFO("--bind " << bind);
        Child child({"--port", "0", "--bind", bind});
        const auto url = child.wait_listening_url(Millis{10000});
        INFO("stdout: " << child.out() << "\nstderr: " << child.err());
        REQUIRE(url);
        if (!expected_host.empty()) {
            CHECK(url->first == expected_host);
        }
        // The printed host, brackets removed, is an address this machine reaches.
        std::string host = url->first;
        if (host.size() > 2 && host.front() == '[') {
            host = host.substr(1, host.size() - 2);
        }
        std::error_code ec;
        const auto address = asio::ip::make_address(host, ec);
        REQUIRE_FALSE(ec);
        const auto r = wsguard::test::http_request_to(
            address, static_cast<std::uint16_t>(url->second), "GET", "/stats");
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(::kill(child.pid(), SIGTERM) == 0);
        CHECK(child.wait_exit(Millis{10000}) == std::optional<int>(0));
    }
}

TEST_CASE("chat_server takes the admin token from WSGUARD_ADMIN_TOKEN", "[cli]") {
    ::setenv("WSGUARD_ADMIN_TOKEN", "from-the-environment", 1);
    Child child({"--port", "0", "--bind", "127.0.0.1"});
    ::unsetenv("WSGUARD_ADMIN_TOKEN");
    const auto port = child.wait_listening_port(Millis{10000});
    REQUIRE(port);
    const auto loopback = asio::ip::make_address("127.0.0.1");
    const auto p = static_cast<std::uint16_t>(*port);
    const auto refused = wsguard::test::http_request_to(loopback, p, "GET", "/stats");
    const auto allowed = wsguard::test::http_request_to(
        loopback, p, "GET", "/stats", "Authorization: Bearer from-the-environment\r\n");
    REQUIRE(refused);
    REQUIRE(allowed);
    CHECK(refused->status == 403);
    CHECK(allowed->status == 200);
    CHECK(child.out().find("from-the-environment") == std::string::npos);
}

TEST_CASE("chat_server fits --max-connections to the descriptor limit, naming both numbers",
          "[cli]") {
    // The shell lowers RLIMIT_NOFILE (soft and hard) for the server only.
    const std::vector<std::string> limited = {"/bin/sh", "-c",
                                              "ulimit -n 300 && exec \"$0\" \"$@\""};
    SECTION("a value given on the command line that does not fit: refuses to start") {
        Child child({"--port", "0", "--bind", "127.0.0.1", "--max-connections", "1000"}, limited);
        const auto rc = child.wait_exit(Millis{10000});
        INFO("stdout: " << child.out() << "\nstderr: " << child.err());
        REQUIRE(rc);
        CHECK(*rc == 2);
        CHECK(child.err().find("--max-connections 1000") != std::string::npos);
        CHECK(child.err().find("RLIMIT_NOFILE) is 300") != std::string::npos);
        CHECK(child.err().find("--max-connections 236 or less") != std::string::npos);
    }
    SECTION("the default that does not fit: lowered with a warning, and the server runs") {
        Child child({"--port", "0", "--bind", "127.0.0.1"}, limited);
        const auto port = child.wait_listening_port(Millis{10000});
        INFO("stdout: " << child.out() << "\nstderr: " << child.err());
        REQUIRE(port);
        CHECK(child.err().find("lowered from 10000 (the default) to 236") != std::string::npos);
        CHECK(child.err().find("RLIMIT_NOFILE) is 300") != std::string::npos);
        ::kill(child.pid(), SIGTERM);
        const auto rc = child.wait_exit(Millis{10000});
        REQUIRE(rc);
        CHECK(*rc == 0);
    }
}

TEST_CASE("chat_server --bridge-down-warning-seconds sets the bridge row's threshold", "[cli]") {
    Child child({"--port", "0", "--bind", "127.0.0.1", "--bridge-down-warning-seconds", "7"});
    const auto port = child.wait_listening_port(Millis{10000});
    INFO("stdout: " << child.out() << "\nstderr: " << child.err());
    REQUIRE(port);
    const auto stats = wsguard::test::get_stats(static_cast<std::uint16_t>(*port));
    REQUIRE(stats.is_object());
    bool found = false;
    for (const auto& c : stats["health"]["checks"]) {
        if (c["name"] == "bridge") {
            found = true;
            CHECK(c["level"] == "ok");
            CHECK(c["warning_at"] == 7);
        }
    }
    CHECK(found);
    const auto ready = wsguard::test::http_get(static_cast<std::uint16_t>(*port), "/readyz");
    REQUIRE(ready);
    CHECK(ready->status == 200);
    REQUIRE(::kill(child.pid(), SIGTERM) == 0);
    CHECK(child.wait_exit(Millis{10000}) == std::optional<int>(0));
}

TEST_CASE("chat_server --version prints its, wsguard's and websocketpp's versions and exits 0",
          "[cli]") {
    std::string out, err;
    REQUIRE(exit_code_of({"--version"}, &out, &err) == 0);
    INFO("stdout: " << out << "\nstderr: " << err);
    CHECK(out.rfind("chat_server ", 0) == 0);
    CHECK(out.find("(wsguard ") != std::string::npos);
    CHECK(out.find(", websocketpp ") != std::string::npos);
    CHECK(out.find("unknown") == std::string::npos);  // CMake passed the project's version
    CHECK(out.find("listening") == std::string::npos);
}

TEST_CASE("chat_server takes each flag from WSGUARD_<FLAG>, and the command line beats it",
          "[cli]") {
    SECTION("the environment alone: port, address and a threshold") {
        ScopedEnv env(EnvVars{{"WSGUARD_PORT", "0"},
                              {"WSGUARD_BIND", "127.0.0.1"},
                              {"WSGUARD_BRIDGE_DOWN_WARNING_SECONDS", "7"},
                              {"WSGUARD_NO_SUCH_FLAG", "ignored"}});  // not a flag: ignored
        Child child(std::vector<std::string>{});
        const auto port = child.wait_listening_port(Millis{10000});
        INFO("stdout: " << child.out() << "\nstderr: " << child.err());
        REQUIRE(port);
        CHECK(bridge_warning_at(*port) == 7);
        REQUIRE(::kill(child.pid(), SIGTERM) == 0);
        CHECK(child.wait_exit(Millis{10000}) == std::optional<int>(0));
    }
    SECTION("a flag beats its variable, even a variable that would be refused") {
        ScopedEnv env(EnvVars{{"WSGUARD_PORT", "not-a-port"},
                              {"WSGUARD_BIND", "127.0.0.1"},
                              {"WSGUARD_BRIDGE_DOWN_WARNING_SECONDS", "7"}});
        Child child({"--port", "0", "--bridge-down-warning-seconds=9"});
        const auto port = child.wait_listening_port(Millis{10000});
        INFO("stdout: " << child.out() << "\nstderr: " << child.err());
        REQUIRE(port);
        CHECK(bridge_warning_at(*port) == 9);
        REQUIRE(::kill(child.pid(), SIGTERM) == 0);
        CHECK(child.wait_exit(Millis{10000}) == std::optional<int>(0));
    }
}

TEST_CASE("chat_server refuses a bad environment value with exit code 2, naming the variable",
          "[cli]") {
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"WSGUARD_PORT", "abc"},
        {"WSGUARD_PORT", "70000"},
        {"WSGUARD_PORT", "-1"},
        {"WSGUARD_MAX_CONNECTIONS", "0"},
        {"WSGUARD_SLOW_CONSUMER", "maybe"},
        {"WSGUARD_LOG_LEVEL", "WARN"},
        {"WSGUARD_BRIDGE_DOWN_WARNING_SECONDS", "1.5"},
        {"WSGUARD_BRIDGE_DOWN_WARNING_SECONDS", "99999999999999999999"},
        {"WSGUARD_MAX_URI_BYTES", "16001"},
        {"WSGUARD_THREADS", " 2x"},
        // Refused after the parse, by the server (not by a flag's check).
        {"WSGUARD_BIND", "300.1.2.3"},
        {"WSGUARD_REDIS", "http://127.0.0.1:6379"},
    };
    for (const auto& [name, value] : bad) {
        INFO(name << "=" << value);
        ScopedEnv env(EnvVars{{name, value}});
        std::string out, err;
        // Flags for the rest, but never the one under test: the flag would win.
        std::vector<std::string> args;
        if (name != "WSGUARD_PORT") {
            args = {"--port", "0"};
        }
        if (name != "WSGUARD_BIND") {
            args.insert(args.end(), {"--bind", "127.0.0.1"});
        }
        CHECK(exit_code_of(args, &out, &err) == 2);
        INFO("stderr: " << err);
        CHECK(err.find(name) != std::string::npos);
        CHECK(out.find("listening") == std::string::npos);
    }
    // A bad flag beside a bad variable: the flag is what the message is about.
    ScopedEnv env(EnvVars{{"WSGUARD_THREADS", "0"}});
    std::string err;
    CHECK(exit_code_of({"--port", "abc"}, nullptr, &err) == 2);
    CHECK(err.find("--port") != std::string::npos);
    CHECK(err.find("environment variable") == std::string::npos);
}
