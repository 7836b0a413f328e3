// SPDX-License-Identifier: MIT
// Private: the few zip records (APPNOTE 6.3.10) our writer emits and our offset scan reads.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace zanj::zipfmt {

inline constexpr std::uint32_t kLocalSig = 0x04034b50;
inline constexpr std::uint32_t kCentralSig = 0x02014b50;
inline constexpr std::uint32_t kEndSig = 0x06054b50;
inline constexpr std::uint32_t kEnd64Sig = 0x06064b50;
inline constexpr std::uint32_t kEnd64LocatorSig = 0x07064b50;
inline constexpr std::size_t kLocalHeaderBytes = 30;
inline constexpr std::size_t kCentralHeaderBytes = 46;
inline constexpr std::size_t kEndBytes = 22;
inline constexpr std::size_t kEnd64Bytes = 56;
inline constexpr std::size_t kEnd64LocatorBytes = 20;
inline constexpr std::uint16_t kZip64ExtraId = 0x0001;
/// Padding extra field that places data at an aligned offset (libtorch's writer uses it too).
inline constexpr std::uint16_t kPaddingExtraId = 0x4246;
inline constexpr std::uint32_t kMax32 = 0xFFFFFFFFu;
inline constexpr std::uint16_t kMax16 = 0xFFFFu;

/// Appends little-endian integers to a record under construction.
class RecordBuilder {
 public:
  RecordBuilder& u16(std::uint64_t v) { return put(v, 2); }
  RecordBuilder& u32(std::uint64_t v) { return put(v, 4); }
  RecordBuilder& u64(std::uint64_t v) { return put(v, 8); }
  RecordBuilder& bytes(std::string_view s) {
    out_.append(s.data(), s.size());
    return *this;
  }
  RecordBuilder& zeros(std::size_t n) {
    out_.append(n, '\0');
    return *this;
  }
  std::string& str() { return out_; }

 private:
  RecordBuilder& put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
    return *this;
  }
  std::string out_;
};

/// Little-endian integer at `p` (n = 2, 4 or 8 bytes).
inline std::uint64_t get_le(const char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace zanj::zipfmt
