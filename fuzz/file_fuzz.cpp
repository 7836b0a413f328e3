// SPDX-License-Identifier: MIT
// libFuzzer target: a whole .zanj from bytes, read every way a user can: the copy read (zip,
// both JSON entries, every external) and building the example's MyNN from it, the mapped read,
// and the lazy read of every listed tensor. Only zanj::Error may come out.
#include <configured_model/configured_model.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "../examples/mlp/my_nn.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  zanj::logger()->set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  zanj::ReadOptions options;
  options.archive_limits.max_entry_bytes = 64u << 20;  // keep the fuzzer's memory bounded
  options.json_limits.max_bytes = 16u << 20;
  auto open = [&] {
    return zanj::ArchiveReader::from_bytes(bytes, "fuzz.zanj", options.archive_limits);
  };
  try {
    const auto archive = open();
    const zanj::Node root = zanj::read(archive, options);
    if (root.is_dict() && root.contains("state_dict")) {
      (void)mlp::MyNN::from_node(root, "fuzz.zanj", options);
    }
  } catch (const zanj::Error&) {
  }
  try {
    zanj::ReadOptions mapped = options;
    mapped.mmap = true;
    const zanj::Node root = zanj::read(open(), mapped);
    // Touch every tensor: mapped data must lie inside the archive.
    std::function<void(const zanj::Node&)> touch = [&](const zanj::Node& n) {
      if (n.is_tensor()) (void)n.tensor().sum();
      if (n.is_list())
        for (const auto& i : n.as_list()) touch(i);
      if (n.is_dict())
        for (const auto& [k, v] : n.as_dict()) touch(v);
    };
    touch(root);
  } catch (const zanj::Error&) {
  }
  try {
    const auto lazy = zanj::LazyFile::open(open(), options);
    for (const auto& t : lazy.tensors()) {
      try {
        (void)lazy.tensor(t.key);
      } catch (const zanj::Error&) {
      }
    }
  } catch (const zanj::Error&) {
  }
  return 0;
}
