// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// A scripted fake Redis for the bridge's fault tests: a TCP listener on
// 127.0.0.1 (ephemeral port) served by its own thread with poll(). It parses
// RESP commands (arrays of bulk strings; inline commands too) and answers each
// connection according to the Behaviour it was given when accepted:
//
//   healthy      PING +PONG, AUTH +OK or -WRONGPASS, SUBSCRIBE/UNSUBSCRIBE the
//                real confirmations, PUBLISH :0 (recorded)
//   garbage      random bytes that are no RESP type
//   wrong_type   SUBSCRIBE answered +OK, :1 or a 2-element array (by
//                connection index), PUBLISH with a bulk string
//   truncated    half of the healthy reply, then the connection is closed
//   stall        reads every command, answers none
//   huge_bulk    "$2000000000" then a trickle of bytes
//   deep_array   "*1" nested 10,000 deep
//   huge_array   "*2000000000" then a trickle of ":1" elements
//
// By default a misbehaving connection still answers the handshake (AUTH,
// PING, CLIENT, HELLO, SELECT) correctly, so the bridge gets as far as
// "connected" and meets the fault on SUBSCRIBE or PUBLISH;
// Options::misbehave_on_handshake makes it misbehave from the first reply.
// Behaviours are chosen per accepted connection: schedule[i] for the i-th
// connection, `fallback` after the schedule (set_fallback() changes it, heal()
// also turns live connections that have not misbehaved yet healthy).
// push_message() sends a pub/sub "message" frame, any bytes, to subscribers.
//
// The destructor stops the thread and joins it; every wait is bounded.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace wsguard::test {

enum class Behaviour {
    healthy,
    garbage,
    wrong_type,
    truncated,
    stall,
    huge_bulk,
    deep_array,
    huge_array
};

inline const char* to_string(Behaviour b) noexcept {
    switch (b) {
        case Behaviour::healthy:
            return "healthy";
        case Behaviour::garbage:
            return "garbage";
        case Behaviour::wrong_type:
            return "wrong_type";
        case Behaviour::truncated:
            return "truncated";
        case Behaviour::stall:
            return "stall";
        case Behaviour::huge_bulk:
            return "huge_bulk";
        case Behaviour::deep_array:
            return "deep_array";
        case Behaviour::huge_array:
            return "huge_array";
    }
    return "unknown";
}

/// One RESP bulk string.
inline std::string resp_bulk(const std::string& s) {
    return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}

/// A pub/sub "message" push as Redis sends it to a subscriber.
inline std::string resp_message(const std::string& channel, const std::string& message) {
    return "*3\r\n" + resp_bulk("message") + resp_bulk(channel) + resp_bulk(message);
}

class FakeRedis {
public:
    struct Options {
        /// AUTH must name this password (and username, when set) before any
        /// other command is accepted; empty: no AUTH configured.
        std::string password;
        std::string username;
        /// Misbehave from the first reply (the handshake) instead of from the
        /// first SUBSCRIBE / UNSUBSCRIBE / PUBLISH.
        bool misbehave_on_handshake = false;
        /// Behaviour of the i-th accepted connection; `fallback` after these.
        std::vector<Behaviour> schedule;
        Behaviour fallback = Behaviour::healthy;
        /// Bytes a huge_bulk / huge_array connection trickles every 10 ms.
        std::size_t trickle_bytes = 4096;
    };

    struct Published {
        std::string channel;
        std::string message;
    };

    FakeRedis() : FakeRedis(Options{}) {}

