# Configures a consumer project that must fail (run with cmake -P):
#   -DPROJECT=<dir> -DBINARY=<dir> -DEXPECT=<regex the output must match>
#   -DARGS=<configure arguments, separated by |>
# Passes when the configure fails, printed "optional requests passed" first
# (the quiet requests held) and its output matches EXPECT.
cmake_minimum_required(VERSION 3.14)
string(REPLACE "|" ";" ARGS "${ARGS}")
file(REMOVE_RECURSE "${BINARY}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${PROJECT}" -B "${BINARY}" ${ARGS}
  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(result EQUAL 0)
  message(FATAL_ERROR "expect_failure: the configure succeeded:\n${output}")
endif()
if(NOT output MATCHES "optional requests passed")
  message(FATAL_ERROR "expect_failure: failed before the optional requests:\n${output}")
endif()
if(NOT output MATCHES "${EXPECT}")
  message(FATAL_ERROR "expect_failure: the message does not match '${EXPECT}':\n${output}")
endif()
message(STATUS "expect_failure: failed as expected")
