// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// RedisLink: one TCP connection to Redis on an asio io_context, with nothing
// on the io thread that can block or abort. RedisBridge holds two (a
// subscribed connection cannot PUBLISH).
//
// Why not hiredis' async API: it resolves host names with a blocking
// getaddrinfo() on the calling thread, has no connect timeout (0.14), and
// asserts (aborting the process) on a subscribe reply of an unexpected shape.
// hiredis stays for what it does well: redisReader parses RESP and
// redisFormatCommandArgv encodes commands. Everything else is here:
//   - names resolve on a detached thread that touches only its own result, so
//     a resolver that never answers stalls nothing, and shutting down never
//     waits for it (asio's resolver would keep run() busy and join at exit);
//   - the attempt (resolve, TCP connect, AUTH, PING answered) has one deadline;
//   - every reply goes to the owner, which says whether it was expected; a
//     parse error, an unexpected reply or one larger than max_reply_bytes ends
//     the connection with a reason, never the process.
#pragma once

#include <wsguard/redis/redis_address.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/hiredis.h>

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace wsguard::wspp {

/// How a RedisLink ended.
enum class LinkFailure {
    connect,   ///< the attempt failed: resolution, TCP connect, AUTH or PING, or its deadline
    closed,    ///< an established connection was closed or reset
    protocol,  ///< Redis sent something outside the protocol or unexpected here
    timeout    ///< the owner gave up waiting for a reply (see RedisLink::fail())
};

namespace detail {

struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept {
        if (r != nullptr) {
            freeReplyObject(r);
        }
    }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

/// One name resolution on its own thread; the io thread polls `done`.
struct Resolution {
    std::mutex mutex;
    bool done = false;
    std::vector<asio::ip::tcp::endpoint> endpoints;
    std::string error;

    static std::shared_ptr<Resolution> start(const std::string& host, int port) {
        auto r = std::make_shared<Resolution>();
        std::thread([r, host, port] {
            addrinfo hints{};
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            addrinfo* found = nullptr;
            const int rc =
                ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
            std::vector<asio::ip::tcp::endpoint> endpoints;
            std::string error;
            if (rc != 0) {
                error = std::string("cannot resolve '") + host + "': " + ::gai_strerror(rc);
            } else {
                for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
                    asio::ip::tcp::endpoint e;
                    if (a->ai_addrlen <= e.capacity()) {
                        std::memcpy(e.data(), a->ai_addr, a->ai_addrlen);
                        e.resize(a->ai_addrlen);
                        endpoints.push_back(e);
                    }
                }
                ::freeaddrinfo(found);
            }
            std::lock_guard<std::mutex> lock(r->mutex);
            r->endpoints = std::move(endpoints);
            r->error = std::move(error);
            r->done = true;
        }).detach();
        return r;
    }
};

/// What one reply may allocate. hiredis builds a reply as it parses and
/// discards the bytes it parsed, so a bound on unparsed bytes alone would let
/// the finished elements of one unfinished reply grow without end.
struct ReplyBudget {
    std::size_t used = 0;
    std::size_t limit = 0;
    const char* refused = nullptr;  ///< why the reply was refused, if it was
};

/// hiredis' default reply functions, charging every object to the reader's
/// ReplyBudget (its privdata, which hiredis copies into each task): a reply
/// past the budget, an array inside an array (Redis never sends the bridge
/// one) or an array of more than max_elements is refused before it is
/// allocated, and the reader fails.
struct BoundedReplyFunctions {
    static constexpr int max_elements = 8;
    redisReplyObjectFunctions functions{};
    redisReplyObjectFunctions defaults{};

    static bool charge(const redisReadTask* task, std::size_t bytes) {
        auto* budget = static_cast<ReplyBudget*>(task->privdata);
        if (budget == nullptr) {
            return true;
        }
        if (budget->used + bytes > budget->limit) {
            budget->refused = "a reply larger than max_reply_bytes";
            return false;
        }
        budget->used += bytes;
        return true;
    }

    static void* create_array(const redisReadTask* task, int elements) {
        if (task->parent != nullptr || elements > max_elements) {
            if (auto* budget = static_cast<ReplyBudget*>(task->privdata)) {
                budget->refused = "a nested array, or an array of more than 8 elements";
            }
            return nullptr;
        }
        const auto n = static_cast<std::size_t>(elements < 0 ? 0 : elements);
        if (!charge(task, sizeof(redisReply) + n * sizeof(redisReply*))) {
            return nullptr;
        }
        return instance().defaults.createArray(task, elements);
    }

    static void* create_string(const redisReadTask* task, char* str, size_t len) {
        if (!charge(task, sizeof(redisReply) + len + 1)) {
            return nullptr;
        }
        return instance().defaults.createString(task, str, len);
    }

    static BoundedReplyFunctions& instance() {
        static BoundedReplyFunctions f = [] {
            BoundedReplyFunctions b;
            redisReader* r = redisReaderCreate();
            if (r == nullptr) {
                throw std::bad_alloc();
            }
            b.defaults = *r->fn;
            redisReaderFree(r);
            b.functions = b.defaults;
            b.functions.createArray = &create_array;
            b.functions.createString = &create_string;
            return b;
        }();
        return f;
    }
};

}  // namespace detail

