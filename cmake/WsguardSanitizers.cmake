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

set(_wsguard_san_flags "-fsanitize=${WSGUARD_SANITIZE}" -fno-omit-frame-pointer -g)
if("undefined" IN_LIST _wsguard_sanitizers)
  # A UBSan finding fails the test instead of printing and carrying on.
  list(APPEND _wsguard_san_flags -fno-sanitize-recover=undefined)
endif()
add_compile_options(${_wsguard_san_flags})
add_link_options(-fsanitize=${WSGUARD_SANITIZE})
message(STATUS "wsguard: sanitizers ${WSGUARD_SANITIZE}")