    explicit FakeRedis(Options options) : options_(std::move(options)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (listen_fd_ < 0) {
            throw std::runtime_error("fake redis: socket() failed");
        }
        const int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof a;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(listen_fd_, 64) != 0 ||
            ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            ::close(listen_fd_);
            throw std::runtime_error("fake redis: cannot listen on 127.0.0.1");
        }
        port_ = ntohs(a.sin_port);
        if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
            ::close(listen_fd_);
            throw std::runtime_error("fake redis: pipe2() failed");
        }
        thread_ = std::thread([this] { run(); });
    }

    FakeRedis(const FakeRedis&) = delete;
    FakeRedis& operator=(const FakeRedis&) = delete;

    ~FakeRedis() {
        stop_.store(true);
        wake();
        thread_.join();
        for (auto& c : conns_) {
            ::close(c->fd);
        }
        ::close(listen_fd_);
        ::close(wake_[0]);
        ::close(wake_[1]);
    }

    std::uint16_t port() const noexcept { return port_; }

    /// redis://[credentials@]127.0.0.1:port
    std::string url(const std::string& credentials = {}) const {
        return "redis://" + (credentials.empty() ? std::string() : credentials + "@") +
               "127.0.0.1:" + std::to_string(port_);
    }

    /// The behaviour of connections accepted from now on (after the schedule).
    void set_fallback(Behaviour b) {
        std::lock_guard<std::mutex> lock(m_);
        options_.fallback = b;
    }

    /// Healthy from now on: new connections, and live ones that have not
    /// misbehaved yet. Connections already broken stay as they are.
    void heal() {
        std::lock_guard<std::mutex> lock(m_);
        options_.fallback = Behaviour::healthy;
        options_.schedule.clear();
        for (auto& c : conns_) {
            if (!c->misbehaved) {
                c->behaviour = Behaviour::healthy;
            }
        }
    }

    /// Connections accepted so far.
    std::size_t accepted() const {
        std::lock_guard<std::mutex> lock(m_);
        return accepted_;
    }

    /// Connections open now.
    std::size_t live() const {
        std::lock_guard<std::mutex> lock(m_);
        return conns_.size();
    }

    /// Commands parsed so far, all of them or those named `name` (upper case).
    std::size_t commands(const std::string& name = {}) const {
        std::lock_guard<std::mutex> lock(m_);
        if (name.empty()) {
            return commands_;
        }
        const auto it = by_name_.find(name);
        return it == by_name_.end() ? 0 : it->second;
    }

    /// Replies given outside the protocol (each misbehaving reply).
    std::size_t misbehaviours() const {
        std::lock_guard<std::mutex> lock(m_);
        return misbehaviours_;
    }

    /// Every PUBLISH a healthy connection received, in order.
    std::vector<Published> published() const {
        std::lock_guard<std::mutex> lock(m_);
        return published_;
    }

    /// Every argument of every AUTH seen (for tests on what the client sends).
    std::vector<std::vector<std::string>> auths() const {
        std::lock_guard<std::mutex> lock(m_);
        return auths_;
    }

    /// Live healthy connections subscribed to `channel`.
    std::size_t subscribers(const std::string& channel) const {
        std::lock_guard<std::mutex> lock(m_);
        std::size_t n = 0;
        for (const auto& c : conns_) {
            if (c->behaviour == Behaviour::healthy && c->channels.count(channel) != 0) {
                ++n;
            }
        }
        return n;
    }

    /// Waits at most `timeout` until a healthy connection follows `channel`.
    bool wait_subscribed(const std::string& channel, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (subscribers(channel) > 0) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return subscribers(channel) > 0;
    }

    /// Sends a "message" push of `message` (any bytes) on `channel` to every
    /// live healthy connection subscribed to it; with `any_subscriber`, to
    /// every healthy connection subscribed to anything (a message for a
    /// channel the client does not follow). Returns how many got it.
    std::size_t push_message(const std::string& channel, const std::string& message,
                             bool any_subscriber = false) {
        return push_raw(resp_message(channel, message), any_subscriber ? std::string() : channel);
    }

    /// Sends `bytes` as they are to live healthy subscribers of `channel`
    /// (of anything when `channel` is empty). Returns how many got them.
    std::size_t push_raw(const std::string& bytes, const std::string& channel = {}) {
        std::size_t n = 0;
        {
            std::lock_guard<std::mutex> lock(m_);
            for (auto& c : conns_) {
                if (c->behaviour != Behaviour::healthy || c->closing) {
                    continue;
                }
                if (channel.empty() ? c->channels.empty() : c->channels.count(channel) == 0) {
                    continue;
                }
                c->out += bytes;
                ++n;
            }
        }
        wake();
        return n;
    }

