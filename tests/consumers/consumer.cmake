# Shared by the consumer projects: the checks on what wsguard gives a consumer,
# and the consumer executable itself. Each project is given WSGUARD_SOURCE_DIR
# (the wsguard tree) and WSGUARD_CONSUMER_DIR (this directory).

foreach(variable WSGUARD_SOURCE_DIR WSGUARD_CONSUMER_DIR)
  if(NOT IS_DIRECTORY "${${variable}}")
    message(FATAL_ERROR "consumer: pass -D${variable}=<dir> (got '${${variable}}')")
  endif()
endforeach()

# wsguard_check_interface(): wsguard::wsguard gives its consumers C++17, its
# include directory and Threads, and nothing else: no warning flags, no
# -Werror, no sanitizer, no definition. A consumer keeps its own flags.
function(wsguard_check_interface)
  if(NOT TARGET wsguard::wsguard)
    message(FATAL_ERROR "consumer: no target wsguard::wsguard")
  endif()
  set(target wsguard::wsguard)
  get_target_property(aliased wsguard::wsguard ALIASED_TARGET)
  if(aliased)
    set(target ${aliased})
  endif()
  get_target_property(type ${target} TYPE)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    message(FATAL_ERROR "consumer: wsguard::wsguard is a ${type}, not a header-only INTERFACE library")
  endif()
  foreach(property INTERFACE_COMPILE_OPTIONS INTERFACE_COMPILE_DEFINITIONS
                   INTERFACE_LINK_OPTIONS INTERFACE_PRECOMPILE_HEADERS INTERFACE_SOURCES)
    get_target_property(value ${target} ${property})
    if(value)
      message(FATAL_ERROR "consumer: wsguard::wsguard imposes ${property} on its consumers: ${value}")
    endif()
  endforeach()
  get_target_property(features ${target} INTERFACE_COMPILE_FEATURES)
  if(NOT features STREQUAL "cxx_std_17")
    message(FATAL_ERROR "consumer: wsguard::wsguard requires features '${features}', expected cxx_std_17")
  endif()
  get_target_property(libraries ${target} INTERFACE_LINK_LIBRARIES)
  if(NOT libraries STREQUAL "Threads::Threads")
    message(FATAL_ERROR "consumer: wsguard::wsguard links '${libraries}', expected Threads::Threads")
  endif()
  get_target_property(includes ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(NOT includes)
    message(FATAL_ERROR "consumer: wsguard::wsguard has no include directory")
  endif()
endfunction()

# wsguard_check_subproject(<wsguard source dir>): built inside another project,
# wsguard defaulted its tests, examples, benchmarks and install to OFF, so it
# added the library target, the adapter targets whose dependencies it found
# (wsguard_websocketpp, wsguard_redis) and nothing else: no subdirectory, no
# test or warning target, no test dependency looked for.
function(wsguard_check_subproject dir)
  foreach(option WSGUARD_BUILD_TESTS WSGUARD_BUILD_EXAMPLES WSGUARD_BUILD_BENCHMARKS
                 WSGUARD_INSTALL)
    if(${option})
      message(FATAL_ERROR "consumer: ${option} is ON in a subproject; it must default to OFF")
    endif()
  endforeach()
  foreach(target wsguard_test_main wsguard_warnings Catch2::Catch2)
    if(TARGET ${target})
      message(FATAL_ERROR "consumer: wsguard created '${target}' as a subproject")
    endif()
  endforeach()
  get_property(subdirectories DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  if(subdirectories)
    message(FATAL_ERROR "consumer: wsguard added subdirectories as a subproject: ${subdirectories}")
  endif()
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  list(REMOVE_ITEM targets wsguard_websocketpp wsguard_redis)
  if(NOT targets STREQUAL "wsguard")
    message(FATAL_ERROR "consumer: wsguard defined targets '${targets}' as a subproject, "
                        "expected only wsguard and its adapters")
  endif()
endfunction()

# wsguard_check_core_only(<wsguard source dir>): with WSGUARD_WEBSOCKETPP=OFF
# wsguard defines the core target alone and looks for none of the adapters'
# dependencies (no cache entry of a search for websocketpp, asio or hiredis).
function(wsguard_check_core_only dir)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  if(NOT targets STREQUAL "wsguard")
    message(FATAL_ERROR "consumer: WSGUARD_WEBSOCKETPP=OFF defined targets '${targets}'")
  endif()
  foreach(target wsguard::websocketpp wsguard::redis websocketpp::websocketpp wsguard::asio)
    if(TARGET ${target})
      message(FATAL_ERROR "consumer: WSGUARD_WEBSOCKETPP=OFF still made ${target}")
    endif()
  endforeach()
  foreach(variable websocketpp_DIR WSGUARD_ASIO_INCLUDE_DIR HIREDIS_FOUND)
    if(DEFINED ${variable})
      message(FATAL_ERROR "consumer: WSGUARD_WEBSOCKETPP=OFF still looked for ${variable}")
    endif()
  endforeach()
endfunction()

# wsguard_add_consumer(<name>): the consumer program, built the way a strict
# project builds its own code. It asks for C++14 on purpose: wsguard's
# cxx_std_17 must raise it (main.cpp checks __cplusplus).
function(wsguard_add_consumer name)
  add_executable(${name} "${WSGUARD_CONSUMER_DIR}/main.cpp")
  target_link_libraries(${name} PRIVATE wsguard::wsguard)
  set_target_properties(${name} PROPERTIES
    CXX_STANDARD 14
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${name} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  elseif(MSVC)
    target_compile_options(${name} PRIVATE /W4 /WX)
  endif()
endfunction()

# wsguard_add_chat_server(): the reference server exactly as a user copies it
# (examples/chat_server/, the very same files, unmodified), and chat_probe,
# which runs it on 127.0.0.1 and waits for a pong. WSGUARD_EXPECT_REDIS (ON
# when the suite's own build has wsguard::redis) makes the probe start it with
# --redis, which only a build that linked wsguard::redis accepts.
function(wsguard_add_chat_server)
  add_subdirectory("${WSGUARD_SOURCE_DIR}/examples/chat_server" chat_server)
  add_executable(chat_probe "${WSGUARD_CONSUMER_DIR}/chat_probe.cpp")
  # tests/support/ws_frames.hpp: the suite's raw WebSocket frames.
  target_include_directories(chat_probe PRIVATE "${WSGUARD_SOURCE_DIR}/tests")
  target_compile_features(chat_probe PRIVATE cxx_std_17)
  target_compile_definitions(chat_probe PRIVATE "WSGUARD_CHAT_SERVER=\"$<TARGET_FILE:chat_server>\"")
  if(WSGUARD_EXPECT_REDIS)
    target_compile_definitions(chat_probe PRIVATE WSGUARD_PROBE_REDIS=1)
  endif()
  # WSGUARD_EXPECT_TLS (ON when the suite's build has OpenSSL): the probe also
  # speaks wss, which only a server built with OpenSSL serves.
  if(WSGUARD_EXPECT_TLS)
    find_package(OpenSSL REQUIRED)
    target_link_libraries(chat_probe PRIVATE OpenSSL::SSL OpenSSL::Crypto)
    target_compile_definitions(chat_probe PRIVATE WSGUARD_PROBE_TLS=1)
  endif()
  add_dependencies(chat_probe chat_server)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(chat_probe PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()
