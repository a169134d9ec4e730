// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// ServerGuard: composes wsguard's primitives around a websocketpp server so
// that it cannot leak in the four classic ways:
//  - listeners: the server's events are Emitters; user logic attaches with
//    ScopedListeners and never touches websocketpp's single-slot handlers;
//  - connection maps: per-connection state lives in one ConnectionRegistry
//    keyed by ConnectionId, holding weak connection_hdls only (never a
//    connection_ptr), removed on close and on fail, swept when idle or dead;
//  - buffers: websocketpp's send queue has no bound, so every send checks
//    get_buffered_amount() against max_buffered_bytes and applies the
//    slow-consumer policy (drop and count, or close with 1008);
//  - captured references: handlers capture `this` only, and the guard's
//    destructor uninstalls them.
//
// The guard owns fan-out: a room broadcast reaches this node's members and,
// through the guard's RoomBridge (in-process by default, Redis with
// wsguard/redis/redis_bridge.hpp), every other node's, so no caller can
// forget the other nodes (Beast chat-multi's shared_state: sessions only call it).
// Its vocabulary (options, results, stats) is in guard_types.hpp, and what it
// does to make an idle connection cheap in connection_memory.hpp.
//
// Thread model. Lock = NullMutex (ServerGuard): one io thread runs the
// endpoint, and every call on the guard (send, broadcast, tick, stats, ...)
// is made from that thread, e.g. from handlers or from timers on the same
// io_context. Lock = std::mutex (SyncServerGuard): several threads run one
// io_context (websocketpp's asio config gives each connection a strand); the
// guard's own tables (registry, rooms, emitters, id map) are locked and may
// be used from any thread, and a broadcast from one connection's handler
// sends to members served by other threads. Chosen over one loop per thread
// with sockets handed out because rooms span every connection: per-loop
// tables would need cross-loop fan-out for each room message. The reference
// server runs one thread by default (--threads N for more); tests/test_threads
// runs four under ThreadSanitizer. websocketpp itself reads a connection's
// state and buffered amount without its locks in places (tests/tsan.supp
// lists them); the guard never relies on those reads for memory safety:
// send() and close() recheck the state under websocketpp's lock.
#pragma once

#include <wsguard/connection_registry.hpp>
#include <wsguard/memory.hpp>
#include <wsguard/null_mutex.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/scoped_listener.hpp>
#include <wsguard/websocketpp/admission.hpp>
#include <wsguard/websocketpp/connection_memory.hpp>
#include <wsguard/websocketpp/guard_types.hpp>
#include <wsguard/websocketpp/room_bridge.hpp>
#include <wsguard/websocketpp/utf8.hpp>

#include <websocketpp/close.hpp>
#include <websocketpp/frame.hpp>
#include <websocketpp/processors/hybi13.hpp>
#include <websocketpp/server.hpp>
#include <websocketpp/utf8_validator.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace wsguard::wspp {

namespace detail {

template <class T, class = void>
struct HasStopListening : std::false_type {};
template <class T>
struct HasStopListening<
    T, std::void_t<decltype(std::declval<T&>().stop_listening(std::declval<std::error_code&>()))>>
    : std::true_type {};

/// Per-connection state owned by the registry: nothing but what the guard
/// needs; the handle itself is the registry's (weak) Handle.
struct GuardConnectionState {};

}  // namespace detail

/// Composes ConnectionRegistry, RoomIndex and Emitters around a
/// websocketpp::server<Config> (asio, asio TLS or iostream transport).
///
/// Installs the open, close, fail, message, pong and validate handlers of the
/// server it is given (the http handler stays the caller's), enforces every
/// limit in GuardOptions, and exposes the events as Emitters. It never stores
/// a connection_ptr: after a connection closes its handle expires.
///
/// The validate handler is the guard's admission (admission.hpp): calling
/// server.set_validate_handler() after constructing the guard replaces it and
/// silently turns off every handshake check, the per-IP count included. Put
/// your own check in set_admission_hook(), which the guard chains.
///
/// Thread safety: Distinct objects: Safe. Shared objects: Unsafe with
/// NullMutex (use from the io thread only); Safe with std::mutex. See the
/// header's comment for the thread model.
template <class Config, class Lock = NullMutex, class Clock = std::chrono::steady_clock>
class ServerGuard {
public:
    using server_type = ::websocketpp::server<Config>;
    using connection_type = typename server_type::connection_type;
    using connection_ptr = typename server_type::connection_ptr;
    using message_ptr = typename server_type::message_ptr;
    using Registry = ConnectionRegistry<::websocketpp::connection_hdl, detail::GuardConnectionState,
                                        Lock, Clock>;
    using Rooms = RoomIndex<ConnectionId, std::string, Lock>;
    template <class... Args>
    using Event = BasicEmitter<Lock, Args...>;