/// One connection to Redis. Every member function, and every callback to the
/// owner, runs under the owner's lock (`lock`, shared with the handlers), so
/// the link may be driven from several io threads.
///
/// Thread safety: Shared objects: Safe under `lock` only.
template <class Lock>
class RedisLink : public std::enable_shared_from_this<RedisLink<Lock>> {
public:
    /// What the link tells its owner. Each is called under the lock.
    struct Owner {
        virtual void link_up(RedisLink& link) = 0;
        /// false: the reply was not expected; the link drops as a protocol error.
        virtual bool link_reply(RedisLink& link, const redisReply& reply) = 0;
        virtual void link_down(RedisLink& link, LinkFailure why, const std::string& error) = 0;

    protected:
        ~Owner() = default;
    };

    RedisLink(asio::io_context& io, std::shared_ptr<Lock> lock, Owner& owner,
              std::size_t max_reply_bytes)
        : io_(io),
          lock_(std::move(lock)),
          owner_(&owner),
          max_reply_bytes_(max_reply_bytes),
          deadline_(io),
          poll_(io) {}

    RedisLink(const RedisLink&) = delete;
    RedisLink& operator=(const RedisLink&) = delete;

    ~RedisLink() { release(); }

    /// Effect: ends any connection and starts a new attempt at `address`:
    /// link_up() when Redis answered PING (after AUTH when a password is set),
    /// or link_down(connect) when anything fails or `timeout` passes first.
    void connect(const RedisAddress& address, std::chrono::milliseconds timeout) {
        release();
        ++generation_;
        state_ = State::resolving;
        address_ = address;
        arm_deadline(timeout);
        std::error_code ec;
        const auto ip = asio::ip::make_address(address.host, ec);
        if (!ec) {
            connect_to({asio::ip::tcp::endpoint(ip, static_cast<std::uint16_t>(address.port))});
            return;
        }
        // A resolution still running from an earlier attempt (a resolver that
        // never answers) is waited on again, not duplicated: one thread at most.
        const std::string key = address.host + ":" + std::to_string(address.port);
        if (!resolution_ || resolution_key_ != key) {
            try {
                resolution_ = detail::Resolution::start(address.host, address.port);
            } catch (const std::exception& e) {  // no thread to be had (EAGAIN)
                fail(LinkFailure::connect,
                     "cannot resolve '" + address.host + "': no resolver thread: " + e.what());
                return;
            }
            resolution_key_ = key;
        }
        poll_resolution();
    }

    /// Effect: sends one command (arguments as binary-safe strings) after the
    /// ones before it. Returns the bytes it adds to the output.
    std::size_t send(std::initializer_list<std::string_view> args) {
        std::array<const char*, 8> argv{};
        std::array<std::size_t, 8> lens{};
        std::size_t n = 0;
        for (std::string_view a : args) {
            argv[n] = a.data();
            lens[n] = a.size();
            ++n;
        }
        char* command = nullptr;
        const int len =
            redisFormatCommandArgv(&command, static_cast<int>(n), argv.data(), lens.data());
        if (len < 0 || command == nullptr) {
            throw std::bad_alloc();
        }
        out_.append(command, static_cast<std::size_t>(len));
        redisFreeCommand(command);
        write_more();
        return static_cast<std::size_t>(len);
    }

