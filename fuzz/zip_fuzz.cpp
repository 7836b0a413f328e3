// SPDX-License-Identifier: MIT
// libFuzzer target: the zip container alone, from bytes: our central-directory parse, every
// entry's local header, and every entry's data streamed through EntryReader (stored data
// read, deflated data inflated by ISA-L, CRC-32 and the end of the stream checked), both in one
// go and in uneven pieces. Only zanj::Error may come out; no input may hang.
#include <configured_model/archive.hpp>
#include <configured_model/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  zanj::ArchiveLimits limits;
  limits.max_entry_bytes = 64u << 20;  // keep the fuzzer's memory bounded
  try {
    const auto archive = zanj::ArchiveReader::from_bytes(bytes, "fuzz.zip", limits);
    for (const auto& e : archive.entries()) {
      try {
        (void)archive.read(e.name);
      } catch (const zanj::Error&) {
      }
      try {
        auto r = archive.open_entry(e.name, true);
        std::vector<char> piece(997);
        while (r.remaining() > 0) {
          const auto n =
              static_cast<std::size_t>(std::min<std::uint64_t>(r.remaining(), piece.size()));
          r.read(piece.data(), n);
        }
        r.finish();
      } catch (const zanj::Error&) {
      }
    }
  } catch (const zanj::Error&) {
  }
  return 0;
}
