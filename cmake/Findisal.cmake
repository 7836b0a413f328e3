# SPDX-License-Identifier: MIT
# Finds Intel's ISA-L (Debian: libisal-dev, which ships no CMake package) and defines the
# imported target isal::isal. configured_model uses its CRC-32, which picks the fastest kernel
# the CPU has at run time (AVX-512 VPCLMULQDQ, PCLMULQDQ, or table-driven).
find_path(isal_INCLUDE_DIR NAMES isa-l/crc.h)
find_library(isal_LIBRARY NAMES isal)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(isal REQUIRED_VARS isal_LIBRARY isal_INCLUDE_DIR)
if(isal_FOUND AND NOT TARGET isal::isal)
  add_library(isal::isal UNKNOWN IMPORTED)
  set_target_properties(isal::isal PROPERTIES
    IMPORTED_LOCATION "${isal_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${isal_INCLUDE_DIR}")
endif()
mark_as_advanced(isal_INCLUDE_DIR isal_LIBRARY)