    /// Effect: ends the connection with `why` and `error`, as if Redis had
    /// failed: the owner gets link_down (a reply that never came, say).
    void fail(LinkFailure why, const std::string& error) {
        if (state_ == State::idle) {
            return;
        }
        release();
        owner_->link_down(*this, why, error);
    }

    /// Effect: ends the connection without telling the owner. Idempotent.
    void close() noexcept { release(); }

    bool up() const noexcept { return state_ == State::up; }
    bool idle() const noexcept { return state_ == State::idle; }

    /// Bytes this link holds: output not yet written and input not yet parsed.
    std::size_t buffered_bytes() const noexcept {
        return out_.size() + (writing_ ? writing_->size() : 0) +
               (reader_ != nullptr ? reader_->len - reader_->pos : 0);
    }

private:
    enum class State { idle, resolving, connecting, handshaking, up };

    template <class F>
    auto guarded(F f) {
        return [self = this->shared_from_this(), generation = generation_,
                f = std::move(f)](auto&&... args) mutable {
            std::lock_guard<Lock> lock(*self->lock_);
            if (self->generation_ == generation && self->state_ != State::idle) {
                f(std::forward<decltype(args)>(args)...);
            }
        };
    }

    void arm_deadline(std::chrono::milliseconds timeout) {
        deadline_.expires_after(timeout);
        deadline_.async_wait(guarded([this, timeout](const std::error_code& ec) {
            if (ec || state_ == State::up) {
                return;
            }
            const char* phase = state_ == State::resolving    ? "resolving"
                                : state_ == State::connecting ? "connecting to"
                                                              : "waiting for PING from";
            fail(LinkFailure::connect, std::string("timed out after ") +
                                           std::to_string(timeout.count()) + " ms " + phase + " " +
                                           where());
        }));
    }

    void poll_resolution() {
        std::vector<asio::ip::tcp::endpoint> endpoints;
        std::string error;
        bool done = false;
        {
            std::lock_guard<std::mutex> lock(resolution_->mutex);
            done = resolution_->done;
            if (done) {
                endpoints = std::move(resolution_->endpoints);
                error = std::move(resolution_->error);
            }
        }
        if (done) {
            resolution_.reset();
            if (endpoints.empty() && error.empty()) {
                error = "'" + address_.host + "' has no address";
            }
            if (endpoints.empty()) {
                fail(LinkFailure::connect, error);
            } else {
                connect_to(std::move(endpoints));
            }
            return;
        }
        poll_.expires_after(std::chrono::milliseconds(10));
        poll_.async_wait(guarded([this](const std::error_code& ec) {
            if (!ec && state_ == State::resolving) {
                poll_resolution();
            }
        }));
    }

    // One endpoint at a time, each step a guarded handler: asio's range
    // connect would close and reopen the socket between endpoints outside
    // the lock, racing release() on another io thread.
    void connect_to(std::vector<asio::ip::tcp::endpoint> endpoints) {
        state_ = State::connecting;
        endpoints_ = std::move(endpoints);
        try_endpoint(0, std::string());
    }

    void try_endpoint(std::size_t i, std::string last_error) {
        if (i == endpoints_.size()) {
            fail(LinkFailure::connect, "cannot connect to " + where() + ": " + last_error);
            return;
        }
        socket_ = std::make_shared<asio::ip::tcp::socket>(io_);
        // Each handler holds the socket and its buffer: they may complete
        // after release() let them go.
        socket_->async_connect(endpoints_[i],
                               guarded([this, i, socket = socket_](const std::error_code& ec) {
                                   if (ec) {
                                       std::error_code ignored;
                                       socket_->close(ignored);
                                       try_endpoint(i + 1, ec.message());
                                       return;
                                   }
                                   start_session();
                               }));
    }

