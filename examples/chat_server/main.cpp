// wsguard reference chat server: the protocol of DESIGN.md over websocketpp,
// with every limit of ServerGuard on the command line.
// SPDX-License-Identifier: MIT
#include "build_info.hpp"
#include "chat_server.hpp"

#include <CLI/CLI.hpp>

#include <asio/signal_set.hpp>

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace {

template <class Lock, chat::Transport T>
int serve(const chat::ServerOptions& options) {
    chat::ChatServer<Lock, WSGUARD_CHAT_READ_BUFFER_BYTES, T> server(options);
    asio::signal_set signals(server.endpoint().get_io_service(), SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int signo) {
        if (!ec) {
            std::printf("chat_server: signal %d, closing every connection with 1001\n", signo);
            std::fflush(stdout);
            server.request_shutdown();
        }
    });
    // URLs that work from this machine: the bound address (in brackets for
    // IPv6), loopback for an any-address bind.
    const std::string at = server.url_host() + ":" + std::to_string(server.port());
    const auto local = server.local_endpoint();
    const char* ws = server.ws_scheme();
    const char* http = server.http_scheme();
    std::printf(
        "chat_server: listening on %s port %u\n"
        "  WebSocket  %s://%s/\n"
        "  dashboard  %s://%s/\n"
        "  stats      %s://%s/stats\n"
        "  metrics    %s://%s/metrics\n"
        "  probes     %s://%s/healthz, %s://%s/readyz (no token needed)\n"
        "  (admin endpoints: %s)\n",
        local.address().to_string().c_str(), unsigned(local.port()), ws, at.c_str(), http,
        at.c_str(), http, at.c_str(), http, at.c_str(), http, at.c_str(), http, at.c_str(),
        options.admin_token.empty() ? "loopback peers only"
                                    : "\"Authorization: Bearer <--admin-token>\" only");
    std::fflush(stdout);
    server.run();
    std::printf("chat_server: stopped\n");
    return 0;
}

// --max-connections against the descriptor limit (RLIMIT_NOFILE), raised
// toward the hard limit first. Past the limit, accept fails with EMFILE and
// the server holds fewer connections than it claims, so: a value given on the
// command line that cannot fit refuses to start (exit 2), as any other refused
// value: the operator asked for that many and should learn at deploy time, not
// at the peak; the default is lowered with a warning, so that the server runs
// out of the box where the limit is small. Both messages name both numbers.
// Returns the exit code when the server must not start.
std::optional<int> fit_max_connections(std::size_t& max_connections, bool given) {
    const auto budget = wsguard::wspp::fit_descriptor_limit(max_connections);
    if (!budget.known || budget.connections >= max_connections) {
        return std::nullopt;
    }
    const std::string hard =
        budget.hard == SIZE_MAX ? std::string("unlimited") : std::to_string(budget.hard);
    if (given || budget.connections == 0) {
        std::fprintf(stderr,
                     "chat_server: --max-connections %zu needs %zu file descriptors (%zu more "
                     "for the listening socket, logs, Redis, ...), but the limit (RLIMIT_NOFILE) "
                     "is %zu (hard limit %s): raise it (ulimit -n) or use --max-connections %zu "
                     "or less\n",
                     max_connections, max_connections + wsguard::wspp::default_descriptor_reserve,
                     wsguard::wspp::default_descriptor_reserve, budget.soft, hard.c_str(),
                     budget.connections);
        return 2;
    }
    std::fprintf(stderr,
                 "chat_server: warning: max connections lowered from %zu (the default) to %zu: "
                 "the file descriptor limit (RLIMIT_NOFILE) is %zu (hard limit %s) and %zu are "
                 "kept for the listening socket, logs, Redis, ...\n",
                 max_connections, budget.connections, budget.soft, hard.c_str(),
                 wsguard::wspp::default_descriptor_reserve);
    max_connections = budget.connections;
    return std::nullopt;
}

