# Every ```cpp and ```cmake block of README.md is built, so the README cannot
# drift from the library (run with cmake -P):
#   -DREADME=<README.md> -DWSGUARD_SOURCE_DIR=<wsguard tree> -DWORK=<scratch dir>
#   -DPREFIX=<an installed wsguard> -DARGS=<configure arguments, separated by |>
#
# cpp: each block is one translation unit of a project that adds wsguard with
# add_subdirectory and links wsguard::websocketpp (and wsguard::redis when it
# exists); it must compile. A block that is statements, not a whole file, is
# marked on the line above its fence with
#     <!-- readme-test: fragment -->
# and compiled with its #include lines at file scope and the rest as the body
# of a function.
# cmake: each block is pasted into its own project after
#     project(...) and add_executable(app main.cpp)
# and configured (generation included, so unknown targets fail), with
# CMAKE_PREFIX_PATH=<PREFIX> for find_package and FETCHCONTENT_SOURCE_DIR_WSGUARD
# = the wsguard tree for FetchContent, which never downloads here
# (FETCHCONTENT_FULLY_DISCONNECTED).
# Other blocks (sh, ...) are not run.

cmake_minimum_required(VERSION 3.14)
string(REPLACE "|" ";" ARGS "${ARGS}")
foreach(variable README WSGUARD_SOURCE_DIR WORK PREFIX)
  if("${${variable}}" STREQUAL "")
    message(FATAL_ERROR "readme: pass -D${variable}=...")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK}")
file(READ "${README}" text)
# One list element per line: the characters that lists treat specially are
# swapped out first and back when a block is written.
string(REPLACE ";" "@semicolon@" text "${text}")
string(REPLACE "[" "@open@" text "${text}")
string(REPLACE "]" "@close@" text "${text}")
string(REPLACE "\n" ";" lines "${text}")

function(restore out value)
  string(REPLACE "@semicolon@" ";" value "${value}")
  string(REPLACE "@open@" "[" value "${value}")
  string(REPLACE "@close@" "]" value "${value}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

set(cpp_blocks "")
set(cmake_blocks "")
set(language "")
set(previous "")
set(count 0)
set(line_number 0)
foreach(line IN LISTS lines)
  math(EXPR line_number "${line_number} + 1")
  if(language STREQUAL "")
    if(line MATCHES "^```(cpp|cmake)[ \t]*$")
      set(language "${CMAKE_MATCH_1}")
      math(EXPR count "${count} + 1")
      set(block "readme_${count}_line_${line_number}")
      set(start_line ${line_number})
      set(fragment OFF)
      if(previous MATCHES "^<!-- readme-test: fragment -->$")
        set(fragment ON)
      endif()
      set(head "")
      set(body "")
    elseif(line MATCHES "^```")
      set(language "other")
    endif()
  elseif(line MATCHES "^```[ \t]*$")
    restore(head "${head}")
    restore(body "${body}")
    if(language STREQUAL "cpp")
      if(fragment)
        set(source "${head}\n[[maybe_unused]] static void ${block}() {\n${body}}\n")
      else()
        set(source "${head}${body}")
      endif()
      file(WRITE "${WORK}/cpp/${block}.cpp" "${source}")
      list(APPEND cpp_blocks ${block})
    elseif(language STREQUAL "cmake")
      file(WRITE "${WORK}/${block}/main.cpp" "int main() { return 0; }\n")
      file(WRITE "${WORK}/${block}/CMakeLists.txt"
           "cmake_minimum_required(VERSION 3.14)\nproject(${block} LANGUAGES CXX)\n"
           "add_executable(app main.cpp)\n# README.md line ${start_line}:\n${body}")
      list(APPEND cmake_blocks ${block})
    endif()
    set(language "")
  elseif(language MATCHES "^(cpp|cmake)$")
    if(fragment AND line MATCHES "^#include ")
      string(APPEND head "${line}\n")
    else()
      string(APPEND body "${line}\n")
    endif()
  endif()
  if(NOT line STREQUAL "")
    set(previous "${line}")
  endif()
endforeach()
if(NOT language STREQUAL "")
  message(FATAL_ERROR "readme: a code block is never closed")
endif()
if(NOT cpp_blocks OR NOT cmake_blocks)
  message(FATAL_ERROR "readme: expected cpp and cmake blocks in ${README}")
endif()

set(failures "")
# run(<what> <command...>): runs a step, records its output when it fails.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    set(failures "${failures}\n--- ${what} failed:\n${output}" PARENT_SCOPE)
  endif()
endfunction()

# The cpp blocks: one project, one object library per block.
string(CONCAT project "cmake_minimum_required(VERSION 3.14)\nproject(readme_cpp LANGUAGES CXX)\n"
            "add_subdirectory(\"${WSGUARD_SOURCE_DIR}\" wsguard)\n")
foreach(block IN LISTS cpp_blocks)
  string(APPEND project
    "add_library(${block} OBJECT ${block}.cpp)\n"
    "target_link_libraries(${block} PRIVATE wsguard::websocketpp "
    "$<$<TARGET_EXISTS:wsguard::redis>:wsguard::redis>)\n")
endforeach()
file(WRITE "${WORK}/cpp/CMakeLists.txt" "${project}")
run("configuring the cpp blocks" "${CMAKE_COMMAND}" -S "${WORK}/cpp" -B "${WORK}/cpp/build" ${ARGS})
if(NOT failures)
  run("compiling the cpp blocks" "${CMAKE_COMMAND}" --build "${WORK}/cpp/build")
endif()

foreach(block IN LISTS cmake_blocks)
  run("configuring ${block}" "${CMAKE_COMMAND}" -S "${WORK}/${block}" -B "${WORK}/${block}/build"
      ${ARGS} "-DCMAKE_PREFIX_PATH=${PREFIX}"
      "-DFETCHCONTENT_SOURCE_DIR_WSGUARD=${WSGUARD_SOURCE_DIR}"
      -DFETCHCONTENT_FULLY_DISCONNECTED=ON)
endforeach()

if(failures)
  message(FATAL_ERROR "readme: a block of ${README} does not build (sources in ${WORK}):${failures}")
endif()
list(LENGTH cpp_blocks cpp_count)
list(LENGTH cmake_blocks cmake_count)
message(STATUS "readme: ${cpp_count} cpp and ${cmake_count} cmake blocks build")
