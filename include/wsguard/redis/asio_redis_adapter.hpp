// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// hiredis ships event-loop adapters for libevent, libuv and others but not for
// asio; AsioRedisAdapter is that adapter: it watches hiredis' socket with an
// asio::posix::stream_descriptor and calls redisAsyncHandleRead/Write when it
// is ready. Apart from redis_bridge.hpp because it is the one part that knows
// hiredis' event hooks, and nothing of rooms.
#pragma once

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <memory>
#include <mutex>
#include <system_error>

namespace wsguard::wspp::detail {

/// hiredis' event hooks on an asio io_context: one per redisAsyncContext. It
/// waits for read/write readiness of hiredis' socket with async_wait (asio does
/// no I/O on it) and lets hiredis do the I/O. Every hook and handler runs under
/// the owner's lock; after hiredis' cleanup hook the adapter is inert and its
/// pending waits complete as aborted. Handlers hold the adapter (shared) and
/// the lock (shared), never the owner.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Safe under `lock`.
template <class Lock>
class AsioRedisAdapter : public std::enable_shared_from_this<AsioRedisAdapter<Lock>> {
public:
    AsioRedisAdapter(asio::io_context& io, redisAsyncContext* ac, std::shared_ptr<Lock> lock)
        : ac_(ac), descriptor_(io, ac->c.fd), lock_(std::move(lock)) {}

    /// Effect: installs the hooks on `ac` (before its connect callback is set,
    /// which asks for the first write readiness). Call under `lock`.
    static std::shared_ptr<AsioRedisAdapter> attach(asio::io_context& io, redisAsyncContext* ac,
                                                    std::shared_ptr<Lock> lock) {
        auto adapter = std::make_shared<AsioRedisAdapter>(io, ac, std::move(lock));
        ac->ev.data = adapter.get();
        ac->ev.addRead = [](void* p) { static_cast<AsioRedisAdapter*>(p)->want(true, true); };
        ac->ev.delRead = [](void* p) { static_cast<AsioRedisAdapter*>(p)->want(true, false); };
        ac->ev.addWrite = [](void* p) { static_cast<AsioRedisAdapter*>(p)->want(false, true); };
        ac->ev.delWrite = [](void* p) { static_cast<AsioRedisAdapter*>(p)->want(false, false); };
        ac->ev.cleanup = [](void* p) { static_cast<AsioRedisAdapter*>(p)->detach(); };
        return adapter;
    }

private:
    void want(bool read, bool on) {
        (read ? want_read_ : want_write_) = on;
        arm();
    }

    // hiredis frees the context right after this: stop watching, but leave
    // the fd open (hiredis closes it).
    void detach() {
        ac_ = nullptr;
        want_read_ = want_write_ = false;
        descriptor_.release();  // cancels pending waits
    }

    void arm() {
        if (ac_ == nullptr) {
            return;
        }
        if (want_read_ && !read_armed_) {
            read_armed_ = true;
            wait(true);
        }
        if (want_write_ && !write_armed_) {
            write_armed_ = true;
            wait(false);
        }
    }

    void wait(bool read) {
        auto self = this->shared_from_this();
        descriptor_.async_wait(read ? asio::posix::stream_descriptor::wait_read
                                    : asio::posix::stream_descriptor::wait_write,
                               [self, read](const std::error_code& ec) { self->ready(read, ec); });
    }

    void ready(bool read, const std::error_code& ec) {
        std::lock_guard<Lock> guard(*lock_);
        (read ? read_armed_ : write_armed_) = false;
        if (ec == asio::error::operation_aborted || ac_ == nullptr) {
            return;
        }
        // Any other error: let hiredis find it on the socket and disconnect.
        if (read ? want_read_ : want_write_) {
            read ? redisAsyncHandleRead(ac_) : redisAsyncHandleWrite(ac_);
        }
        arm();  // hiredis may have freed the context (ac_ is null then) or changed its wishes
    }

    redisAsyncContext* ac_;
    asio::posix::stream_descriptor descriptor_;
    std::shared_ptr<Lock> lock_;
    bool want_read_ = false, want_write_ = false;
    bool read_armed_ = false, write_armed_ = false;
};

}  // namespace wsguard::wspp::detail
