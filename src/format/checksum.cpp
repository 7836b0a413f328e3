// SPDX-License-Identifier: MIT
#include "configured_model/checksum.hpp"

#include <isa-l/crc.h>
#include <zlib.h>

namespace zanj {

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) {
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), n);
}

std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t bytes_b) {
  return static_cast<std::uint32_t>(crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(bytes_b)));
}

}  // namespace zanj
