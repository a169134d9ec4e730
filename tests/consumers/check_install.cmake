# What `cmake --install` puts in the prefix (run with cmake -P):
#   -DWSGUARD_SOURCE_DIR=<wsguard tree>  -DWSGUARD_BINARY_DIR=<the build that was installed>
#   -DWSGUARD_PREFIX=<install prefix>    -DWSGUARD_VERSION=<the project's version>
#
# Every header of include/ and nothing else, byte for byte; the three package
# files; a version file that a 32-bit consumer accepts (ARCH_INDEPENDENT: the
# library is headers only) and that follows SameMajorVersion; package files
# that name no directory of the machine they were built on (relocatable).

cmake_minimum_required(VERSION 3.14)

foreach(variable WSGUARD_SOURCE_DIR WSGUARD_BINARY_DIR WSGUARD_PREFIX WSGUARD_VERSION)
  if("${${variable}}" STREQUAL "")
    message(FATAL_ERROR "check_install: pass -D${variable}=...")
  endif()
endforeach()

set(failures "")
macro(fail text)
  list(APPEND failures "${text}")
endmacro()

# Headers: the installed include/ is the source include/, file for file.
file(GLOB_RECURSE source_headers RELATIVE "${WSGUARD_SOURCE_DIR}/include"
     "${WSGUARD_SOURCE_DIR}/include/*")
file(GLOB_RECURSE installed_headers RELATIVE "${WSGUARD_PREFIX}/include"
     "${WSGUARD_PREFIX}/include/*")
if(NOT "wsguard/wsguard.hpp" IN_LIST source_headers)
  fail("the source tree has no include/wsguard/wsguard.hpp")
endif()
foreach(header IN LISTS source_headers)
  if(NOT header IN_LIST installed_headers)
    fail("not installed: include/${header}")
  else()
    file(SHA256 "${WSGUARD_SOURCE_DIR}/include/${header}" source_hash)
    file(SHA256 "${WSGUARD_PREFIX}/include/${header}" installed_hash)
    if(NOT source_hash STREQUAL installed_hash)
      fail("installed include/${header} differs from the source")
    endif()
  endif()
endforeach()
foreach(header IN LISTS installed_headers)
  if(NOT header IN_LIST source_headers)
    fail("installed but not in the source include/: ${header}")
  endif()
endforeach()
# The adapter's directory, even while it is empty.
if(IS_DIRECTORY "${WSGUARD_SOURCE_DIR}/include/wsguard/websocketpp"
   AND NOT IS_DIRECTORY "${WSGUARD_PREFIX}/include/wsguard/websocketpp")
  fail("not installed: include/wsguard/websocketpp/")
endif()

# Package files.
set(package_dir "${WSGUARD_PREFIX}/share/cmake/wsguard")
set(package_files wsguardConfig.cmake wsguardConfigVersion.cmake wsguardTargets.cmake)
foreach(file IN LISTS package_files)
  if(NOT EXISTS "${package_dir}/${file}")
    fail("not installed: share/cmake/wsguard/${file}")
  endif()
endforeach()
if(EXISTS "${package_dir}/wsguardConfig.cmake")
  file(READ "${package_dir}/wsguardConfig.cmake" config)
  if(NOT config MATCHES "find_dependency\\(Threads\\)")
    fail("wsguardConfig.cmake does not find_dependency(Threads) for wsguard::wsguard")
  endif()
endif()

# Relocatable: no installed package file names the source, build or install
# directory; paths are computed from the file's own location.
file(GLOB installed_package_files "${package_dir}/*.cmake")
foreach(file IN LISTS installed_package_files)
  file(READ "${file}" content)
  foreach(dir WSGUARD_SOURCE_DIR WSGUARD_BINARY_DIR WSGUARD_PREFIX)
    string(FIND "${content}" "${${dir}}" position)
    if(NOT position EQUAL -1)
      get_filename_component(name "${file}" NAME)
      fail("${name} names ${dir} (${${dir}}): the package is not relocatable")
    endif()
  endforeach()
endforeach()

# Documentation, for the files the source has.
foreach(doc LICENSE README.md)
  if(EXISTS "${WSGUARD_SOURCE_DIR}/${doc}" AND NOT EXISTS "${WSGUARD_PREFIX}/share/doc/wsguard/${doc}")
    fail("not installed: share/doc/wsguard/${doc}")
  endif()
endforeach()

# The version file, asked as find_package asks it: <request> from a project
# whose pointers are <bits> wide. Sets <out>_compatible and <out>_unsuitable.
function(ask_version_file request bits out)
  string(REPLACE "." ";" parts "${request}")
  list(LENGTH parts count)
  set(PACKAGE_FIND_VERSION "${request}")
  set(PACKAGE_FIND_VERSION_COUNT ${count})
  set(index 0)
  foreach(part MAJOR MINOR PATCH TWEAK)
    if(index LESS count)
      list(GET parts ${index} PACKAGE_FIND_VERSION_${part})
    else()
      set(PACKAGE_FIND_VERSION_${part} 0)
    endif()
    math(EXPR index "${index} + 1")
  endforeach()
  math(EXPR CMAKE_SIZEOF_VOID_P "${bits} / 8")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
  set(PACKAGE_VERSION_UNSUITABLE FALSE)
  include("${package_dir}/wsguardConfigVersion.cmake")
  set(${out}_compatible ${PACKAGE_VERSION_COMPATIBLE} PARENT_SCOPE)
  set(${out}_unsuitable ${PACKAGE_VERSION_UNSUITABLE} PARENT_SCOPE)
  set(${out}_version ${PACKAGE_VERSION} PARENT_SCOPE)
endfunction()

if(EXISTS "${package_dir}/wsguardConfigVersion.cmake")
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" same_minor "${WSGUARD_VERSION}")
  set(major ${CMAKE_MATCH_1})
  math(EXPR next_major "${major} + 1")
  foreach(bits 32 64)
    ask_version_file("${same_minor}" ${bits} same)
    if(NOT same_version STREQUAL WSGUARD_VERSION)
      fail("the version file says ${same_version}, the project is ${WSGUARD_VERSION}")
    endif()
    if(same_unsuitable)
      fail("a ${bits}-bit consumer is refused: the version file is not ARCH_INDEPENDENT")
    elseif(NOT same_compatible)
      fail("a ${bits}-bit consumer asking for ${same_minor} is refused")
    endif()
    # SameMajorVersion: any older minor of the same major is accepted...
    ask_version_file("${major}.0" ${bits} older_minor)
    if(NOT older_minor_compatible)
      fail("a ${bits}-bit consumer asking for ${major}.0 is refused: not SameMajorVersion")
    endif()
    # ...but neither the next major nor (from 1.0 on) the previous one.
    ask_version_file("${next_major}.0" ${bits} next)
    if(next_compatible)
      fail("a ${bits}-bit consumer asking for ${next_major}.0 is accepted: not SameMajorVersion")
    endif()
    if(major GREATER 0)
      math(EXPR previous_major "${major} - 1")
      ask_version_file("${previous_major}.0" ${bits} previous)
      if(previous_compatible)
        fail("a ${bits}-bit consumer asking for ${previous_major}.0 is accepted: not SameMajorVersion")
      endif()
    endif()
  endforeach()
endif()

if(failures)
  list(JOIN failures "\n  " report)
  message(FATAL_ERROR "check_install: ${WSGUARD_PREFIX}\n  ${report}")
endif()
list(LENGTH installed_headers header_count)
message(STATUS "check_install: ${header_count} headers and the package files in ${WSGUARD_PREFIX}")
