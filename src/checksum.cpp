// SPDX-License-Identifier: MIT
#include "configured_model/checksum.hpp"

#include <libdeflate.h>

namespace zanj {
namespace {
// Below this a thread hand-off costs more than it saves.
constexpr std::size_t kInlineBytes = 1 << 20;
}  // namespace

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) {
  return libdeflate_crc32(crc, data, n);
}

PipelinedCrc32::~PipelinedCrc32() {
  if (pending_.valid()) pending_.wait();
}

void PipelinedCrc32::feed(const void* data, std::size_t n) {
  if (pending_.valid()) crc_ = pending_.get();
  if (n < kInlineBytes) {
    crc_ = crc32(crc_, data, n);
    return;
  }
  pending_ = std::async(std::launch::async, [crc = crc_, data, n] { return crc32(crc, data, n); });
}

std::uint32_t PipelinedCrc32::finish() {
  if (pending_.valid()) crc_ = pending_.get();
  return crc_;
}

}  // namespace zanj
