// SPDX-License-Identifier: MIT
// libFuzzer target: the ZANJ JSON tree reader (tags, dtypes, shapes, $ref). The input is the
// text of __zanj__.json; the archive around it holds a few real entries to point at.
#include <configured_model/configured_model.hpp>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>

namespace {

const zanj::ArchiveReader& archive() {
  static const zanj::ArchiveReader* a = [] {
    zanj::Node tree = zanj::Node::dict();
    tree["w"] = at::arange(300, at::kFloat).reshape({30, 10});
    tree["b"] = at::ones({2, 0});
    tree["l"] = nlohmann::json(std::vector<int>(300, 7));
    const std::string path = "/tmp/zanj_tree_fuzz_fixture.zanj";
    zanj::save(tree, path);
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return new zanj::ArchiveReader(zanj::ArchiveReader::from_bytes(bytes, "fixture.zanj"));
  }();
  return *a;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto& a = archive();
  const nlohmann::ordered_json externals_info = {
      {"w.npy", {{"item_type", "npy"}, {"path", {"w"}}}},
      {"b.npy", {{"item_type", "npy"}, {"path", {"b"}}}},
      {"l.jsonl", {{"item_type", "jsonl"}, {"path", {"l"}}}}};
  zanj::ReadOptions options;
  options.error_mode = zanj::ErrorMode::kIgnore;
  try {
    const auto json = zanj::parse_json(text, "fuzz", "__zanj__.json");
    const zanj::Node node = zanj::deserialize_tree(json, a, externals_info, options);
    // A tree that was read must save and read back.
    if (node.is_dict()) (void)zanj::serialize_tree(node);
  } catch (const zanj::Error&) {
  }
  return 0;
}
