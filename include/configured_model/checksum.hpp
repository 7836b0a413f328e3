// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>

namespace zanj {

/// CRC-32 (the zip / zlib polynomial) of `n` bytes, continuing from `crc` (0 to start).
/// Uses libdeflate's carry-less-multiply implementation: about twice zlib's speed, so checking
/// the CRC of a read costs less than the read itself.
std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n);

/// CRC-32 of a byte stream computed on a helper thread, one chunk behind the caller: while the
/// caller writes (or reads) chunk k+1, the helper sums chunk k. The chunk's memory must stay
/// valid and unchanged until the next feed() or finish(). Small chunks are summed inline.
class PipelinedCrc32 {
 public:
  PipelinedCrc32() = default;
  ~PipelinedCrc32();
  PipelinedCrc32(const PipelinedCrc32&) = delete;
  PipelinedCrc32& operator=(const PipelinedCrc32&) = delete;

  /// Starts summing [data, data + n) after the bytes fed before.
  void feed(const void* data, std::size_t n);
  /// Waits for the helper and returns the CRC of everything fed.
  std::uint32_t finish();

 private:
  std::uint32_t crc_ = 0;
  std::future<std::uint32_t> pending_;
};

}  // namespace zanj