/// What the flags write to, before main() turns it into ServerOptions.
struct CommandLine {
    chat::ServerOptions options;
    long long idle_ms = options.guard.idle_timeout.count();
    long long ping_ms = options.guard.ping_interval.count();
    long long sample_ms = options.sample_interval.count();
    long long bridge_down_s =
        std::chrono::duration_cast<std::chrono::seconds>(options.bridge_down_warning).count();
    std::string slow = "drop";
    std::string log_level = wsguard::wspp::to_string(options.log_level);
};

/// Effect: the environment variable that sets flag `name` ("--max-rooms" or
/// "max-rooms"): WSGUARD_ + the name upper-cased, '-' as '_'
/// (WSGUARD_MAX_ROOMS). The one place a flag gets its variable.
std::string env_name_of(std::string name) {
    name.erase(0, name.find_first_not_of('-'));
    std::string env = "WSGUARD_";
    for (const char ch : name) {
        env += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    return env;
}

/// Effect: every option of `app` with a long name (but --help and
/// --version) reads env_name_of(its name) when the command line does not
/// give it: a flag added to add_flags() gets its variable without a list to
/// keep up. With `only`, just the option of that long name does (to find
/// which variable a refused value came from).
void attach_env_names(CLI::App& app, const std::string& only = {}) {
    for (CLI::Option* opt : app.get_options()) {
        if (opt == app.get_help_ptr() || opt == app.get_version_ptr() ||
            opt->get_lnames().empty()) {
            continue;
        }
        const std::string& name = opt->get_lnames().front();
        if (only.empty() || only == name) {
            opt->envname(env_name_of(name));
        }
    }
}

/// Effect: whether the command line `argv` names flag `name` ("--port" or
/// "--port=..."), as opposed to the environment.
bool on_command_line(int argc, char** argv, const std::string& name) {
    const std::string flag = "--" + name;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == flag || arg.rfind(flag + "=", 0) == 0) {
            return true;
        }
    }
    return false;
}

