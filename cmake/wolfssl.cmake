# wolfSSL for stanzad: the target stanzad::wolfssl.
#
# bundled (default): Debian's source of wolfSSL, configured for stanzad (SP math with
#   x86-64 assembly for P-256/P-384/P-521 and RSA, X25519, TLS 1.2 and 1.3 only, no session
#   certificate chains) and linked statically. scripts/wolfssl.sh fetches and builds it
#   once, at configure time, for every build directory (in .deps/); it holds the
#   version and the configure line (docs/operating.md "Rebuilding wolfSSL").
# system: Debian's libwolfssl-dev, found with pkg-config.
set(STANZAD_WOLFSSL "bundled" CACHE STRING "wolfSSL to link: bundled (built for stanzad) or system")
set_property(CACHE STANZAD_WOLFSSL PROPERTY STRINGS bundled system)

if(STANZAD_WOLFSSL STREQUAL "system")
  pkg_check_modules(WOLFSSL REQUIRED IMPORTED_TARGET wolfssl)
  add_library(stanzad::wolfssl ALIAS PkgConfig::WOLFSSL)
  message(STATUS "wolfSSL: the system's ${WOLFSSL_VERSION} (shared)")
elseif(STANZAD_WOLFSSL STREQUAL "bundled")
  set(wolfssl_script ${PROJECT_SOURCE_DIR}/scripts/wolfssl.sh)
  execute_process(COMMAND ${wolfssl_script} build RESULT_VARIABLE wolfssl_result)
  if(NOT wolfssl_result EQUAL 0)
    message(FATAL_ERROR "building stanzad's wolfSSL failed (the line above says why). "
                        "Or configure with -DSTANZAD_WOLFSSL=system to link the system's "
                        "libwolfssl-dev instead.")
  endif()
  execute_process(COMMAND ${wolfssl_script} prefix OUTPUT_VARIABLE wolfssl_prefix
                  OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND ${wolfssl_script} version OUTPUT_VARIABLE STANZAD_WOLFSSL_VERSION
                  OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  # Reconfigure when the script (version, configure line) changes or the library goes.
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${wolfssl_script}
                                                                 ${wolfssl_prefix}/stanzad-wolfssl.stamp)
  set(STANZAD_WOLFSSL_COPYRIGHT ${wolfssl_prefix}/copyright)
  find_package(Threads REQUIRED)
  add_library(stanzad_wolfssl_bundled STATIC IMPORTED GLOBAL)
  set_target_properties(stanzad_wolfssl_bundled PROPERTIES
    IMPORTED_LOCATION ${wolfssl_prefix}/lib/libwolfssl.a
    INTERFACE_INCLUDE_DIRECTORIES ${wolfssl_prefix}/include
    INTERFACE_LINK_LIBRARIES "Threads::Threads;m")
  add_library(stanzad::wolfssl ALIAS stanzad_wolfssl_bundled)
  message(STATUS "wolfSSL: Debian's ${STANZAD_WOLFSSL_VERSION}, built for stanzad (static) in ${wolfssl_prefix}")
else()
  message(FATAL_ERROR "STANZAD_WOLFSSL is \"${STANZAD_WOLFSSL}\"; it must be bundled or system")
endif()
