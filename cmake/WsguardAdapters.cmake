# The adapter targets, for this build and its install:
#
#   wsguard::websocketpp  (wsguard_websocketpp) wsguard + websocketpp + standalone
#                         asio (ASIO_STANDALONE) + Threads
#   wsguard::redis        (wsguard_redis) wsguard::websocketpp + hiredis
#                         (pkg-config), WSGUARD_HAVE_HIREDIS=1
#
# WSGUARD_WEBSOCKETPP / WSGUARD_REDIS pick how hard to look:
#   OFF   no target, nothing looked for (core-only consumers)
#   AUTO  the system's packages only, quietly; no target when one is missing
#   ON    the system's first; websocketpp and asio fall back to a pinned
#         FetchContent download (a configure error instead under
#         FETCHCONTENT_FULLY_DISCONNECTED), hiredis has none (configure error)
# Both default to AUTO, and WSGUARD_WEBSOCKETPP to ON when this build makes
# tests, examples or benchmarks (they need it).

if(WSGUARD_BUILD_TESTS OR WSGUARD_BUILD_EXAMPLES OR WSGUARD_BUILD_BENCHMARKS)
  set(_wsguard_websocketpp_default ON)
else()
  set(_wsguard_websocketpp_default AUTO)
endif()
set(WSGUARD_WEBSOCKETPP ${_wsguard_websocketpp_default} CACHE STRING
    "wsguard::websocketpp: AUTO (system only), ON (system, else fetch pinned), OFF")
set(WSGUARD_REDIS AUTO CACHE STRING "wsguard::redis (hiredis via pkg-config): AUTO, ON, OFF")
set_property(CACHE WSGUARD_WEBSOCKETPP PROPERTY STRINGS AUTO ON OFF)
set_property(CACHE WSGUARD_REDIS PROPERTY STRINGS AUTO ON OFF)
foreach(_option WSGUARD_WEBSOCKETPP WSGUARD_REDIS)
  string(TOUPPER "${${_option}}" _value)
  if(_value MATCHES "^(TRUE|YES|Y|1)$")
    set(_value ON)
  elseif(_value MATCHES "^(FALSE|NO|N|0)$")
    set(_value OFF)
  endif()
  if(NOT _value MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "${_option} must be AUTO, ON or OFF (got '${${_option}}')")
  endif()
  set(_wsguard_${_option} ${_value})
endforeach()