    /// A connection opened and was admitted.
    Event<ConnectionId> on_open;
    /// A message arrived on an admitted connection (after the idle clock was reset).
    Event<ConnectionId, message_ptr> on_message;
    /// An admitted connection closed; its rooms were left and its state freed
    /// before this fires.
    Event<ConnectionId, CloseInfo> on_close;
    /// A room got its first member on this server (after the join). With the
    /// next event, tells a scale-out bridge which rooms this node must follow.
    Event<std::string> on_room_created;
    /// A room lost its last member on this server, by leave() or by the close
    /// of its last member (after the leave, before on_close).
    Event<std::string> on_room_emptied;

    /// Effect: installs the guard's handlers on `server` and applies
    /// max_message_bytes, open_handshake_timeout and max_http_body_bytes to it. The server must
    /// outlive the guard.
    /// Fails: std::invalid_argument on an invalid option (see validated()).
    /// Thread safety: call before the server runs.
    /// Exceptions: std::invalid_argument, std::bad_alloc.
    explicit ServerGuard(server_type& server, GuardOptions options = {}, Clock clock = Clock{})
        : server_(server),
          options_(validated(options)),
          registry_(RegistryOptions{options_.max_connections}, clock),
          rooms_(options_.rooms),
          uris_(options_.max_shared_uris),
          admission_(AdmissionPolicy{options_.max_uri_bytes, options_.allowed_origins},
                     options_.max_connections_per_ip),
          msg_manager_(std::make_shared<typename Config::con_msg_manager_type>()),
          framer_(false, true, msg_manager_, rng_) {
        server_.set_max_message_size(options_.max_message_bytes);
        server_.set_open_handshake_timeout(
            static_cast<long>(options_.open_handshake_timeout.count()));
        server_.set_max_http_body_size(options_.max_http_body_bytes);
        server_.set_validate_handler([this](::websocketpp::connection_hdl h) {
            std::error_code ec;
            const connection_ptr con = server_.get_con_from_hdl(h, ec);
            return con && admission_.admit(*con, h, shutting_down_);
        });
        server_.set_open_handler([this](::websocketpp::connection_hdl h) { handle_open(h); });
        server_.set_close_handler(
            [this](::websocketpp::connection_hdl h) { handle_close(h, false); });
        server_.set_fail_handler(
            [this](::websocketpp::connection_hdl h) { handle_close(h, true); });
        server_.set_message_handler(
            [this](::websocketpp::connection_hdl h, message_ptr m) { handle_message(h, m); });
        server_.set_pong_handler(
            [this](::websocketpp::connection_hdl h, std::string) { handle_pong(h); });
    }

    ServerGuard(const ServerGuard&) = delete;
    ServerGuard& operator=(const ServerGuard&) = delete;

    /// Effect: uninstalls the handlers so no callback reaches a dead guard.
    ~ServerGuard() {
        server_.set_validate_handler(nullptr);
        server_.set_open_handler(nullptr);
        server_.set_close_handler(nullptr);
        server_.set_fail_handler(nullptr);
        server_.set_message_handler(nullptr);
        server_.set_pong_handler(nullptr);
    }

    /// Effect: `hook` runs on every handshake the guard's own checks admit
    /// (admission.hpp); a refusal it returns answers the handshake with its
    /// status (outside 400..599: 403) and reason, counted as user_hook. A
    /// hook that throws refuses the handshake with 500, counted as user_hook
    /// too (websocketpp would not catch it: it would stop the io loop). An
    /// empty hook removes it.
    /// This, not server.set_validate_handler(), is where user checks go.
    /// Never fails. Thread safety: as the class; a handshake already being
    /// checked may still run the previous hook.
    /// Exceptions: std::bad_alloc.
    void set_admission_hook(AdmissionHook hook) { admission_.set_hook(std::move(hook)); }

