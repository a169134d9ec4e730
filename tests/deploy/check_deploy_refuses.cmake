# The hostile side of check_deploy.cmake: broken copies of the deploy files
# must fail it, each with its reason. Inputs as check_deploy.cmake's, plus
# CHECK_SCRIPT (its path).
cmake_minimum_required(VERSION 3.14)

file(READ "${DEPLOY_DIR}/Dockerfile" dockerfile)
file(READ "${DEPLOY_DIR}/chat_server.service" unit)

# expect_refused(<check> <expected text in the message> <Dockerfile> <unit>)
function(expect_refused check expected docker_text unit_text)
  set(dir "${WORK_DIR}/case")
  file(REMOVE_RECURSE "${dir}")
  file(WRITE "${dir}/Dockerfile" "${docker_text}")
  file(WRITE "${dir}/chat_server.service" "${unit_text}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -DCHECK=${check} "-DDEPLOY_DIR=${dir}"
                          "-DCHAT_SERVER=${CHAT_SERVER}" "-DWORK_DIR=${WORK_DIR}/verify"
                          "-DREQUIRED=${REQUIRED}" "-DSYSTEMD_ANALYZE=${SYSTEMD_ANALYZE}"
                          "-DHADOLINT=" -P "${CHECK_SCRIPT}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")  # CMake wraps its messages
  if(rc EQUAL 0 OR NOT flat MATCHES "${expected}")
    message(FATAL_ERROR "check ${check} should have refused a file with: ${expected}\n"
                        "exit ${rc}, output:\n${out}")
  endif()
  message(STATUS "refused, as it should: ${expected}")
endfunction()

string(REGEX REPLACE "\nUSER [^\n]*" "\nUSER root" as_root "${dockerfile}")
expect_refused(dockerfile "runs as root" "${as_root}" "${unit}")
string(REGEX REPLACE "\nUSER [^\n]*" "" no_user "${dockerfile}")
expect_refused(dockerfile "runs as root" "${no_user}" "${unit}")
expect_refused(dockerfile "first instruction is not FROM" "RUN true\n${dockerfile}" "${unit}")
string(REPLACE "WSGUARD_BIND=" "WSGUARD_BIND_ADDRESS=" unknown_env "${dockerfile}")
expect_refused(dockerfile "WSGUARD_BIND_ADDRESS, which no chat_server flag reads"
               "${unknown_env}" "${unit}")
string(REGEX REPLACE "\nEXPOSE [0-9]+" "\nEXPOSE 9090" wrong_port "${dockerfile}")
expect_refused(dockerfile "EXPOSE '9090' is not WSGUARD_PORT" "${wrong_port}" "${unit}")

string(REPLACE "WSGUARD_PORT=" "WSGUARD_PROT=" unit_unknown_env "${unit}")
expect_refused(systemd "WSGUARD_PROT, which no chat_server flag reads" "${dockerfile}"
               "${unit_unknown_env}")
if(SYSTEMD_ANALYZE)
  string(REPLACE "NoNewPrivileges=yes" "NoNewPrivileges=maybe" bad_value "${unit}")
  expect_refused(systemd "systemd-analyze verify refused" "${dockerfile}" "${bad_value}")
  string(REPLACE "[Service]\n" "[Service]\nProtectEverything=yes\n" unknown_key "${unit}")
  expect_refused(systemd "Unknown key" "${dockerfile}" "${unknown_key}")
endif()
