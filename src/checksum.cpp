// SPDX-License-Identifier: MIT
#include "configured_model/checksum.hpp"

#include <isa-l/crc.h>

namespace zanj {
namespace {
// Below this a hand-off to the helper costs more than it saves.
constexpr std::size_t kInlineBytes = 256 << 10;
constexpr int kSpins = 2000;
}  // namespace

std::uint32_t crc32(std::uint32_t crc, const void* data, std::size_t n) {
  return crc32_gzip_refl(crc, static_cast<const unsigned char*>(data), n);
}

PipelinedCrc32::~PipelinedCrc32() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

// Waking a sleeping thread can take longer than summing a slice (tens of microseconds in a VM),
// so both sides poll briefly before they block.
template <class Predicate>
void spin_then_wait(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                    Predicate ready) {
  for (int i = 0; i < kSpins && !ready(); ++i) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
  cv.wait(lock, ready);
}

void PipelinedCrc32::wait_idle(std::unique_lock<std::mutex>& lock) {
  spin_then_wait(lock, cv_, [this] { return !busy_; });
}

void PipelinedCrc32::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    spin_then_wait(lock, cv_, [this] { return busy_ || stop_; });
    if (!busy_) return;  // stopped with nothing left to do
    const void* data = data_;
    const std::size_t n = size_;
    const std::uint32_t start = crc_;
    lock.unlock();
    const std::uint32_t crc = crc32(start, data, n);
    lock.lock();
    crc_ = crc;
    busy_ = false;
    cv_.notify_all();
  }
}

void PipelinedCrc32::feed(const void* data, std::size_t n) {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_idle(lock);
  if (n < kInlineBytes) {
    crc_ = crc32(crc_, data, n);
    return;
  }
  if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
  data_ = data;
  size_ = n;
  busy_ = true;
  lock.unlock();
  cv_.notify_all();
}

std::uint32_t PipelinedCrc32::finish() {
  std::unique_lock<std::mutex> lock(mutex_);
  wait_idle(lock);
  return crc_;
}

}  // namespace zanj