    void start_session() {
        std::error_code ignored;
        socket_->set_option(asio::ip::tcp::no_delay(true), ignored);
        socket_->set_option(asio::socket_base::keep_alive(true), ignored);
        reader_ =
            redisReaderCreateWithFunctions(&detail::BoundedReplyFunctions::instance().functions);
        if (reader_ == nullptr) {
            throw std::bad_alloc();
        }
        budget_ = detail::ReplyBudget{0, max_reply_bytes_, nullptr};
        reader_->privdata = &budget_;
        input_ = std::make_shared<std::array<char, 16384>>();
        state_ = State::handshaking;
        awaiting_auth_ = !address_.password.empty();
        if (awaiting_auth_) {
            if (address_.username.empty()) {
                send({"AUTH", address_.password});
            } else {
                send({"AUTH", address_.username, address_.password});
            }
        }
        send({"PING"});
        read_more();
    }

    void read_more() {
        // The buffer travels with the handler: a read of a released
        // connection may complete after the next connection started.
        socket_->async_read_some(
            asio::buffer(*input_), guarded([this, socket = socket_, input = input_](
                                               const std::error_code& ec, std::size_t n) {
                if (ec) {
                    fail(state_ == State::up ? LinkFailure::closed : LinkFailure::connect,
                         ec == asio::error::eof
                             ? "Redis at " + where() + " closed the connection"
                             : "connection to " + where() + " lost: " + ec.message());
                    return;
                }
                if (consume(n)) {
                    read_more();
                }
            }));
    }

