// SPDX-License-Identifier: MIT
// libFuzzer target: a Python torch.save file from bytes, through the zip reader, the restricted
// unpickler, storage checks and the tree conversion; and the same bytes as a bare pickle (so the
// unpickler is reached without a valid zip around it). Only zanj::Error may come out; no input
// may hang, crash or run anything.
#include <configured_model/errors.hpp>
#include <configured_model/torch_file.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "format/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  zanj::ArchiveLimits limits;
  limits.max_entry_bytes = 64u << 20;  // keep the fuzzer's memory bounded
  try {
    (void)zanj::read_torch(zanj::ArchiveReader::from_bytes(bytes, "fuzz.pt", limits));
  } catch (const zanj::Error&) {
  }
  zanj::detail::PickleLimits pickle_limits;
  pickle_limits.max_values = 1u << 20;
  try {
    const auto storage = [](const std::string&, c10::ScalarType dtype, std::int64_t numel) {
      if (numel > (1 << 20)) throw zanj::FormatError("fuzz: storage too large");
      return at::zeros({numel}, at::TensorOptions().dtype(dtype));
    };
    const auto value =
        zanj::detail::unpickle(bytes, "fuzz.pkl", "data.pkl", storage, pickle_limits);
    (void)zanj::detail::to_node(value, "fuzz.pkl", pickle_limits);
  } catch (const zanj::Error&) {
  }
  return 0;
}
