// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// The explicit instantiations that client_harness.hpp declares extern: the
// reference server and the websocketpp endpoints, built once for all the
// loopback test binaries instead of once in each.
#include "client_harness.hpp"

template class chat::ChatServer<wsguard::NullMutex>;
template class chat::ChatServer<std::mutex>;
template class websocketpp::server<chat::ChatServer<wsguard::NullMutex>::Config>;
template class websocketpp::connection<chat::ChatServer<wsguard::NullMutex>::Config>;
template class websocketpp::server<chat::ChatServer<std::mutex>::Config>;
template class websocketpp::connection<chat::ChatServer<std::mutex>::Config>;
template class websocketpp::client<websocketpp::config::asio_client>;
template class websocketpp::connection<websocketpp::config::asio_client>;