/// Effect: the flags of chat_server on `app`, writing to `c`.
void add_flags(CLI::App& app, CommandLine& c) {
    app.option_defaults()->always_capture_default();
    app.set_version_flag("--version", chat::version_line());
    app.add_option("--port", c.options.port, "TCP port for WebSocket and HTTP (0: any free port)");
    app.add_option("--bind", c.options.bind_address,
                   "Address or host name to listen on (::1, localhost, 0.0.0.0)");
    app.add_option("--admin-token", c.options.admin_token,
                   "/, /stats, /metrics, /history answer only \"Authorization: Bearer <token>\" "
                   "(without it: only loopback peers); WSGUARD_ADMIN_TOKEN keeps it out of ps");
    app.add_option("--log-level", c.log_level,
                   "error, warn, info or debug; a peer's own events (vanished, refused) are debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
    app.add_option("--max-connections", c.options.guard.max_connections,
                   "Connections beyond this are closed with 1013")
        ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
    app.add_option("--idle-timeout-ms", c.idle_ms,
                   "Close with 1000 after this long without a message (0: never)")
        ->check(CLI::Range(0LL, 86400000LL * 30));
    app.add_option("--ping-interval-ms", c.ping_ms,
                   "Ping every connection this often; a missed pong terminates it (0: never)")
        ->check(CLI::Range(0LL, 86400000LL));
    app.add_option("--max-payload-bytes", c.options.guard.max_message_bytes,
                   "Largest incoming message; bigger closes with 1009")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
    app.add_option("--max-buffered-bytes", c.options.guard.max_buffered_bytes,
                   "Per-connection bound on queued outgoing bytes")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 34));
    app.add_option("--slow-consumer", c.slow,
                   "Over the bound: drop the message (and count it) or close with 1008")
        ->check(CLI::IsMember({"drop", "close"}));
    app.add_option("--max-connections-per-ip", c.options.guard.max_connections_per_ip,
                   "Connections per peer address; past it the handshake gets 503 (0: no limit)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{10000000}));
    app.add_option("--allowed-origins", c.options.guard.allowed_origins,
                   "Comma-separated Origins browsers may connect from (scheme://host[:port]); "
                   "any other gets 403 (none: every Origin; a request without Origin is "
                   "admitted)")
        ->delimiter(',')
        // "a, b" must list "b", not " b", which no browser sends.
        ->transform([](std::string s) {
            const auto first = s.find_first_not_of(" \t");
            return first == std::string::npos
                       ? std::string()
                       : s.substr(first, s.find_last_not_of(" \t") - first + 1);
        });
    // websocketpp answers 431 past 16000 bytes of request line and headers,
    // before the guard sees the request: a larger bound would never apply.
    app.add_option("--max-uri-bytes", c.options.guard.max_uri_bytes,
                   "Longest upgrade request URI; longer gets 414 (at most 16000: websocketpp "
                   "answers 431 past 16000 bytes of request head)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{16000}));
    app.add_option("--max-http-body-bytes", c.options.guard.max_http_body_bytes,
                   "Largest HTTP request body read; larger gets 413 (an upgrade with a body: 400)")
        ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 30));
    app.add_option("--max-rooms", c.options.guard.rooms.max_rooms,
                   "Rooms on this server, all members together")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
    app.add_option("--max-rooms-per-connection", c.options.guard.rooms.max_rooms_per_member,
                   "Rooms one connection may be in")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
    app.add_option("--max-room-name-bytes", c.options.guard.rooms.max_room_name_length,
                   "Longest room name; longer joins get an error reply")
        ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
    app.add_option("--sample-interval-ms", c.sample_ms, "Memory and series sampling interval")
        ->check(CLI::Range(10LL, 3600000LL));
    app.add_option(
           "--snapshot-dir", c.options.snapshot_dir,
           "Write a JSON census + malloc_info here when health turns critical (rate-limited)")
        ->check(CLI::ExistingDirectory);
    app.add_option("--growth-window", c.options.growth_window,
                   "Samples per growth detector (the verdict spans window x sample interval)")
        ->check(CLI::Range(std::size_t{4}, std::size_t{100000}));
    app.add_option("--threads", c.options.threads, "io threads running the event loop")
        ->check(CLI::Range(1u, 64u));
    app.add_option("--redis", c.options.redis_url,
                   "redis://host[:port]: rooms span every server on this Redis (pub/sub)");
    app.add_option("--node-id", c.options.node_id,
                   "This server's id on the Redis wire (default: host name + pid)");
    app.add_option("--bridge-down-warning-seconds", c.bridge_down_s,
                   "The health row \"bridge\" turns warning once Redis has been unusable this "
                   "long (/readyz answers 503 whenever it is not connected)")
        ->check(CLI::Range(0LL, 86400LL));
    auto* tls_cert = app.add_option("--tls-cert", c.options.tls_cert_file,
                                    "PEM certificate chain: serve wss and https on --port (needs "
                                    "--tls-key)");
    auto* tls_key = app.add_option("--tls-key", c.options.tls_key_file,
                                   "PEM private key of --tls-cert (needs --tls-cert)");
    tls_cert->needs(tls_key);
    tls_key->needs(tls_cert);
}

/// Effect: after the parse of `argv` failed, the environment variable whose
/// value was refused and CLI11's message about it; nullopt when the command
/// line itself is refused. Each set variable is tried alone on fresh flags.
std::optional<std::pair<std::string, std::string>> refused_env_value(int argc, char** argv) {
    const auto parse = [&](const std::string& env_of) -> std::optional<std::string> {
        CommandLine scratch;
        CLI::App app;
        add_flags(app, scratch);
        if (!env_of.empty()) {
            attach_env_names(app, env_of);
        }
        try {
            app.parse(argc, argv);
        } catch (const CLI::ParseError& e) {
            return std::string(e.what());
        }
        return std::nullopt;
    };
    if (parse({})) {
        return std::nullopt;
    }
    CommandLine scratch;
    CLI::App names;
    add_flags(names, scratch);
    for (const CLI::Option* opt : names.get_options()) {
        if (opt->get_lnames().empty() || on_command_line(argc, argv, opt->get_lnames().front())) {
            continue;
        }
        const std::string& name = opt->get_lnames().front();
        const char* value = std::getenv(env_name_of(name).c_str());
        if (value && *value) {
            if (auto refused = parse(name)) {
                return std::pair(env_name_of(name), std::move(*refused));
            }
        }
    }
    return std::nullopt;
}