    /// Effect: frames `payload` once as a server data frame; the result can be
    /// sent to any number of connections without framing it again.
    /// Fails: returns nullptr when websocketpp refuses to frame it: a text
    /// payload that is not UTF-8 (RFC 6455 8.1), or a control opcode.
    /// Thread safety: as the class.
    /// Exceptions: std::bad_alloc.
    message_ptr prepare(std::string_view payload, ::websocketpp::frame::opcode::value op =
                                                      ::websocketpp::frame::opcode::text) {
        std::lock_guard<Lock> lock(framer_mutex_);
        message_ptr in = msg_manager_->get_message(op, payload.size());
        in->append_payload(payload.data(), payload.size());
        message_ptr out = msg_manager_->get_message();
        if (framer_.prepare_data_frame(in, out)) {
            return nullptr;  // `out` is half-built: its opcode was never set
        }
        return out;
    }

    /// Effect: queues `payload` on connection `id` unless that would exceed
    /// max_buffered_bytes, in which case the slow-consumer policy applies.
    /// Fails: returns dropped, closed_slow_consumer, not_connected or failed.
    /// Thread safety: as the class. Exceptions: std::bad_alloc.
    SendStatus send(ConnectionId id, std::string_view payload,
                    ::websocketpp::frame::opcode::value op = ::websocketpp::frame::opcode::text) {
        auto handle = handle_for_send(id);
        if (!handle) {
            return count(SendStatus::not_connected);
        }
        std::error_code ec;
        connection_ptr con = server_.get_con_from_hdl(*handle, ec);
        if (ec || !con) {
            return count(SendStatus::not_connected);
        }
        if (SendStatus s = admit(*con, payload.size()); s != SendStatus::sent) {
            return s;
        }
        return count_send(con->send(payload.data(), payload.size(), op), payload.size());
    }

    /// Effect: as send(), with a message from prepare() (no framing per call).
    /// Fails: failed for a null message (what prepare() returns on refusal).
    SendStatus send_prepared(ConnectionId id, const message_ptr& prepared) {
        if (!prepared) {
            return count(SendStatus::failed);
        }
        auto handle = handle_for_send(id);
        if (!handle) {
            return count(SendStatus::not_connected);
        }
        return send_to(*handle, prepared);
    }

    /// Effect: sends `payload` to every member of `room` except `except` (0:
    /// nobody excluded): this node's members (see broadcast_local()) and, for
    /// a text message, every other node's through the bridge (see set_bridge()).
    /// Fails: never; per-recipient outcomes are in the result and in stats(),
    /// the bridge's in result.bridge and in its own stats.
    /// Thread safety: as the class. Exceptions: std::bad_alloc.
    BroadcastResult broadcast(
        const std::string& room, std::string_view payload, ConnectionId except = 0,
        ::websocketpp::frame::opcode::value op = ::websocketpp::frame::opcode::text) {
        BroadcastResult result = broadcast_local(room, payload, except, op);
        if (result.recipients == 0 && !result.invalid_payload && !framable(payload, op)) {
            result.invalid_payload = true;  // what broadcast_local() found for its members
        }
        if (result.invalid_payload) {
            return result;  // no node gets a message this one could not frame
        }
        if (op == ::websocketpp::frame::opcode::text) {
            // The other nodes' members, whether or not this node has any.
            result.bridge = bridge_.load(std::memory_order_acquire)->publish(room, payload);
        }
        return result;
    }

    /// Effect: frames `payload` once and sends it to this node's members of
    /// `room` except `except` (0: nobody excluded), each under the
    /// slow-consumer policy. Nothing goes to the bridge: this is how a bridge
    /// delivers what other nodes published.
    /// Fails: never; per-recipient outcomes are in the result and in stats().
    /// Thread safety: as the class; recipients are snapshotted under the
    /// rooms' lock and sent to outside it. Exceptions: std::bad_alloc.
    BroadcastResult broadcast_local(
        const std::string& room, std::string_view payload, ConnectionId except = 0,
        ::websocketpp::frame::opcode::value op = ::websocketpp::frame::opcode::text) {
        BroadcastResult result;
        std::vector<ConnectionId> recipients = take_scratch();
        rooms_.for_each_member(room, [&](const ConnectionId& m) {
            if (m != except) {
                recipients.push_back(m);
            }
        });
        result.recipients = recipients.size();
        const message_ptr prepared = recipients.empty() ? nullptr : prepare(payload, op);
        if (!recipients.empty() && !prepared) {
            result.invalid_payload = true;
            send_failed_.fetch_add(recipients.size(), std::memory_order_relaxed);
        } else if (!recipients.empty()) {
            for (ConnectionId m : recipients) {
                auto handle = handle_for_send(m);
                const SendStatus s =
                    handle ? send_to(*handle, prepared) : count(SendStatus::not_connected);
                switch (s) {
                    case SendStatus::sent:
                        ++result.sent;
                        break;
                    case SendStatus::dropped:
                        ++result.dropped;
                        break;
                    case SendStatus::closed_slow_consumer:
                        ++result.closed;
                        break;
                    default:
                        ++result.not_connected;
                        break;
                }
            }
        }
        give_back_scratch(std::move(recipients));
        return result;
    }

