// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Redis for the scale-out tests: a private redis-server on a free loopback
// port (no persistence), started and stopped (or killed) by pid, and a few
// synchronous queries through hiredis' blocking API. Every wait is bounded.
#pragma once

#include <hiredis/hiredis.h>

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace wsguard::test {

#ifndef WSGUARD_REDIS_SERVER_PATH
#define WSGUARD_REDIS_SERVER_PATH ""
#endif
#ifndef WSGUARD_REQUIRE_REDIS
#define WSGUARD_REQUIRE_REDIS 0
#endif

/// The redis-server binary found at configure time ("" if none).
inline std::string redis_server_path() {
    return WSGUARD_REDIS_SERVER_PATH;
}

/// True when the tests must fail rather than skip without redis-server (CI).
constexpr bool redis_required() {
    return WSGUARD_REQUIRE_REDIS != 0;
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to 0, then closed).
inline std::uint16_t free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    std::uint16_t port = 0;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        ::close(fd);
    }
    return port;
}

/// A synchronous hiredis connection for the test's own queries.
class RedisQuery {
public:
    explicit RedisQuery(std::uint16_t port) {
        timeval tv{1, 0};
        c_ = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c_ != nullptr && c_->err) {
            redisFree(c_);
            c_ = nullptr;
        }
        if (c_ != nullptr) {
            redisSetTimeout(c_, tv);
        }
    }
    ~RedisQuery() {
        if (c_ != nullptr) {
            redisFree(c_);
        }
    }
    RedisQuery(const RedisQuery&) = delete;
    RedisQuery& operator=(const RedisQuery&) = delete;

    bool ok() const noexcept { return c_ != nullptr; }

    /// The string elements of an array reply to `argv` (nullopt on any error).
    std::optional<std::vector<std::string>> strings(const std::vector<std::string>& argv) {
        redisReply* r = command(argv);
        if (r == nullptr) {
            return std::nullopt;
        }
        std::optional<std::vector<std::string>> out;
        if (r->type == REDIS_REPLY_ARRAY) {
            out.emplace();
            for (std::size_t i = 0; i < r->elements; ++i) {
                const redisReply* e = r->element[i];
                if (e->type == REDIS_REPLY_STRING) {
                    out->emplace_back(e->str, e->len);
                } else if (e->type == REDIS_REPLY_INTEGER) {
                    out->push_back(std::to_string(e->integer));
                }
            }
        }
        freeReplyObject(r);
        return out;
    }

    /// PUBSUB CHANNELS <pattern>.
    std::optional<std::vector<std::string>> channels(const std::string& pattern) {
        return strings({"PUBSUB", "CHANNELS", pattern});
    }

    /// PUBSUB NUMSUB <channel>: subscribers of one channel (-1 on error).
    long long numsub(const std::string& channel) {
        auto r = strings({"PUBSUB", "NUMSUB", channel});
        return r && r->size() == 2 ? std::atoll((*r)[1].c_str()) : -1;
    }

    bool ping() {
        redisReply* r = command({"PING"});
        const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
        if (r != nullptr) {
            freeReplyObject(r);
        }
        return ok;
    }

private:
    redisReply* command(const std::vector<std::string>& argv) {
        if (c_ == nullptr) {
            return nullptr;
        }
        std::vector<const char*> args;
        std::vector<std::size_t> lens;
        for (const auto& a : argv) {
            args.push_back(a.data());
            lens.push_back(a.size());
        }
        return static_cast<redisReply*>(
            redisCommandArgv(c_, static_cast<int>(args.size()), args.data(), lens.data()));
    }

    redisContext* c_ = nullptr;
};

/// A private redis-server: loopback only, no RDB, no AOF. Started by start(),
/// stopped by pid (SIGTERM, or SIGKILL with kill()) and reaped; the destructor
/// stops it if it still runs.
class RedisProcess {
public:
    explicit RedisProcess(std::uint16_t port = free_loopback_port()) : port_(port) {}
    ~RedisProcess() { stop(); }
    RedisProcess(const RedisProcess&) = delete;
    RedisProcess& operator=(const RedisProcess&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
    bool running() const noexcept { return pid_ > 0; }

    /// Spawns redis-server and waits (at most `timeout`) until it answers PING.
    bool start(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
        const std::string path = redis_server_path();
        if (path.empty() || running()) {
            return false;
        }
        const std::string port = std::to_string(port_);
        std::vector<std::string> argv = {path,        "--port",      port,       "--bind",
                                         "127.0.0.1", "--save",      "",         "--appendonly",
                                         "no",        "--daemonize", "no",       "--loglevel",
                                         "warning",   "--logfile",   "/dev/null"};
        std::vector<char*> args;
        for (auto& a : argv) {
            args.push_back(a.data());
        }
        args.push_back(nullptr);
        pid_t pid = 0;
        if (::posix_spawn(&pid, path.c_str(), nullptr, nullptr, args.data(), environ) != 0) {
            return false;
        }
        pid_ = pid;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (RedisQuery(port_).ping()) {
                return true;
            }
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;  // exited (port taken?)
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        stop();
        return false;
    }

    /// SIGKILL: Redis vanishes at once, as in a crash.
    void kill() { end(SIGKILL); }

    /// SIGTERM and reap.
    void stop() { end(SIGTERM); }

private:
    void end(int sig) {
        if (pid_ <= 0) {
            return;
        }
        ::kill(pid_, sig);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    std::uint16_t port_;
    pid_t pid_ = -1;
};

}  // namespace wsguard::test
