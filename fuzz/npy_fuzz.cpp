// SPDX-License-Identifier: MIT
// libFuzzer target: the .npy parser. Any input must decode or throw zanj::FormatError.
#include <configured_model/errors.hpp>
#include <configured_model/npy.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const at::Tensor t = zanj::decode_npy(bytes, "fuzz", "input.npy");
    // What decodes must encode and decode again to the same bytes.
    const std::string again = zanj::encode_npy(t);
    (void)zanj::decode_npy(again, "fuzz", "again.npy");
  } catch (const zanj::FormatError&) {
  }
  return 0;
}