    /// Effect: room broadcasts also go to `bridge` from now on (the rooms'
    /// members on other nodes); nullptr: back to the in-process default, this
    /// node only. A bridge delivers what other nodes publish through
    /// broadcast_local() (broadcast_to() does).
    /// Lifetime: a broadcast already running may still call the previous
    /// bridge, so destroy a bridge only once no thread can be broadcasting
    /// (after the io threads stopped, or on the one io thread of a NullMutex
    /// guard), and never before it is replaced here.
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    void set_bridge(RoomBridge* bridge) noexcept {
        bridge_.store(bridge != nullptr ? bridge : &local_bridge_, std::memory_order_release);
    }

    /// Effect: back to the in-process default if `bridge` is the one room
    /// broadcasts go to; a bridge set since then stays. For a bridge's own
    /// destructor. Never fails. Thread safety: as the class. Exceptions: nothrow.
    void detach_bridge(RoomBridge* bridge) noexcept {
        bridge_.compare_exchange_strong(bridge, &local_bridge_, std::memory_order_acq_rel);
    }

    /// Effect: the bridge room broadcasts go to (the in-process default
    /// unless set_bridge() named another).
    RoomBridge& bridge() const noexcept { return *bridge_.load(std::memory_order_acquire); }

    /// Effect: whether connection `id` is a member of `room` on this node.
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    bool is_member(ConnectionId id, const std::string& room) const {
        return rooms_.contains(id, room);
    }

    /// Effect: this node's members of `room` (0 when it does not exist here).
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    std::size_t member_count(const std::string& room) const { return rooms_.member_count(room); }

    /// Effect: adds connection `id` to `room` (RoomIndex::join's limits apply).
    /// Fails: a refused JoinResult; std::nullopt when `id` is not connected,
    /// also when its close ran during the join (the membership is undone).
    /// Thread safety: as the class. Exceptions: std::bad_alloc.
    std::optional<JoinResult> join(ConnectionId id, const std::string& room) {
        if (!registry_.contains(id)) {
            return std::nullopt;
        }
        JoinResult result = rooms_.join(id, room);
        if (result && result.room_created) {
            on_room_created.emit(room);
        }
        // A close on another io thread between the check above and the join
        // may have left its rooms already: undo, or the membership outlives the
        // connection. A close after this check leaves the room itself.
        if (result.status == JoinStatus::joined && !registry_.contains(id)) {
            leave(id, room);
            return std::nullopt;
        }
        return result;
    }

    /// Effect: removes connection `id` from `room`; the room is erased when it
    /// empties (and on_room_emptied fires).
    LeaveResult leave(ConnectionId id, const std::string& room) {
        const LeaveResult result = rooms_.leave(id, room);
        if (result.room_now_empty) {
            on_room_emptied.emit(room);
        }
        return result;
    }

