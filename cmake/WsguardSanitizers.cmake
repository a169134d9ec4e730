# WSGUARD_SANITIZE instruments every target of this build (tests, examples,
# benchmarks), so a leak in a test's own helpers is caught too. It is only read
# when wsguard is the main project: consumers keep their own flags.
if(WSGUARD_SANITIZE STREQUAL "")
  return()
endif()

string(REPLACE "," ";" _wsguard_sanitizers "${WSGUARD_SANITIZE}")
foreach(_s IN LISTS _wsguard_sanitizers)
  if(NOT _s MATCHES "^(address|undefined|thread|leak)$")
    message(FATAL_ERROR
      "WSGUARD_SANITIZE: unknown sanitizer '${_s}'. Use address,undefined or thread.")
  endif()
endforeach()
if("thread" IN_LIST _wsguard_sanitizers AND "address" IN_LIST _wsguard_sanitizers)
  message(FATAL_ERROR "WSGUARD_SANITIZE: thread cannot be combined with address.")
endif()

set(_wsguard_san_flags "-fsanitize=${WSGUARD_SANITIZE}" -fno-omit-frame-pointer)
# A report needs file and line: -g, unless the build type already asks for
# debug info (CI's sanitizer builds use -g1, line tables only, which is all a
# report reads and a fifth less to compile than -g).
string(TOUPPER "${CMAKE_BUILD_TYPE}" _wsguard_build_type)
if(NOT " ${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_wsguard_build_type}}" MATCHES " -g")
  list(APPEND _wsguard_san_flags -g)
endif()
if("undefined" IN_LIST _wsguard_sanitizers)
  # A UBSan finding fails the test instead of printing and carrying on.
  list(APPEND _wsguard_san_flags -fno-sanitize-recover=undefined)
  # Not the vptr check: it probes an object's memory through a pipe, so in a
  # process that has used every file descriptor (tests/test_acceptor.cpp does,
  # on purpose) any virtual call is reported as a false "invalid vptr". The
  # rest of UBSan, and ASan's checks of the same objects, stay on.
  list(APPEND _wsguard_san_flags -fno-sanitize=vptr)
endif()
if("thread" IN_LIST _wsguard_sanitizers AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # gcc 12 warns (-Wtsan) that TSan does not model std::atomic_thread_fence,
  # which asio's fenced blocks use; with -Werror on our targets that would
  # stop the build. asio's handoffs also go through mutexes, which TSan sees.
  list(APPEND _wsguard_san_flags -Wno-tsan)
endif()
if("thread" IN_LIST _wsguard_sanitizers)
  # Exact stacks: a report's frames, and the suppressions in tests/tsan.supp
  # that name websocketpp functions, must not depend on what was inlined.
  list(APPEND _wsguard_san_flags -fno-inline)
endif()
add_compile_options(${_wsguard_san_flags})
add_link_options(-fsanitize=${WSGUARD_SANITIZE})
message(STATUS "wsguard: sanitizers ${WSGUARD_SANITIZE}")
