// SPDX-License-Identifier: MIT
// libFuzzer target: a safetensors file from bytes: header length, JSON, dtypes, shapes,
// offsets tiling the data; then every tensor read both mapped and copied. Only zanj::Error
// may come out; no input may hang or crash.
#include <configured_model/errors.hpp>
#include <configured_model/safetensors.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto st = zanj::SafetensorsFile::from_bytes(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
    for (const auto& t : st.tensors()) {
      try {
        (void)st.tensor(t.key).sum();
        (void)st.read_tensor(t.key);
      } catch (const zanj::Error&) {
      }
    }
  } catch (const zanj::Error&) {
  }
  return 0;
}