    /// Effect: counts `con`, a socket just accepted and not started, as a
    /// handshake in progress until it opens or ends (max_pending_handshakes).
    /// Fails: false, counted in refused_pending, when that many are in
    /// progress already: the caller closes the socket unread (Acceptor does).
    /// Uses the connection's termination handler, which websocketpp 0.8.2's
    /// endpoint leaves unset. Thread safety: as the class. Exceptions: std::bad_alloc.
    bool note_accepted(connection_type& con) {
        if (pending_.fetch_add(1, std::memory_order_relaxed) >= options_.max_pending_handshakes) {
            pending_.fetch_sub(1, std::memory_order_relaxed);
            refused_pending_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        ids_.mark_pending(con);
        // Every connection ends here, whether it opened, failed or served HTTP.
        con.set_termination_handler([this](connection_ptr c) { end_pending(*c); });
        return true;
    }

    /// Effect: starts the close handshake of connection `id`.
    /// Fails: false if the id is unknown or already closing.
    bool close(ConnectionId id, ::websocketpp::close::status::value code,
               const std::string& reason) {
        auto handle = registry_.handle(id);
        return handle && close_handle(*handle, code, reason);
    }

    /// Effect: one round of housekeeping at the clock's now: closes idle
    /// connections (1000 "Idle timeout"), terminates connections whose ping
    /// went unanswered, pings the connections due, and trims the heap after a
    /// wave of closes. Call it every second or so (AsioTicker does on asio).
    /// Fails: never. Thread safety: as the class. Exceptions: std::bad_alloc.
    void tick() {
        using std::chrono::duration_cast;
        using duration = typename Clock::duration;
        if (options_.idle_timeout.count() > 0) {
            for (auto& entry :
                 registry_.sweep_idle(duration_cast<duration>(options_.idle_timeout))) {
                closed_idle_.fetch_add(1, std::memory_order_relaxed);
                close_handle(entry.handle, ::websocketpp::close::status::normal, "Idle timeout");
            }
        }
        if (options_.ping_interval.count() > 0) {
            const auto pong_timeout =
                options_.pong_timeout.count() > 0 ? options_.pong_timeout : options_.ping_interval;
            for (auto& entry : registry_.sweep_dead(duration_cast<duration>(pong_timeout))) {
                terminated_dead_.fetch_add(1, std::memory_order_relaxed);
                terminate_handle(entry.handle);
            }
            for (auto& due :
                 registry_.mark_pings_due(duration_cast<duration>(options_.ping_interval))) {
                std::error_code ec;
                connection_ptr con = server_.get_con_from_hdl(due.second, ec);
                if (!ec && con) {
                    con->ping(std::string(), ec);
                    if (!ec) {
                        pings_sent_.fetch_add(1, std::memory_order_relaxed);
                    }
                }
            }
        }
        maybe_trim();
    }

    /// Effect: graceful shutdown: stops accepting (asio transports), refuses
    /// new handshakes, and closes every connection with 1001 "Server shutting
    /// down". The io loop ends once the close handshakes finish (or time out).
    /// Fails: never. Thread safety: as the class; idempotent.
    void shutdown() {
        shutting_down_ = true;
        if constexpr (detail::HasStopListening<server_type>::value) {
            std::error_code ec;
            server_.stop_listening(ec);  // not listening (tests, or twice) is fine
        }
        std::vector<::websocketpp::connection_hdl> handles;
        registry_.for_each([&](ConnectionId, const ::websocketpp::connection_hdl& h,
                               detail::GuardConnectionState&) { handles.push_back(h); });
        for (auto& h : handles) {
            if (close_handle(h, ::websocketpp::close::status::going_away, "Server shutting down")) {
                closed_shutdown_.fetch_add(1, std::memory_order_relaxed);
            }
        }
    }

    bool shutting_down() const noexcept { return shutting_down_; }

    /// Effect: the id the guard gave the connection behind `hdl`, if admitted.
    std::optional<ConnectionId> id_of(const ::websocketpp::connection_hdl& hdl) const {
        return ids_.find(hdl);
    }

    /// Effect: a snapshot of every count, O(1) in the number of connections:
    /// queued_bytes is the last queued_bytes_scan()'s (0 before the first).
    GuardStats stats() const {
        GuardStats s;
        s.registry = registry_.stats();
        s.room_index = rooms_.stats();
        s.connections = s.registry.size;
        s.rooms = s.room_index.rooms;
        s.memberships = s.room_index.memberships;
        s.listeners = on_open.listener_count() + on_message.listener_count() +
                      on_close.listener_count() + on_room_created.listener_count() +
                      on_room_emptied.listener_count();
        s.queued_bytes = queued_bytes_.load(std::memory_order_relaxed);
        s.dropped_messages = dropped_.load(std::memory_order_relaxed);
        s.rejected_connections = rejected_.load(std::memory_order_relaxed);
        s.pending_handshakes = pending_.load(std::memory_order_relaxed);
        s.refused_pending = refused_pending_.load(std::memory_order_relaxed);
        s.closed_slow_consumer = closed_slow_.load(std::memory_order_relaxed);
        s.closed_idle = closed_idle_.load(std::memory_order_relaxed);
        s.terminated_dead = terminated_dead_.load(std::memory_order_relaxed);
        s.closed_oversized = closed_oversized_.load(std::memory_order_relaxed);
        s.closed_shutdown = closed_shutdown_.load(std::memory_order_relaxed);
        s.opened = opened_.load(std::memory_order_relaxed);
        s.closed = closed_.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < close_code_slots; ++i) {
            s.closes_by_code[i] = closes_by_code_[i].load(std::memory_order_relaxed);
        }
        s.failed = failed_.load(std::memory_order_relaxed);
        s.messages_in = messages_in_.load(std::memory_order_relaxed);
        s.messages_out = messages_out_.load(std::memory_order_relaxed);
        s.bytes_in = bytes_in_.load(std::memory_order_relaxed);
        s.bytes_out = bytes_out_.load(std::memory_order_relaxed);
        s.pings_sent = pings_sent_.load(std::memory_order_relaxed);
        s.pongs_received = pongs_.load(std::memory_order_relaxed);
        s.memory_trims = trims_.load(std::memory_order_relaxed);
        s.send_not_connected = not_connected_.load(std::memory_order_relaxed);
        s.send_failed = send_failed_.load(std::memory_order_relaxed);
        s.shared_uris = uris_.size();
        s.shutting_down = shutting_down_;
        s.refused = admission_.refused();
        s.peer_addresses = admission_.peer_addresses();
        return s;
    }