private:
    using Clock = std::chrono::steady_clock;

    struct Conn {
        int fd = -1;
        std::size_t index = 0;
        Behaviour behaviour = Behaviour::healthy;
        bool misbehaved = false;
        bool authed = false;
        bool closing = false;  // close once `out` is written
        bool trickling = false;
        std::string trickle_unit;
        std::size_t trickled = 0;
        Clock::time_point next_trickle{};
        std::string in, out;
        std::set<std::string> channels;
    };

    static std::string upper(std::string s) {
        for (auto& ch : s) {
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        }
        return s;
    }

    void wake() {
        const char b = 1;
        [[maybe_unused]] const auto r = ::write(wake_[1], &b, 1);
    }

    // One command off the front of c.in: true with argv filled, false when
    // incomplete. A malformed request closes the connection (c.closing).
    static bool take_command(Conn& c, std::vector<std::string>& argv) {
        argv.clear();
        std::string& in = c.in;
        if (in.empty()) {
            return false;
        }
        if (in[0] != '*') {  // inline command
            const auto eol = in.find("\r\n");
            if (eol == std::string::npos) {
                return false;
            }
            std::string line = in.substr(0, eol);
            in.erase(0, eol + 2);
            std::size_t i = 0;
            while (i < line.size()) {
                while (i < line.size() && line[i] == ' ') {
                    ++i;
                }
                const auto j = std::min(line.find(' ', i), line.size());
                if (j > i) {
                    argv.push_back(line.substr(i, j - i));
                }
                i = j;
            }
            return true;
        }
        std::size_t pos = 0;
        const auto read_line = [&](std::string& line) {
            const auto eol = in.find("\r\n", pos);
            if (eol == std::string::npos) {
                return false;
            }
            line = in.substr(pos, eol - pos);
            pos = eol + 2;
            return true;
        };
        std::string line;
        if (!read_line(line)) {
            return false;
        }
        const long n = std::atol(line.c_str() + 1);
        if (n < 0 || n > 1024 * 1024) {
            c.closing = true;
            return false;
        }
        std::vector<std::string> args;
        for (long k = 0; k < n; ++k) {
            if (!read_line(line)) {
                return false;
            }
            if (line.empty() || line[0] != '$') {
                c.closing = true;
                return false;
            }
            const long len = std::atol(line.c_str() + 1);
            if (len < 0 || len > 512L * 1024 * 1024) {
                c.closing = true;
                return false;
            }
            if (in.size() < pos + static_cast<std::size_t>(len) + 2) {
                return false;
            }
            args.push_back(in.substr(pos, static_cast<std::size_t>(len)));
            pos += static_cast<std::size_t>(len) + 2;
        }
        in.erase(0, pos);
        argv = std::move(args);
        return true;
    }

    std::string healthy_reply(Conn& c, const std::vector<std::string>& argv,
                              const std::string& cmd) {
        if (cmd == "AUTH") {
            auths_.push_back(argv);
            if (options_.password.empty()) {
                return "-ERR AUTH <password> called without any password configured for the "
                       "default user. Are you sure your configuration is correct?\r\n";
            }
            const bool ok =
                (argv.size() == 2 && options_.username.empty() && argv[1] == options_.password) ||
                (argv.size() == 3 && argv[2] == options_.password &&
                 argv[1] == (options_.username.empty() ? "default" : options_.username));
            if (!ok) {
                return "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
            }
            c.authed = true;
            return "+OK\r\n";
        }
        if (!options_.password.empty() && !c.authed && cmd != "QUIT") {
            return "-NOAUTH Authentication required.\r\n";
        }
        if (cmd == "PING") {
            if (!c.channels.empty()) {
                return "*2\r\n" + resp_bulk("pong") + resp_bulk(argv.size() > 1 ? argv[1] : "");
            }
            return argv.size() > 1 ? resp_bulk(argv[1]) : std::string("+PONG\r\n");
        }
        if (cmd == "SUBSCRIBE" || cmd == "UNSUBSCRIBE") {
            const bool sub = cmd == "SUBSCRIBE";
            const std::string kind = sub ? "subscribe" : "unsubscribe";
            std::vector<std::string> chans(argv.begin() + 1, argv.end());
            if (sub && chans.empty()) {
                return "-ERR wrong number of arguments for 'subscribe' command\r\n";
            }
            if (!sub && chans.empty()) {
                if (c.channels.empty()) {
                    return "*3\r\n" + resp_bulk(kind) + "$-1\r\n:0\r\n";
                }
                chans.assign(c.channels.begin(), c.channels.end());
            }
            std::string r;
            for (const auto& ch : chans) {
                if (sub) {
                    c.channels.insert(ch);
                } else {
                    c.channels.erase(ch);
                }
                r += "*3\r\n" + resp_bulk(kind) + resp_bulk(ch) + ":" +
                     std::to_string(c.channels.size()) + "\r\n";
            }
            return r;
        }
        if (cmd == "PUBLISH") {
            if (argv.size() != 3) {
                return "-ERR wrong number of arguments for 'publish' command\r\n";
            }
            published_.push_back({argv[1], argv[2]});
            return ":0\r\n";
        }
        if (cmd == "QUIT") {
            c.closing = true;
            return "+OK\r\n";
        }
        if (cmd == "CLIENT" || cmd == "SELECT") {
            return "+OK\r\n";
        }
        return "-ERR unknown command '" + (argv.empty() ? std::string() : argv[0]) + "'\r\n";
    }

    std::string garbage() {
        static const std::string resp_types = "+-:$*_,#!=(%~>|";
        std::uniform_int_distribution<int> byte(0, 255);
        std::string g;
        while (g.size() < 48) {
            const char ch = static_cast<char>(byte(rng_));
            if (g.empty() && resp_types.find(ch) != std::string::npos) {
                continue;
            }
            g.push_back(ch);
        }
        g += "\r\n";
        return g;
    }

    void start_trickle(Conn& c, std::string unit) {
        c.trickling = true;
        c.trickle_unit = std::move(unit);
        c.next_trickle = Clock::now();
    }

    std::string bad_reply(Conn& c, const std::vector<std::string>& argv, const std::string& cmd) {
        ++misbehaviours_;
        c.misbehaved = true;
        switch (c.behaviour) {
            case Behaviour::healthy:
                break;
            case Behaviour::garbage:
                return garbage();
            case Behaviour::wrong_type:
                if (cmd == "SUBSCRIBE" || cmd == "UNSUBSCRIBE") {
                    switch (c.index % 3) {
                        case 0:
                            return "+OK\r\n";
                        case 1:
                            return ":1\r\n";
                        default:
                            return "*2\r\n" +
                                   resp_bulk(upper(cmd) == "SUBSCRIBE" ? "subscribe"
                                                                       : "unsubscribe") +
                                   resp_bulk(argv.size() > 1 ? argv[1] : "x");
                    }
                }
                if (cmd == "PUBLISH") {
                    return resp_bulk("OK");
                }
                return ":1\r\n";
            case Behaviour::truncated: {
                std::string whole = healthy_reply(c, argv, cmd);
                c.closing = true;
                return whole.substr(0, std::max<std::size_t>(1, whole.size() / 2));
            }
            case Behaviour::stall:
                return {};
            case Behaviour::huge_bulk:
                if (!c.trickling) {
                    start_trickle(c, std::string(options_.trickle_bytes, 'x'));
                    return "$2000000000\r\n";
                }
                return {};
            case Behaviour::huge_array:
                if (!c.trickling) {
                    std::string unit;
                    while (unit.size() < options_.trickle_bytes) {
                        unit += ":1\r\n";
                    }
                    start_trickle(c, std::move(unit));
                    return "*2000000000\r\n";
                }
                return {};
            case Behaviour::deep_array: {
                std::string r;
                for (int i = 0; i < 10000; ++i) {
                    r += "*1\r\n";
                }
                return r + ":1\r\n";
            }
        }
        return {};
    }

    void handle(Conn& c) {
        std::vector<std::string> argv;
        while (!c.closing && take_command(c, argv)) {
            if (argv.empty()) {
                continue;
            }
            const std::string cmd = upper(argv[0]);
            ++commands_;
            ++by_name_[cmd];
            const bool handshake = cmd == "AUTH" || cmd == "PING" || cmd == "CLIENT" ||
                                   cmd == "HELLO" || cmd == "SELECT";
            const bool bad = c.behaviour != Behaviour::healthy &&
                             (c.misbehaved || options_.misbehave_on_handshake || !handshake);
            c.out += bad ? bad_reply(c, argv, cmd) : healthy_reply(c, argv, cmd);
        }
    }

    // Writes what it can of c.out; false when the connection is gone.
    static bool flush(Conn& c) {
        while (!c.out.empty()) {
            const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
            if (n > 0) {
                c.out.erase(0, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                return true;
            }
            return false;
        }
        return !c.closing;
    }

    void run() {
        std::vector<pollfd> fds;
        char buf[65536];
        while (!stop_.load()) {
            fds.clear();
            fds.push_back({wake_[0], POLLIN, 0});
            fds.push_back({listen_fd_, POLLIN, 0});
            {
                std::lock_guard<std::mutex> lock(m_);
                for (auto& c : conns_) {
                    fds.push_back(
                        {c->fd, static_cast<short>(POLLIN | (c->out.empty() ? 0 : POLLOUT)), 0});
                }
            }
            ::poll(fds.data(), fds.size(), 10);
            if (stop_.load()) {
                break;
            }
            if (fds[0].revents & POLLIN) {
                while (::read(wake_[0], buf, sizeof buf) > 0) {
                }
            }
            std::lock_guard<std::mutex> lock(m_);
            if (fds[1].revents & POLLIN) {
                for (;;) {
                    const int fd =
                        ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        break;
                    }
                    const int one = 1;
                    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    auto c = std::make_unique<Conn>();
                    c->fd = fd;
                    c->index = accepted_++;
                    c->behaviour = c->index < options_.schedule.size() ? options_.schedule[c->index]
                                                                       : options_.fallback;
                    conns_.push_back(std::move(c));
                }
            }
            const auto now = Clock::now();
            for (auto it = conns_.begin(); it != conns_.end();) {
                Conn& c = **it;
                bool alive = true;
                for (;;) {
                    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
                    if (n > 0) {
                        c.in.append(buf, static_cast<std::size_t>(n));
                        continue;
                    }
                    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                        alive = false;
                    }
                    break;
                }
                if (alive) {
                    handle(c);
                    if (c.trickling && now >= c.next_trickle && !c.closing &&
                        c.out.size() < (1u << 20)) {
                        c.out += c.trickle_unit;
                        c.trickled += c.trickle_unit.size();
                        c.next_trickle = now + std::chrono::milliseconds(10);
                    }
                    alive = flush(c);
                }
                if (!alive) {
                    ::close(c.fd);
                    it = conns_.erase(it);
                } else {
                    ++it;
                }
            }
        }
    }

    Options options_;
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1};
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    mutable std::mutex m_;
    std::vector<std::unique_ptr<Conn>> conns_;
    std::size_t accepted_ = 0;
    std::size_t commands_ = 0;
    std::size_t misbehaviours_ = 0;
    std::map<std::string, std::size_t> by_name_;
    std::vector<Published> published_;
    std::vector<std::vector<std::string>> auths_;
    std::mt19937 rng_{1234567};
    std::thread thread_;
};

}  // namespace wsguard::test