/// Effect: the variables the parse of `app` took a value from, space-separated
/// ("" if none): named when a value is refused after the parse.
std::string values_from_environment(const CLI::App& app, int argc, char** argv) {
    std::string names;
    for (const CLI::Option* opt : app.get_options()) {
        if (!opt->get_envname().empty() && opt->count() > 0 &&
            !on_command_line(argc, argv, opt->get_lnames().front())) {
            names += (names.empty() ? "" : " ") + opt->get_envname();
        }
    }
    return names;
}

}  // namespace

int main(int argc, char** argv) {
    CommandLine c;
    CLI::App app{
        "wsguard reference chat server: JSON rooms over WebSocket, /stats, /metrics. "
        "Every flag can be set by the environment: WSGUARD_ + its name upper-cased, "
        "'-' as '_' (--max-rooms: WSGUARD_MAX_ROOMS); the command line wins."};
    add_flags(app, c);
    attach_env_names(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
            return app.exit(e);  // --help, --version: exit 0
        }
        // Every refused value exits 2: CLI11's message, and the variable's
        // name when the environment gave it (the flag is not on the line).
        if (const auto env = refused_env_value(argc, argv)) {
            std::fprintf(stderr, "chat_server: environment variable %s: %s\n", env->first.c_str(),
                         env->second.c_str());
            return 2;
        }
        app.exit(e);
        return 2;
    }
    auto& options = c.options;
    auto& g = options.guard;
    g.idle_timeout = std::chrono::milliseconds(c.idle_ms);
    g.ping_interval = std::chrono::milliseconds(c.ping_ms);
    g.slow_consumer = c.slow == "close" ? wsguard::wspp::SlowConsumerPolicy::close
                                        : wsguard::wspp::SlowConsumerPolicy::drop;
    options.sample_interval = std::chrono::milliseconds(c.sample_ms);
    options.bridge_down_warning = std::chrono::seconds(c.bridge_down_s);
    options.log_level = *wsguard::wspp::parse_log_level(c.log_level);
    // A value refused after the parse names the variables values came from.
    const std::string from_env = values_from_environment(app, argc, argv);
    const auto usage_error = [&from_env] {
        if (!from_env.empty()) {
            std::fprintf(stderr, "chat_server: values taken from the environment: %s\n",
                         from_env.c_str());
        }
        return 2;
    };
    if (fit_max_connections(g.max_connections, app.count("--max-connections") > 0)) {
        return usage_error();
    }

    const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
    if (tls && !chat::tls_available) {
        std::fprintf(stderr,
                     "chat_server: --tls-cert/--tls-key: this chat_server was built without TLS "
                     "(OpenSSL was not found at build time; Debian: libssl-dev)\n");
        return 2;
    }

    try {
#ifdef WSGUARD_HAVE_OPENSSL
        if (tls) {
            if (options.threads == 1) {
                return serve<wsguard::NullMutex, chat::Transport::tls>(options);
            }
            return serve<std::mutex, chat::Transport::tls>(options);
        }
#endif
        if (options.threads == 1) {
            return serve<wsguard::NullMutex, chat::Transport::plain>(options);
        }
        return serve<std::mutex, chat::Transport::plain>(options);
#ifdef WSGUARD_HAVE_OPENSSL
    } catch (const wsguard::wspp::TlsContextError& e) {
        // An unreadable or mismatched certificate or key: refused like a bad value.
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 2;
#endif
    } catch (const std::invalid_argument& e) {
        // A value the flags' own checks could not judge (--bind, --redis): a usage error.
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return usage_error();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chat_server: %s\n", e.what());
        return 1;
    }
}