    /// Effect: the bytes queued in every connection's send queue now (the sum
    /// of get_buffered_amount()), also kept for stats(). O(connections):
    /// websocketpp reports no per-message write completion to count
    /// incrementally, so call it at a sample interval, not per request.
    /// Never fails. Thread safety: as the class. Exceptions: nothrow.
    std::size_t queued_bytes_scan() {
        std::size_t total = 0;
        registry_.for_each([&](ConnectionId, const ::websocketpp::connection_hdl& h,
                               const detail::GuardConnectionState&) {
            std::error_code ec;
            connection_ptr con = server_.get_con_from_hdl(h, ec);
            if (!ec && con) {
                total += con->get_buffered_amount();
            }
        });
        queued_bytes_.store(total, std::memory_order_relaxed);
        return total;
    }

    const GuardOptions& options() const noexcept { return options_; }
    const Registry& registry() const noexcept { return registry_; }
    const Rooms& rooms() const noexcept { return rooms_; }
    server_type& server() noexcept { return server_; }

private:
    void handle_open(::websocketpp::connection_hdl hdl) {
        std::error_code ec;
        const connection_ptr con = server_.get_con_from_hdl(hdl, ec);
        if (con) {
            end_pending(*con);
            // Before the connection is registered: no other thread knows it yet.
            uris_.share(*con);
        }
        AddResult added = registry_.try_add(hdl);
        if (!added) {
            rejected_.fetch_add(1, std::memory_order_relaxed);
            close_handle(hdl, ::websocketpp::close::status::try_again_later,
                         "Server at capacity, try again later");
            return;
        }
        if (con) {
            ids_.store(*con, added.id);
        }
        opened_.fetch_add(1, std::memory_order_relaxed);
        on_open.emit(added.id);
        if (con && options_.release_handshake_headers) {
            release_handshake_headers(*con);
        }
    }

    void end_pending(connection_type& con) {
        if (ids_.take_pending(con)) {
            pending_.fetch_sub(1, std::memory_order_relaxed);
        }
    }

    void handle_close(::websocketpp::connection_hdl hdl, bool failed) {
        std::error_code ec;
        connection_ptr con = server_.get_con_from_hdl(hdl, ec);
        const ConnectionId id = con ? ids_.take(*con) : 0;
        if (con) {
            admission_.end(*con, failed);  // its per-IP count; websocketpp's own refusals
        }
        if (failed) {
            failed_.fetch_add(1, std::memory_order_relaxed);
        }
        if (id == 0) {
            return;  // refused at capacity, or a handshake that never opened
        }
        closed_.fetch_add(1, std::memory_order_relaxed);
        registry_.remove(id);  // idempotent: sweeps may have removed it already
        if (on_room_emptied.listener_count() == 0) {
            rooms_.leave_all(id);
        } else {
            // Someone follows emptied rooms: leave one by one to learn which emptied.
            for (const std::string& room : rooms_.rooms_of(id)) {
                leave(id, room);
            }
        }
        CloseInfo info;
        info.failed = failed;
        // Without the connection nothing tells the code: counted as 1006.
        std::uint16_t code = ::websocketpp::close::status::abnormal_close;
        if (con) {
            info.local_code = con->get_local_close_code();
            info.remote_code = con->get_remote_close_code();
            info.reason = con->get_remote_close_reason();
            if (info.reason.empty()) {
                info.reason = con->get_local_close_reason();
            }
            if (info.local_code == ::websocketpp::close::status::message_too_big) {
                closed_oversized_.fetch_add(1, std::memory_order_relaxed);
            }
            code = info.local_code;
        }
        closes_by_code_[close_code_slot(code)].fetch_add(1, std::memory_order_relaxed);
        closes_since_trim_.fetch_add(1, std::memory_order_relaxed);
        on_close.emit(id, info);
    }

