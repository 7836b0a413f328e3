// SPDX-License-Identifier: MIT
#include "configured_model/checksum.hpp"

#include <isa-l/crc.h>

namespace zanj {

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) {
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), n);
}

}  // namespace zanj
