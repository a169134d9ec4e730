# Checks examples/chat_server/deploy/ against the chat_server that was built
# (cmake -P; tests/deploy/CMakeLists.txt registers the tests):
#   CHECK=dockerfile: hadolint when found; always a structural check: FROM
#     first, a USER that is not root in the last stage, EXPOSE = WSGUARD_PORT,
#     and every WSGUARD_ variable set is one a flag reads (chat_server --help).
#   CHECK=systemd: systemd-analyze verify on a copy whose ExecStart is the
#     built binary (verify needs it to exist); the unit's WSGUARD_ variables
#     checked as above. Without systemd-analyze: "wsguard-skipped: ..." (the
#     test is reported Skipped), or a failure when REQUIRED is true.
# Inputs: CHECK, DEPLOY_DIR, CHAT_SERVER, WORK_DIR, REQUIRED, SYSTEMD_ANALYZE,
# HADOLINT (the last two empty when not found).

cmake_minimum_required(VERSION 3.14)  # IN_LIST

function(fail)
  list(JOIN ARGN "" text)
  message(FATAL_ERROR "${text}")
endfunction()

# The variables chat_server reads: every "Env:NAME" its --help prints.
execute_process(COMMAND "${CHAT_SERVER}" --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("${CHAT_SERVER} --help exited ${rc}")
endif()
string(REGEX MATCHALL "Env:WSGUARD_[A-Z0-9_]+" known "${help}")
list(TRANSFORM known REPLACE "^Env:" "")
if(NOT "WSGUARD_PORT" IN_LIST known)
  fail("chat_server --help names no WSGUARD_PORT: its flags have no variables")
endif()

# Every WSGUARD_ name in `text` must be one chat_server reads.
function(check_known_names what text)
  string(REGEX MATCHALL "WSGUARD_[A-Z0-9_]+" names "${text}")
  foreach(name IN LISTS names)
    if(NOT name IN_LIST known)
      fail("${what} sets ${name}, which no chat_server flag reads (chat_server --help lists "
           "them: ${known})")
    endif()
  endforeach()
endfunction()

if(CHECK STREQUAL "dockerfile")
  set(file "${DEPLOY_DIR}/Dockerfile")
  if(HADOLINT)
    execute_process(COMMAND "${HADOLINT}" "${file}" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      fail("hadolint found problems in ${file}")
    endif()
  else()
    message(STATUS "hadolint not found (not packaged in Debian): the structural check only")
  endif()
  file(READ "${file}" text)
  # Instructions: continuation lines joined, comments and blank lines dropped.
  string(REGEX REPLACE "\\\\\n" " " text "${text}")
  string(REPLACE ";" "\\;" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(instructions "")
  foreach(line IN LISTS lines)
    string(STRIP "${line}" line)
    if(line STREQUAL "" OR line MATCHES "^#")
      continue()
    endif()
    list(APPEND instructions "${line}")
  endforeach()
  list(GET instructions 0 first)
  if(NOT first MATCHES "^FROM ")
    fail("${file}: the first instruction is not FROM: ${first}")
  endif()
  set(user "")
  set(env "")
  set(expose "")
  foreach(line IN LISTS instructions)
    if(line MATCHES "^FROM ")
      set(user "")  # a new stage starts as root
    elseif(line MATCHES "^USER +([^ ]+)")
      set(user "${CMAKE_MATCH_1}")
    elseif(line MATCHES "^ENV ")
      string(APPEND env " ${line}")
    elseif(line MATCHES "^EXPOSE +([0-9]+)")
      set(expose "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(user STREQUAL "" OR user MATCHES "^(root|0)(:.*)?$")
    fail("${file}: the last stage runs as root (USER '${user}')")
  endif()
  check_known_names("${file}'s ENV" "${env}")
  if(NOT env MATCHES "WSGUARD_PORT=([0-9]+)")
    fail("${file}: no ENV WSGUARD_PORT=<port>")
  endif()
  if(NOT expose STREQUAL CMAKE_MATCH_1)
    fail("${file}: EXPOSE '${expose}' is not WSGUARD_PORT ${CMAKE_MATCH_1}")
  endif()
  message(STATUS "${file}: FROM first, USER ${user}, EXPOSE ${expose}, variables known")
elseif(CHECK STREQUAL "systemd")
  set(file "${DEPLOY_DIR}/chat_server.service")
  file(READ "${file}" text)
  string(REGEX MATCHALL "\nEnvironment=[^\n]*" env "${text}")
  check_known_names("${file}'s Environment=" "${env}")
  if(NOT SYSTEMD_ANALYZE)
    set(why "systemd-analyze not found: ${file} was not verified")
    if(REQUIRED)
      fail("${why} (WSGUARD_REQUIRE_SYSTEMD_ANALYZE is ON)")
    endif()
    message("wsguard-skipped: ${why}")
    return()
  endif()
  if(NOT text MATCHES "\nExecStart=")
    fail("${file}: no ExecStart=")
  endif()
  string(REGEX REPLACE "\nExecStart=[^ \n]+" "\nExecStart=${CHAT_SERVER}" text "${text}")
  file(REMOVE_RECURSE "${WORK_DIR}")
  file(MAKE_DIRECTORY "${WORK_DIR}")
  file(WRITE "${WORK_DIR}/chat_server.service" "${text}")
  execute_process(COMMAND "${SYSTEMD_ANALYZE}" verify "${WORK_DIR}/chat_server.service"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  # A setting verify only warns about ("Unknown key ..., ignoring") fails too:
  # every line about the unit file names it.
  if(NOT rc EQUAL 0 OR out MATCHES "chat_server.service")
    fail("systemd-analyze verify refused ${file} (exit ${rc}):\n${out}")
  endif()
  message(STATUS "${file}: systemd-analyze verify passed")
else()
  fail("CHECK must be dockerfile or systemd, not '${CHECK}'")
endif()