    void handle_message(::websocketpp::connection_hdl hdl, const message_ptr& msg) {
        const auto id = id_of(hdl);
        if (!id) {
            return;
        }
        // RFC 6455 8.1: invalid UTF-8 fails the connection with 1007.
        if (msg->get_opcode() == ::websocketpp::frame::opcode::text &&
            !detail::ends_on_code_point(msg->get_payload())) {
            close_handle(hdl, ::websocketpp::close::status::invalid_payload, "Invalid UTF-8");
            return;
        }
        // A connection being closed (swept, refused) no longer delivers messages.
        if (!registry_.touch(*id)) {
            return;
        }
        messages_in_.fetch_add(1, std::memory_order_relaxed);
        bytes_in_.fetch_add(msg->get_payload().size(), std::memory_order_relaxed);
        on_message.emit(*id, msg);
    }

    void handle_pong(::websocketpp::connection_hdl hdl) {
        if (const auto id = id_of(hdl)) {
            if (registry_.mark_pong(*id)) {
                pongs_.fetch_add(1, std::memory_order_relaxed);
            }
        }
    }

    /// The bound check shared by every send: strict, except that a lone
    /// message always goes to an empty queue (else one larger than the bound
    /// could never be sent; max_message_bytes bounds it anyway).
    SendStatus admit(typename server_type::connection_type& con, std::size_t size) {
        if (!known_open(con)) {
            return count(SendStatus::not_connected);
        }
        // websocketpp reads this counter without its write lock; with several
        // io threads the value may be one write stale (see tests/tsan.supp).
        const std::size_t buffered = con.get_buffered_amount();
        if (buffered == 0 || buffered + size <= options_.max_buffered_bytes) {
            return SendStatus::sent;
        }
        if (options_.slow_consumer == SlowConsumerPolicy::drop) {
            return count(SendStatus::dropped);
        }
        std::error_code ec;
        con.close(::websocketpp::close::status::policy_violation, "Slow consumer", ec);
        return ec ? count(SendStatus::not_connected) : count(SendStatus::closed_slow_consumer);
    }

    // What prepare() accepts, without framing: data opcodes, text in UTF-8.
    static bool framable(std::string_view payload, ::websocketpp::frame::opcode::value op) {
        if (::websocketpp::frame::opcode::is_control(op)) {
            return false;
        }
        if (op != ::websocketpp::frame::opcode::text) {
            return true;
        }
        ::websocketpp::utf8_validator::validator utf8;
        return utf8.decode(payload.begin(), payload.end()) && utf8.complete();
    }

    /// False only if the connection is certainly not open. websocketpp's
    /// get_state() reads the state without the lock that close() and
    /// terminate() take, so with several io threads the check is left to
    /// send() and close(), which take it and fail with invalid_state.
    static bool known_open(typename server_type::connection_type& con) {
        if constexpr (std::is_same_v<Lock, NullMutex>) {
            return con.get_state() == ::websocketpp::session::state::open;
        } else {
            (void)con;
            return true;
        }
    }

    SendStatus send_to(const ::websocketpp::connection_hdl& hdl, const message_ptr& prepared) {
        std::error_code ec;
        connection_ptr con = server_.get_con_from_hdl(hdl, ec);
        if (ec || !con) {
            return count(SendStatus::not_connected);
        }
        const std::size_t size = prepared->get_payload().size();
        if (SendStatus s = admit(*con, size); s != SendStatus::sent) {
            return s;
        }
        return count_send(con->send(prepared), size);
    }

    SendStatus count(SendStatus s) noexcept {
        switch (s) {
            case SendStatus::dropped:
                dropped_.fetch_add(1, std::memory_order_relaxed);
                break;
            case SendStatus::closed_slow_consumer:
                closed_slow_.fetch_add(1, std::memory_order_relaxed);
                break;
            case SendStatus::not_connected:
                not_connected_.fetch_add(1, std::memory_order_relaxed);
                break;
            case SendStatus::failed:
                send_failed_.fetch_add(1, std::memory_order_relaxed);
                break;
            case SendStatus::sent:
                break;
        }
        return s;
    }

    // What websocketpp's send() returned: invalid_state means the connection
    // closed meanwhile (see known_open()), anything else is a failure.
    SendStatus count_send(const std::error_code& ec, std::size_t bytes) noexcept {
        if (!ec) {
            messages_out_.fetch_add(1, std::memory_order_relaxed);
            bytes_out_.fetch_add(bytes, std::memory_order_relaxed);
            return SendStatus::sent;
        }
        const bool closed =
            ec == ::websocketpp::error::make_error_code(::websocketpp::error::invalid_state);
        return count(closed ? SendStatus::not_connected : SendStatus::failed);
    }

