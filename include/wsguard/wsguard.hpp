// wsguard — leak-safe primitives for long-lived WebSocket servers.
// SPDX-License-Identifier: MIT
//
// Everything in the core: standard library only, no websocketpp. The adapter
// lives apart in <wsguard/websocketpp/...> so core users need nothing else.
#pragma once

#include <wsguard/bounded_message_queue.hpp>
#include <wsguard/connection_registry.hpp>
#include <wsguard/growth_rate_detector.hpp>
#include <wsguard/health.hpp>
#include <wsguard/memory.hpp>
#include <wsguard/null_mutex.hpp>
#include <wsguard/room_index.hpp>
#include <wsguard/scoped_listener.hpp>
