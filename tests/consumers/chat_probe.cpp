// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Runs the chat_server a consumer project built from an unmodified copy of
// examples/chat_server/ and proves it serves: starts it on a free port of
// 127.0.0.1, reads the port from its banner, opens a WebSocket, sends
// {"type":"ping"} and waits for {"type":"pong"}, then stops it with SIGTERM
// by pid and expects exit 0. With WSGUARD_PROBE_REDIS the server is started
// with --redis (an unreachable 127.0.0.1 port): only a build that linked
// wsguard::redis (WSGUARD_HAVE_HIREDIS) accepts the flag. Everything is
// bounded by an alarm that kills the server. Exit 0: every check held.

#include <support/ws_frames.hpp>

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

bool send_all(int fd, const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

bool read_some(int fd, std::string& into) {
    char buffer[4096];
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) {
        return false;
    }
    into.append(buffer, static_cast<std::size_t>(n));
    return true;
}

}  // namespace

int main() {
    signal(SIGALRM, on_alarm);
    alarm(60);

    int out[2];
    if (pipe(out) != 0) {
        return fail("pipe failed");
    }
    std::vector<std::string> args = {WSGUARD_CHAT_SERVER, "--port", "0", "--bind", "127.0.0.1"};
#ifdef WSGUARD_PROBE_REDIS
    args.insert(args.end(), {"--redis", "redis://127.0.0.1:1"});
#endif
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

    // "chat_server: listening on 127.0.0.1 port N"
    std::string banner;
    const std::string marker = "listening on 127.0.0.1 port ";
    unsigned port = 0;
    while (port == 0) {
        if (!read_some(out[0], banner)) {
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

    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        return fail("cannot connect to 127.0.0.1:" + std::to_string(port));
    }
    if (!send_all(fd, wsguard::test::upgrade_request(static_cast<std::uint16_t>(port)))) {
        return fail("cannot send the handshake");
    }
    std::string inbox;
    std::size_t end = std::string::npos;
    while ((end = inbox.find("\r\n\r\n")) == std::string::npos) {
        if (!read_some(fd, inbox)) {
            return fail("the connection closed during the handshake");
        }
    }
    if (inbox.compare(0, 12, "HTTP/1.1 101") != 0) {
        return fail("handshake refused: " + inbox.substr(0, end));
    }
    inbox.erase(0, end + 4);

    std::string ping;
    wsguard::test::append_client_frame(ping, 0x1, R"({"type":"ping"})", 0x12345678u);
    if (!send_all(fd, ping)) {
        return fail("cannot send the ping");
    }
    for (;;) {
        while (auto frame = wsguard::test::take_server_frame(inbox)) {
            if (frame->opcode == 0x1 && frame->payload.find(R"("pong")") != std::string::npos) {
                close(fd);
                // Stopped by its pid; SIGTERM must close connections and exit 0.
                kill(server_pid, SIGTERM);
                int status = 0;
                waitpid(server_pid, &status, 0);
                server_pid = -1;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    return fail("the server did not exit 0 on SIGTERM");
                }
                std::printf("chat_probe: pong from 127.0.0.1:%u, server stopped\n", port);
                return 0;
            }
            if (frame->opcode == 0x8) {
                return fail("closed with " + std::to_string(frame->close_code()));
            }
        }
        if (!read_some(fd, inbox)) {
            return fail("the connection closed before the pong");
        }
    }
}
