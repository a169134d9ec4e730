# cmake -DCLANG_FORMAT=<exe> -DSOURCE_DIR=<repo> -P check_format.cmake
# Fails, listing the files, if any C++ file under include/, examples/, tests/,
# benchmarks/ or fuzz/ differs from what the root .clang-format produces.
file(GLOB_RECURSE sources RELATIVE "${SOURCE_DIR}"
     "${SOURCE_DIR}/include/*.hpp" "${SOURCE_DIR}/examples/*.hpp" "${SOURCE_DIR}/examples/*.cpp"
     "${SOURCE_DIR}/tests/*.hpp" "${SOURCE_DIR}/tests/*.cpp" "${SOURCE_DIR}/benchmarks/*.hpp"
     "${SOURCE_DIR}/benchmarks/*.cpp" "${SOURCE_DIR}/fuzz/*.hpp" "${SOURCE_DIR}/fuzz/*.cpp")
set(unformatted "")
foreach(f IN LISTS sources)
  execute_process(COMMAND "${CLANG_FORMAT}" --dry-run --Werror "${SOURCE_DIR}/${f}"
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT rc EQUAL 0)
    list(APPEND unformatted "${f}")
  endif()
endforeach()
list(LENGTH sources checked)
if(unformatted)
  list(JOIN unformatted "\n  " listed)
  message(FATAL_ERROR "not clang-formatted (run clang-format -i on them):\n  ${listed}")
endif()
message(STATUS "${checked} files clang-formatted")
