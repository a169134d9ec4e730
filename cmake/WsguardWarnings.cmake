# Strict warnings for wsguard's own targets only; never forced on consumers,
# so they are an INTERFACE target that tests and examples link.
add_library(wsguard_warnings INTERFACE)
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(wsguard_warnings INTERFACE -Wall -Wextra -Wpedantic -Werror)
elseif(MSVC)
  target_compile_options(wsguard_warnings INTERFACE /W4 /WX)
endif()
