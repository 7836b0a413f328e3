// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// CRC-32 (the zip / zlib polynomial) of `n` bytes, continuing from `crc` (0 to start).
/// Uses ISA-L's implementation, which picks the CPU's fastest kernel at run time (31 GB/s with
/// AVX-512 VPCLMULQDQ against zlib's 3.4 GB/s on our test machine), so that checking the CRC of
/// a read costs a fraction of the read itself.
std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n);

/// CRC-32 of A followed by B, from crc(A), crc(B) and B's length (zlib's crc32_combine), so
/// that parts of one entry read or written on different threads can be summed separately.
std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t bytes_b);

/// Reads and writes move tensor data in slices of this size and sum each slice's CRC-32 right
/// after (or before) copying it, while it is still in the core's L2 cache. On our 2-core test
/// machine this beat summing on a helper thread, by 4x when the other core was busy (as it is
/// while training).
inline constexpr std::size_t kCrcSliceBytes = 512 << 10;

}  // namespace zanj

CONFIGURED_MODEL_API_END
