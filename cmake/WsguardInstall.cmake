include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(WSGUARD_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/wsguard" CACHE STRING
    "Where wsguardConfig.cmake is installed")

install(TARGETS wsguard EXPORT wsguardTargets)
install(DIRECTORY include/ DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT wsguardTargets NAMESPACE wsguard:: DESTINATION "${WSGUARD_CMAKE_DIR}")
# One file per adapter, so the config loads an adapter only when asked for it
# and its dependencies are found (wsguardConfig.cmake.in).
if(TARGET wsguard_websocketpp)
  install(TARGETS wsguard_websocketpp EXPORT wsguardWebsocketppTargets)
  install(EXPORT wsguardWebsocketppTargets NAMESPACE wsguard::
          DESTINATION "${WSGUARD_CMAKE_DIR}")
endif()
if(TARGET wsguard_redis)
  install(TARGETS wsguard_redis EXPORT wsguardRedisTargets)
  install(EXPORT wsguardRedisTargets NAMESPACE wsguard:: DESTINATION "${WSGUARD_CMAKE_DIR}")
endif()

configure_package_config_file(
  "${CMAKE_CURRENT_SOURCE_DIR}/cmake/wsguardConfig.cmake.in"
  "${CMAKE_CURRENT_BINARY_DIR}/wsguardConfig.cmake"
  INSTALL_DESTINATION "${WSGUARD_CMAKE_DIR}")
# Headers only: the same package serves 32- and 64-bit consumers.
write_basic_package_version_file(
  "${CMAKE_CURRENT_BINARY_DIR}/wsguardConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/wsguardConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/wsguardConfigVersion.cmake"
        DESTINATION "${WSGUARD_CMAKE_DIR}")
install(FILES LICENSE README.md DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/wsguard")