    bool close_handle(const ::websocketpp::connection_hdl& hdl,
                      ::websocketpp::close::status::value code, const std::string& reason) {
        std::error_code ec;
        connection_ptr con = server_.get_con_from_hdl(hdl, ec);
        if (ec || !con || !known_open(*con)) {
            return false;
        }
        con->close(code, reason, ec);
        return !ec;
    }

    // The registry lookup of a send; with sends_count_as_activity it restarts
    // the idle clock in the same lookup (a broadcast does one per recipient).
    std::optional<::websocketpp::connection_hdl> handle_for_send(ConnectionId id) {
        return options_.sends_count_as_activity ? registry_.touch_handle(id) : registry_.handle(id);
    }

    void terminate_handle(const ::websocketpp::connection_hdl& hdl) {
        std::error_code ec;
        connection_ptr con = server_.get_con_from_hdl(hdl, ec);
        if (!ec && con) {
            // The peer stopped answering: no close handshake, it would only time out.
            con->terminate(std::make_error_code(std::errc::timed_out));
        }
    }

    // Trim once a wave of closes has ended (no close since the previous
    // tick): trimming mid-wave would hand back pages the rest of the wave is
    // about to free, and miss the bulk of them.
    void maybe_trim() {
        const std::size_t closes = closes_since_trim_.load(std::memory_order_relaxed);
        const bool wave_over =
            closes == closes_at_last_tick_.exchange(closes, std::memory_order_relaxed);
        if (options_.trim_after_closes == 0 || closes < options_.trim_after_closes || !wave_over) {
            return;
        }
        closes_since_trim_.fetch_sub(closes, std::memory_order_relaxed);
        closes_at_last_tick_.store(0, std::memory_order_relaxed);
        if (release_free_memory()) {
            trims_.fetch_add(1, std::memory_order_relaxed);
        }
    }

    // One io thread reuses one recipient buffer: no allocation per broadcast
    // once it has grown to the largest room. With a real lock each call takes
    // its own (two broadcasts may run at once).
    std::vector<ConnectionId> take_scratch() {
        if constexpr (std::is_same_v<Lock, NullMutex>) {
            std::vector<ConnectionId> v = std::move(scratch_);
            v.clear();
            return v;
        } else {
            return {};
        }
    }
    void give_back_scratch(std::vector<ConnectionId>&& v) {
        if constexpr (std::is_same_v<Lock, NullMutex>) {
            scratch_ = std::move(v);
        }
    }

    server_type& server_;
    const GuardOptions options_;
    Registry registry_;
    Rooms rooms_;

    ConnectionIds<connection_type, Lock> ids_;
    SharedUris<Lock> uris_;
    HandshakeAdmission<Lock> admission_;
    LocalBridge local_bridge_;
    std::atomic<RoomBridge*> bridge_{&local_bridge_};

    typename Config::rng_type rng_;
    typename Config::con_msg_manager_type::ptr msg_manager_;
    ::websocketpp::processor::hybi13<Config> framer_;  // frames broadcast payloads once
    Lock framer_mutex_;
    std::vector<ConnectionId> scratch_;

    std::atomic<bool> shutting_down_{false};
    std::atomic<std::uint64_t> dropped_{0}, rejected_{0}, closed_slow_{0}, closed_idle_{0},
        terminated_dead_{0}, closed_oversized_{0}, closed_shutdown_{0}, opened_{0}, closed_{0},
        failed_{0}, messages_in_{0}, messages_out_{0}, bytes_in_{0}, bytes_out_{0}, pings_sent_{0},
        pongs_{0}, trims_{0}, not_connected_{0}, send_failed_{0};
    std::array<std::atomic<std::uint64_t>, close_code_slots> closes_by_code_{};
    std::atomic<std::size_t> pending_{0};  // note_accepted() until open or end
    std::atomic<std::uint64_t> refused_pending_{0};
    std::atomic<std::size_t> closes_since_trim_{0};
    std::atomic<std::size_t> queued_bytes_{0};         // the last queued_bytes_scan()
    std::atomic<std::size_t> closes_at_last_tick_{0};  // tick() may run on any io thread
};

/// A guard whose tables may be shared by several io threads.
template <class Config, class Clock = std::chrono::steady_clock>
using SyncServerGuard = ServerGuard<Config, std::mutex, Clock>;

}  // namespace wsguard::wspp