    // Parses what arrived and hands each reply on; false once the link ended.
    bool consume(std::size_t n) {
        if (redisReaderFeed(reader_, input_->data(), n) != REDIS_OK) {
            fail(LinkFailure::protocol, "out of memory reading from " + where());
            return false;
        }
        const auto generation = generation_;
        for (;;) {
            void* raw = nullptr;
            if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
                const std::string what = budget_.refused != nullptr   ? budget_.refused
                                         : reader_->errstr[0] != '\0' ? reader_->errstr
                                                                      : "unparsable reply";
                fail(LinkFailure::protocol, "protocol error from " + where() + ": " + what);
                return false;
            }
            if (raw == nullptr) {
                break;
            }
            budget_.used = 0;  // a whole reply: the next one starts afresh
            detail::ReplyPtr reply(static_cast<redisReply*>(raw));
            if (!handle(*reply) || generation_ != generation || state_ == State::idle) {
                return false;
            }
        }
        const std::size_t pending = reader_->len - reader_->pos;
        const long long announced = announced_bulk_bytes();
        if (pending > max_reply_bytes_ ||
            (announced >= 0 &&
             static_cast<unsigned long long>(announced) + budget_.used > max_reply_bytes_)) {
            fail(LinkFailure::protocol,
                 "a reply from " + where() + " exceeds " + std::to_string(max_reply_bytes_) +
                     " bytes" +
                     (announced >= 0 ? " (it announces " + std::to_string(announced) + ")" : ""));
            return false;
        }
        return true;
    }

    // The length of the bulk string the reader is waiting for, when its header
    // ("$<n>\r\n", the '$' already consumed or not) is what the unparsed
    // input starts with; -1 otherwise. Lets a reply announcing more than the
    // budget be refused on sight instead of after max_reply_bytes arrived.
    long long announced_bulk_bytes() const noexcept {
        const char* p = reader_->buf + reader_->pos;
        const char* end = reader_->buf + reader_->len;
        if (p < end && *p == '$') {
            ++p;
        }
        long long n = 0;
        int digits = 0;
        for (; p < end && *p >= '0' && *p <= '9' && digits < 19; ++p, ++digits) {
            n = n * 10 + (*p - '0');
        }
        // A whole line: an integer reply would have been parsed already.
        return digits > 0 && end - p >= 2 && p[0] == '\r' && p[1] == '\n' ? n : -1;
    }

    bool handle(const redisReply& reply) {
        if (state_ == State::up) {
            if (!owner_->link_reply(*this, reply)) {
                fail(LinkFailure::protocol,
                     "unexpected reply from " + where() + ": " + describe(reply));
                return false;
            }
            return true;
        }
        if (awaiting_auth_) {
            awaiting_auth_ = false;
            if (reply.type == REDIS_REPLY_STATUS &&
                std::string_view(reply.str, reply.len) == "OK") {
                return true;
            }
            fail(LinkFailure::connect, "Redis at " + where() + " refused AUTH: " + describe(reply));
            return false;
        }
        if (reply.type == REDIS_REPLY_STATUS && std::string_view(reply.str, reply.len) == "PONG") {
            state_ = State::up;
            std::error_code ignored;
            deadline_.cancel(ignored);
            owner_->link_up(*this);
            return true;
        }
        fail(reply.type == REDIS_REPLY_ERROR ? LinkFailure::connect : LinkFailure::protocol,
             "Redis at " + where() + " answered PING with " + describe(reply));
        return false;
    }

    // One async_write_some at a time, each continuation a guarded handler:
    // asio's composed async_write would issue its next send outside the lock.
    void write_more() {
        if (writing_ || out_.empty() || !socket_ || state_ == State::idle) {
            return;
        }
        writing_ = std::make_shared<std::string>();
        writing_->swap(out_);
        written_ = 0;
        write_some();
    }

    void write_some() {
        socket_->async_write_some(
            asio::buffer(writing_->data() + written_, writing_->size() - written_),
            guarded([this, socket = socket_, buffer = writing_](const std::error_code& ec,
                                                                std::size_t n) {
                if (ec) {
                    fail(state_ == State::up ? LinkFailure::closed : LinkFailure::connect,
                         "writing to " + where() + " failed: " + ec.message());
                    return;
                }
                written_ += n;
                if (written_ < writing_->size()) {
                    write_some();
                    return;
                }
                writing_.reset();
                write_more();
            }));
    }

    // The connection's resources go; handlers still queued see a new
    // generation (or idle) and do nothing. Buffers a pending write or read
    // uses stay alive: the handlers hold this link.
    void release() noexcept {
        if (state_ == State::idle) {
            return;
        }
        state_ = State::idle;
        ++generation_;
        std::error_code ignored;
        deadline_.cancel(ignored);
        poll_.cancel(ignored);
        if (socket_) {
            socket_->close(ignored);
            socket_.reset();
        }
        if (reader_ != nullptr) {
            redisReaderFree(reader_);
            reader_ = nullptr;
        }
        out_.clear();
        out_.shrink_to_fit();
        writing_.reset();  // a write still in progress holds its own buffer
        input_.reset();
        awaiting_auth_ = false;
    }

    std::string where() const { return host_port(address_); }

    // A reply, shortened, for an error message: type and the first bytes.
    static std::string describe(const redisReply& r) {
        const auto text = [&r](const char* kind) {
            std::string s(r.str != nullptr ? r.str : "", std::min<std::size_t>(r.len, 60));
            for (char& c : s) {
                if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
                    c = '?';
                }
            }
            return std::string(kind) + " '" + s + (r.len > 60 ? "...'" : "'");
        };
        switch (r.type) {
            case REDIS_REPLY_STRING:
                return text("string");
            case REDIS_REPLY_STATUS:
                return text("status");
            case REDIS_REPLY_ERROR:
                return text("error");
            case REDIS_REPLY_INTEGER:
                return "integer " + std::to_string(r.integer);
            case REDIS_REPLY_NIL:
                return "nil";
            case REDIS_REPLY_ARRAY:
                return "array of " + std::to_string(r.elements);
            default:
                return "reply of type " + std::to_string(r.type);
        }
    }

    asio::io_context& io_;
    std::shared_ptr<Lock> lock_;
    Owner* owner_;
    const std::size_t max_reply_bytes_;
    asio::steady_timer deadline_;
    asio::steady_timer poll_;
    std::shared_ptr<asio::ip::tcp::socket> socket_;
    redisReader* reader_ = nullptr;
    detail::ReplyBudget budget_;
    std::vector<asio::ip::tcp::endpoint> endpoints_;
    std::size_t written_ = 0;
    std::shared_ptr<std::array<char, 16384>> input_;
    std::string out_;
    std::shared_ptr<std::string> writing_;
    RedisAddress address_;
    std::shared_ptr<detail::Resolution> resolution_;
    std::string resolution_key_;
    std::uint64_t generation_ = 0;
    State state_ = State::idle;
    bool awaiting_auth_ = false;
};

}  // namespace wsguard::wspp
