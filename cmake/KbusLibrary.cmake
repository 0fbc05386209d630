# libkbus, the library that ships, and the installation of kbus.
#
# libkbus.so.0 (soname) and libkbus.a hold the C++ client (kbus::Ksock ...,
# <kbus/*.hpp>) and the C API (<libkbus/kbus.h>, src/capi) - the very object
# files the tests link (STYLE.md 14): the layers are compiled once, with
# -fvisibility=hidden, and the shared library exports only what the public
# headers mark KBUS_EXPORT (include/kbus/export.hpp), further limited by the
# export list cmake/libkbus.map. tests/capi/check_exports.cmake checks it.
#
# `cmake --install` installs: kbusd, kbus; the headers; both libraries; the
# pkg-config files kbus.pc and kbus++.pc (C++: adds -std=c++20); the CMake
# package kbus (find_package(kbus) ->
# kbus::kbus, kbus::kbus_static); the Python package kbus; the man pages
# kbusd(8), kbus(1); and the systemd unit kbusd.service. Both packages are
# relocatable, so `cmake --install --prefix P` may choose another prefix
# than the one configured.

# ---- the C API layer ----
file(GLOB KBUS_CAPI_SRC CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/capi/*.cpp)
list(FILTER KBUS_CAPI_SRC EXCLUDE REGEX "_test\\.cpp$")
add_library(kbus_capi STATIC ${KBUS_CAPI_SRC})
target_link_libraries(kbus_capi PUBLIC kbus_client)

# ---- the cppkbus layer: the original C++ binding (<cppkbus/cppkbus.h>,
# namespace cppkbus, KBUS-SPEC.md §12.3), over the C API ----
add_library(kbus_cppkbus STATIC ${PROJECT_SOURCE_DIR}/src/cppkbus/cppkbus.cpp)
target_link_libraries(kbus_cppkbus PUBLIC kbus_capi)

# ---- the libraries ----
set(KBUS_LIBRARY_LAYERS kbus_core kbus_util kbus_shm kbus_protocol kbus_client kbus_capi kbus_cppkbus)
# The limpet core (src/limpet) under <libkbus/limpet.h> (capi/limpet_api.cpp).
if(TARGET kbus_limpet_core)
  target_link_libraries(kbus_capi PUBLIC kbus_limpet_core)
  list(APPEND KBUS_LIBRARY_LAYERS kbus_limpet_core)
endif()
set_target_properties(${KBUS_LIBRARY_LAYERS} PROPERTIES
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON)
set(KBUS_LIBRARY_OBJECTS)
foreach(layer IN LISTS KBUS_LIBRARY_LAYERS)
  list(APPEND KBUS_LIBRARY_OBJECTS $<TARGET_OBJECTS:${layer}>)
endforeach()

# include/libkbus is on the path too, so that the original's
# <linux/kbus_defns.h> (and "kbus.h") reach include/libkbus/linux/... .
set(KBUS_PUBLIC_INCLUDE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include/libkbus>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/libkbus>)

add_library(kbus_shared SHARED ${KBUS_LIBRARY_OBJECTS})
set_target_properties(kbus_shared PROPERTIES
  OUTPUT_NAME kbus
  EXPORT_NAME kbus
  VERSION ${PROJECT_VERSION}
  SOVERSION 0
  LINKER_LANGUAGE CXX
  LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/libkbus.map)
target_link_options(kbus_shared PRIVATE
  "LINKER:--version-script=${PROJECT_SOURCE_DIR}/cmake/libkbus.map")
# Every symbol resolved at link time (not with sanitizers: clang leaves
# their runtime to the executable).
if(NOT KBUS_SANITIZE AND NOT CMAKE_CXX_FLAGS MATCHES "-fsanitize")
  target_link_options(kbus_shared PRIVATE "LINKER:--no-undefined")
endif()
target_include_directories(kbus_shared INTERFACE ${KBUS_PUBLIC_INCLUDE})
target_compile_features(kbus_shared INTERFACE cxx_std_20)  # <kbus/*.hpp> are C++20
add_library(kbus::kbus ALIAS kbus_shared)

add_library(kbus_static STATIC ${KBUS_LIBRARY_OBJECTS})
set_target_properties(kbus_static PROPERTIES
  OUTPUT_NAME kbus
  EXPORT_NAME kbus_static
  LINKER_LANGUAGE CXX)
target_include_directories(kbus_static INTERFACE ${KBUS_PUBLIC_INCLUDE})
target_compile_features(kbus_static INTERFACE cxx_std_20)
# A C program linking the archive needs the C++ runtime.
target_link_libraries(kbus_static INTERFACE stdc++ m)
add_library(kbus::kbus_static ALIAS kbus_static)

# ---- installation ----
include(CMakePackageConfigHelpers)

set(KBUS_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kbus CACHE STRING
    "where the CMake package kbus is installed, relative to the prefix")
set(KBUS_PKGCONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig CACHE STRING
    "where kbus.pc is installed, relative to the prefix")
set(KBUS_SYSTEMD_UNIT_DIR lib/systemd/system CACHE STRING
    "where kbusd.service is installed, relative to the prefix")

# The Python package goes where the python3 of this machine looks for it
# under the prefix: Debian's dist-packages (lib/python3/dist-packages for
# /usr, lib/python3.X/dist-packages elsewhere), else site-packages.
set(KBUS_PYTHON_INSTALL_DIR "" CACHE STRING
    "where the Python package kbus is installed, relative to the prefix (empty: as python3 expects)")
set(KBUS_PYTHON_DIR "${KBUS_PYTHON_INSTALL_DIR}")
if(NOT KBUS_PYTHON_DIR)
  # The system's interpreter first (not a pyenv or virtualenv one).
  find_program(KBUS_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
  find_program(KBUS_PYTHON3 python3)
  if(KBUS_PYTHON3)
    execute_process(
      COMMAND ${KBUS_PYTHON3} -c
        "import sys, sysconfig\nv = '%d.%d' % sys.version_info[:2]\nif 'deb_system' in sysconfig.get_scheme_names():\n    print('lib/python3/dist-packages' if sys.argv[1] == '/usr' else 'lib/python' + v + '/dist-packages')\nelse:\n    print('lib/python' + v + '/site-packages')"
        "${CMAKE_INSTALL_PREFIX}"
      OUTPUT_VARIABLE KBUS_PYTHON_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  if(NOT KBUS_PYTHON_DIR)
    set(KBUS_PYTHON_DIR lib/python3/site-packages)
  endif()
endif()

install(TARGETS kbus_shared kbus_static EXPORT kbusTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

install(EXPORT kbusTargets NAMESPACE kbus:: DESTINATION ${KBUS_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kbusConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/kbusConfig.cmake
  INSTALL_DESTINATION ${KBUS_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/kbusConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/kbusConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/kbusConfigVersion.cmake
  DESTINATION ${KBUS_CMAKE_DIR})

# kbus.pc finds the prefix from its own location (${pcfiledir}).
function(kbus_relative_to_prefix out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "\${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
file(RELATIVE_PATH KBUS_PC_TO_PREFIX /prefix/${KBUS_PKGCONFIG_DIR} /prefix)
string(REGEX REPLACE "/$" "" KBUS_PC_TO_PREFIX "${KBUS_PC_TO_PREFIX}")
kbus_relative_to_prefix(KBUS_PC_LIBDIR ${CMAKE_INSTALL_LIBDIR})
kbus_relative_to_prefix(KBUS_PC_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
configure_file(${PROJECT_SOURCE_DIR}/cmake/kbus.pc.in ${PROJECT_BINARY_DIR}/kbus.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kbus.pc DESTINATION ${KBUS_PKGCONFIG_DIR})
# kbus++.pc: kbus.pc plus -std=c++20 for the C++ headers.
configure_file(${PROJECT_SOURCE_DIR}/cmake/kbus++.pc.in ${PROJECT_BINARY_DIR}/kbus++.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kbus++.pc DESTINATION ${KBUS_PKGCONFIG_DIR})

# The documents the headers and man pages cite (docs/protocol.md,
# KBUS-SPEC.md, decisions.md ...), so that their references resolve in an
# installation too: PREFIX/share/doc/kbus.
file(GLOB KBUS_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${KBUS_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/kbusd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/kbus.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/kbus
  DESTINATION ${KBUS_PYTHON_DIR}
  FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)

# The unit names kbusd by its absolute installed path, known only when
# installing (the prefix may be given to `cmake --install`).
install(CODE "
  set(KBUSD \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/kbusd\")
  configure_file(\"${PROJECT_SOURCE_DIR}/packaging/kbusd.service.in\"
                 \"${PROJECT_BINARY_DIR}/packaging/kbusd.service\" @ONLY)
")
install(FILES ${PROJECT_BINARY_DIR}/packaging/kbusd.service DESTINATION ${KBUS_SYSTEMD_UNIT_DIR})

# ---- tests ----
if(KBUS_BUILD_TESTS)
  add_subdirectory(${PROJECT_SOURCE_DIR}/tests/capi ${PROJECT_BINARY_DIR}/tests/capi)
  add_subdirectory(${PROJECT_SOURCE_DIR}/tests/install ${PROJECT_BINARY_DIR}/tests/install)
endif()