if(NOT _wsguard_WSGUARD_WEBSOCKETPP STREQUAL "OFF" AND NOT TARGET wsguard_websocketpp)
  include(FetchContent)
  set(_wsguard_fetch OFF)
  if(_wsguard_WSGUARD_WEBSOCKETPP STREQUAL "ON")
    set(_wsguard_fetch ON)
  endif()

  # websocketpp's version file is ExactVersion, so asking for 0.8 would refuse
  # the system's 0.8.2: ask for any version and check the minimum here. Its
  # config defines websocketpp::websocketpp unguarded: find it once.
  if(NOT TARGET websocketpp::websocketpp)
    find_package(websocketpp QUIET)
    # Seen from every directory: a consumer links the adapter from a sibling
    # of the one that added wsguard.
    if(TARGET websocketpp::websocketpp)
      set_target_properties(websocketpp::websocketpp PROPERTIES IMPORTED_GLOBAL TRUE)
    endif()
    if(websocketpp_FOUND AND websocketpp_VERSION VERSION_LESS 0.8)
      message(FATAL_ERROR "wsguard: websocketpp ${websocketpp_VERSION} found in "
        "${websocketpp_DIR}; 0.8 or later is needed (set websocketpp_DIR)")
    endif()
    if(NOT websocketpp_FOUND AND _wsguard_fetch AND FETCHCONTENT_FULLY_DISCONNECTED)
      message(FATAL_ERROR "wsguard: WSGUARD_WEBSOCKETPP is ON but websocketpp was not found "
        "(websocketpp-config.cmake: set websocketpp_DIR or CMAKE_PREFIX_PATH; Debian: "
        "libwebsocketpp-dev) and FETCHCONTENT_FULLY_DISCONNECTED forbids fetching it")
    elseif(NOT websocketpp_FOUND AND _wsguard_fetch)
      message(STATUS "wsguard: websocketpp not found on the system, fetching 0.8.2")
      FetchContent_Declare(websocketpp
        GIT_REPOSITORY https://github.com/zaphoyd/websocketpp.git
        GIT_TAG 0.8.2)
      FetchContent_Populate(websocketpp)
      add_library(websocketpp::websocketpp INTERFACE IMPORTED GLOBAL)
      set_target_properties(websocketpp::websocketpp PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${websocketpp_SOURCE_DIR}")
    endif()
  endif()

  # Standalone asio (libasio-dev); websocketpp uses it through ASIO_STANDALONE.
  find_path(WSGUARD_ASIO_INCLUDE_DIR asio.hpp)
  if(NOT WSGUARD_ASIO_INCLUDE_DIR AND _wsguard_fetch AND FETCHCONTENT_FULLY_DISCONNECTED)
    message(FATAL_ERROR "wsguard: WSGUARD_WEBSOCKETPP is ON but standalone asio (asio.hpp) was "
      "not found (set WSGUARD_ASIO_INCLUDE_DIR; Debian: libasio-dev) and "
      "FETCHCONTENT_FULLY_DISCONNECTED forbids fetching it")
  elseif(NOT WSGUARD_ASIO_INCLUDE_DIR AND _wsguard_fetch)
    message(STATUS "wsguard: asio not found on the system, fetching asio-1-28-0")
    FetchContent_Declare(asio
      GIT_REPOSITORY https://github.com/chriskohlhoff/asio.git
      GIT_TAG asio-1-28-0)
    FetchContent_Populate(asio)
    set(WSGUARD_ASIO_INCLUDE_DIR "${asio_SOURCE_DIR}/asio/include" CACHE PATH "" FORCE)
  endif()

  if(TARGET websocketpp::websocketpp AND WSGUARD_ASIO_INCLUDE_DIR)
    # Imported, so the exported wsguard::websocketpp names it and the package's
    # config recreates it from its own find_path (no path of this machine).
    add_library(wsguard::asio INTERFACE IMPORTED GLOBAL)
    set_target_properties(wsguard::asio PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${WSGUARD_ASIO_INCLUDE_DIR}"
      INTERFACE_COMPILE_DEFINITIONS ASIO_STANDALONE)
    add_library(wsguard_websocketpp INTERFACE)
    add_library(wsguard::websocketpp ALIAS wsguard_websocketpp)
    set_target_properties(wsguard_websocketpp PROPERTIES EXPORT_NAME websocketpp)
    # wsguard carries cxx_std_17: every adapter user states its standard.
    # websocketpp picks std:: (not boost::) facilities itself under C++11 and later.
    target_link_libraries(wsguard_websocketpp INTERFACE wsguard websocketpp::websocketpp
                                                        wsguard::asio Threads::Threads)
  elseif(_wsguard_WSGUARD_WEBSOCKETPP STREQUAL "AUTO")
    message(STATUS "wsguard: websocketpp or standalone asio not found, no wsguard::websocketpp "
                   "(Debian: apt-get install libwebsocketpp-dev libasio-dev)")
  endif()
endif()

# hiredis is looked for only beside wsguard::websocketpp, which the bridge needs.
if(NOT _wsguard_WSGUARD_REDIS STREQUAL "OFF" AND NOT TARGET wsguard_redis)
  if(NOT TARGET wsguard_websocketpp)
    if(_wsguard_WSGUARD_REDIS STREQUAL "ON")
      message(FATAL_ERROR "wsguard: WSGUARD_REDIS is ON but wsguard::websocketpp was not found "
                          "(websocketpp and standalone asio; WSGUARD_WEBSOCKETPP)")
    endif()
  else()
    if(NOT TARGET PkgConfig::HIREDIS)
      find_package(PkgConfig QUIET)
      if(PkgConfig_FOUND)
        pkg_check_modules(HIREDIS QUIET IMPORTED_TARGET GLOBAL hiredis)
      endif()
    endif()
    if(TARGET PkgConfig::HIREDIS)
      add_library(wsguard_redis INTERFACE)
      add_library(wsguard::redis ALIAS wsguard_redis)
      set_target_properties(wsguard_redis PROPERTIES EXPORT_NAME redis)
      target_link_libraries(wsguard_redis INTERFACE wsguard_websocketpp PkgConfig::HIREDIS)
      # Code that offers the Redis bridge only when it can (the chat server's --redis).
      target_compile_definitions(wsguard_redis INTERFACE WSGUARD_HAVE_HIREDIS=1)
    elseif(_wsguard_WSGUARD_REDIS STREQUAL "ON")
      message(FATAL_ERROR "wsguard: WSGUARD_REDIS is ON but hiredis was not found by pkg-config "
                          "(Debian: apt-get install libhiredis-dev pkg-config)")
    else()
      message(STATUS "wsguard: hiredis not found by pkg-config, no wsguard::redis")
    endif()
  endif()
endif()
