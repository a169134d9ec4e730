// ServerGuard instantiated on websocketpp's own TLS config: it must compile (a
// build-only check; the lean TLS configs run real handshakes in
// tests/integration/test_tls.cpp).
#include <wsguard/websocketpp/asio_ticker.hpp>
#include <wsguard/websocketpp/server_guard.hpp>

#include <websocketpp/config/asio.hpp>

template class wsguard::wspp::ServerGuard<websocketpp::config::asio_tls>;

void wsguard_tls_guard_compiles(websocketpp::server<websocketpp::config::asio_tls>& server) {
    wsguard::wspp::ServerGuard<websocketpp::config::asio_tls> guard(server);
    wsguard::wspp::AsioTicker<decltype(guard)> ticker(guard, std::chrono::milliseconds(100));
    guard.tick();
}
