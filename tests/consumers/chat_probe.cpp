// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Runs the chat_server a consumer project built from an unmodified copy of
// examples/chat_server/ and proves it serves: starts it on a free port of
// 127.0.0.1, reads the port from its banner, opens a WebSocket, sends
// {"type":"ping"} and waits for {"type":"pong"}, then stops it with SIGTERM
// by pid and expects exit 0. With WSGUARD_PROBE_REDIS the server is started
// with --redis (an unreachable 127.0.0.1 port): only a build that linked
// wsguard::redis (WSGUARD_HAVE_HIREDIS) accepts the flag. With
// WSGUARD_PROBE_TLS it then does it all again over wss: the server started with
// --tls-cert/--tls-key (a certificate made for the run), the handshake and the
// pong through OpenSSL. Everything is bounded by an alarm that kills the
// server. Exit 0: every check held.

#include <support/ws_frames.hpp>
#ifdef WSGUARD_PROBE_TLS
#include <support/test_cert.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef WSGUARD_CHAT_SERVER
#error "compile with -DWSGUARD_CHAT_SERVER=\"<path of chat_server>\""
#endif

namespace {

pid_t server_pid = -1;

// The whole probe is bounded: a hung server is killed, not waited for.
extern "C" void on_alarm(int) {
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
    }
    static const char text[] = "chat_probe: timed out\n";
    [[maybe_unused]] const auto ignored = write(2, text, sizeof text - 1);
    _exit(3);
}

int fail(const std::string& why) {
    std::fprintf(stderr, "chat_probe: %s\n", why.c_str());
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, nullptr, 0);
    }
    return 1;
}

// A descriptor read and written whole: the server's standard output, or a
// connection to it (a plain socket, or TLS over it).
struct Connection {
    int fd = -1;
#ifdef WSGUARD_PROBE_TLS
    SSL* ssl = nullptr;
#endif
    ~Connection() {
#ifdef WSGUARD_PROBE_TLS
        if (ssl) {
            SSL_free(ssl);
        }
#endif
        if (fd >= 0) {
            close(fd);
        }
    }

    bool send_all(const std::string& data) {
        std::size_t sent = 0;
        while (sent < data.size()) {
            ssize_t n = 0;
#ifdef WSGUARD_PROBE_TLS
            if (ssl) {
                n = SSL_write(ssl, data.data() + sent, static_cast<int>(data.size() - sent));
            } else
#endif
            {
                n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            }
            if (n <= 0) {
                return false;
            }
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    bool read_some(std::string& into) {
        char buffer[4096];
        ssize_t n = 0;
#ifdef WSGUARD_PROBE_TLS
        if (ssl) {
            n = SSL_read(ssl, buffer, sizeof buffer);
        } else
#endif
        {
            n = read(fd, buffer, sizeof buffer);
        }
        if (n <= 0) {
            return false;
        }
        into.append(buffer, static_cast<std::size_t>(n));
        return true;
    }
};

/// Starts chat_server with `extra` arguments, opens a WebSocket to it (over TLS
/// when `ssl_ctx` is given), waits for the pong to a ping, and stops the
/// server by its pid. 0 when every step held.
int probe(std::vector<std::string> extra, [[maybe_unused]] void* ssl_ctx) {
    int out[2];
    if (pipe(out) != 0) {
        return fail("pipe failed");
    }
    std::vector<std::string> args = {WSGUARD_CHAT_SERVER, "--port", "0", "--bind", "127.0.0.1"};
    args.insert(args.end(), extra.begin(), extra.end());
    server_pid = fork();
    if (server_pid < 0) {
        return fail("fork failed");
    }
    if (server_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(out[1]);
    // Open until the server exits: it logs its shutdown there, and a closed
    // pipe would kill it with SIGPIPE.
    Connection server_output;
    server_output.fd = out[0];

    // "chat_server: listening on 127.0.0.1 port N"
    std::string banner;
    const std::string marker = "listening on 127.0.0.1 port ";
    unsigned port = 0;
    while (port == 0) {
        if (!server_output.read_some(banner)) {
            return fail("the server exited before listening; it printed:\n" + banner);
        }
        const auto at = banner.find(marker);
        if (at != std::string::npos && banner.find('\n', at) != std::string::npos) {
            port = static_cast<unsigned>(
                std::strtoul(banner.c_str() + at + marker.size(), nullptr, 10));
            if (port == 0) {
                return fail("no port in the banner:\n" + banner);
            }
        }
    }
    Connection c;
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (c.fd < 0 || connect(c.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        return fail("cannot connect to 127.0.0.1:" + std::to_string(port));
    }
#ifdef WSGUARD_PROBE_TLS
    if (ssl_ctx) {
        c.ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx));
        if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1 || SSL_connect(c.ssl) != 1) {
            char reason[256] = "no reason";
            ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
            return fail(std::string("TLS handshake with the server failed: ") + reason);
        }
    }
#endif
    if (!c.send_all(wsguard::test::upgrade_request(static_cast<std::uint16_t>(port)))) {
        return fail("cannot send the handshake");
    }
    std::string inbox;
    std::size_t end = std::string::npos;
    while ((end = inbox.find("\r\n\r\n")) == std::string::npos) {
        if (!c.read_some(inbox)) {
            return fail("the connection closed during the handshake");
        }
    }
    if (inbox.compare(0, 12, "HTTP/1.1 101") != 0) {
        return fail("handshake refused: " + inbox.substr(0, end));
    }
    inbox.erase(0, end + 4);

    std::string ping;
    wsguard::test::append_client_frame(ping, 0x1, R"({"type":"ping"})", 0x12345678u);
    if (!c.send_all(ping)) {
        return fail("cannot send the ping");
    }
    for (;;) {
        while (auto frame = wsguard::test::take_server_frame(inbox)) {
            if (frame->opcode == 0x1 && frame->payload.find(R"("pong")") != std::string::npos) {
                // Stopped by its pid; SIGTERM must close connections and exit 0.
                kill(server_pid, SIGTERM);
                int status = 0;
                waitpid(server_pid, &status, 0);
                server_pid = -1;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    return fail("the server did not exit 0 on SIGTERM");
                }
                std::printf("chat_probe: pong from %s://127.0.0.1:%u, server stopped\n",
                            ssl_ctx ? "wss" : "ws", port);
                return 0;
            }
            if (frame->opcode == 0x8) {
                return fail("closed with " + std::to_string(frame->close_code()));
            }
        }
        if (!c.read_some(inbox)) {
            return fail("the connection closed before the pong");
        }
    }
}

}  // namespace

int main() {
    signal(SIGALRM, on_alarm);
    alarm(60);

    std::vector<std::string> plain;
#ifdef WSGUARD_PROBE_REDIS
    plain = {"--redis", "redis://127.0.0.1:1"};
#endif
    if (const int rc = probe(plain, nullptr); rc != 0) {
        return rc;
    }
#ifdef WSGUARD_PROBE_TLS
    const wsguard::test::TestCert cert;
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          &SSL_CTX_free);
    if (!ctx) {
        return fail("SSL_CTX_new failed");
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);  // the certificate is self-signed
    if (const int rc =
            probe({"--tls-cert", cert.cert_path(), "--tls-key", cert.key_path()}, ctx.get());
        rc != 0) {
        return rc;
    }
#endif
    return 0;
}
