// SPDX-License-Identifier: MIT
// libFuzzer target: a whole .zanj from bytes: the zip, both JSON entries, every external, and
// building the example's MyNN from it. Only zanj::Error may come out.
#include <configured_model/configured_model.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../examples/mlp/my_nn.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zanj::logger()->set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  zanj::ReadOptions options;
  options.archive_limits.max_entry_bytes = 64u << 20;  // keep the fuzzer's memory bounded
  options.json_limits.max_bytes = 16u << 20;
  try {
    const auto archive =
        zanj::ArchiveReader::from_bytes(std::move(bytes), "fuzz.zanj", options.archive_limits);
    const zanj::Node root = zanj::read(archive, options);
    if (root.is_dict() && root.contains("state_dict")) {
      (void)mlp::MyNN::from_node(root, "fuzz.zanj", options);
    }
  } catch (const zanj::Error&) {
  }
  return 0;
}
