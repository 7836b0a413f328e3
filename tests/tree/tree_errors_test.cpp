// SPDX-License-Identifier: MIT
// Files that are readable zips but whose tree is wrong: every error names the file and the key.
#include <spdlog/sinks/ostream_sink.h>

#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::TempDir;
using ojson = nlohmann::ordered_json;

struct Entry {
  std::string name;
  std::string bytes;
};

std::string build(const TempDir& dir, const std::string& tree_json, const std::string& meta_json,
                  const std::vector<Entry>& extra = {}) {
  const std::string path = dir.file("t.zanj");
  zanj::ArchiveWriter w(path);
  if (!meta_json.empty()) w.add("__zanj_meta__.json", meta_json, zanj::Compression::kStored);
  if (!tree_json.empty()) w.add("__zanj__.json", tree_json, zanj::Compression::kStored);
  for (const auto& e : extra) w.add(e.name, e.bytes, zanj::Compression::kStored);
  w.commit();
  return path;
}

const char* kNoExternals = R"({"externals_info": {}})";

std::string external_meta(const std::string& name, const std::string& key) {
  return R"({"externals_info": {")" + name + R"(": {"item_type": "npy", "path": [")" + key +
         R"("]}}})";
}

TEST(TreeErrorsTest, RefToMissingEntry) {
  TempDir dir;
  const auto path = build(
      dir,
      R"({"w": {"__muutils_format__": "torch.Tensor:external", "$ref": "w.npy", "dtype": "float32"}})",
      kNoExternals);
  EXPECT_THAT([&] { zanj::read(path); },
              zanj_test::Throws<zanj::FormatError>(
                  "t.zanj: w: ", "'$ref' names entry w.npy, which the archive does not contain"));
}

// Int-keyed dicts are listed by path in our metadata; a list that does not fit the tree is
// refused naming the file and the path, never applied halfway.
TEST(TreeErrorsTest, IntKeyDictListsThatDoNotFitTheTree) {
  TempDir dir;
  const auto meta = [](const std::string& paths) {
    return R"({"configured_model": {"format_version": 1, "int_key_dicts": )" + paths +
           R"(}, "externals_info": {}})";
  };
  const std::string tree = R"({"state": {"0": 1, "12": 2}, "names": {"a": 1}, "l": [{"3": 4}]})";
  const zanj::Node good = zanj::read(build(dir, tree, meta(R"([["state"], ["l", 0]])")));
  EXPECT_EQ(good.at("state").key_type(), zanj::Node::KeyType::kInt);
  EXPECT_EQ(good.at("l").at(0).key_type(), zanj::Node::KeyType::kInt);
  EXPECT_EQ(good.at("names").key_type(), zanj::Node::KeyType::kString);
  EXPECT_EQ(good.key_type(), zanj::Node::KeyType::kString);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"([["names"]])", "int_key_dicts names '/names': "},
      {R"([["missing"]])", "int_key_dicts lists 1 dicts, the tree has 0"},
      {R"([["state", "0"]])", "'/state/0', which is not a dict"},
      {R"([["state"], ["state"]])", "lists [\"state\"] twice"},
      {R"([[1.5]])", "a path step must be a key or an index"},
      {R"({"state": 1})", "expected a list of paths"},
      {R"(["state"])", "expected a path (a list)"},
  };
  for (const auto& [paths, needle] : bad) {
    EXPECT_THAT([&] { zanj::read(build(dir, tree, meta(paths))); },
                zanj_test::Throws<zanj::FormatError>("t.zanj: __zanj_meta__.json: ", needle))
        << paths;
  }
}

TEST(TreeErrorsTest, ExternalListedButAbsent) {
  TempDir dir;
  const auto path = build(dir, R"({"w": 1})", external_meta("w.npy", "w"));
  EXPECT_THAT([&] { zanj::read(path); }, zanj_test::Throws<zanj::FormatError>(
                                             "t.zanj: w.npy: listed in externals_info but absent"));
}

TEST(TreeErrorsTest, RefNotListedInExternalsInfoWarnsOrThrows) {
  TempDir dir;
  const auto npy = zanj::encode_npy(torch::ones({300}));
  const auto path = build(
      dir,
      R"({"w": {"__muutils_format__": "torch.Tensor:external", "$ref": "w.npy", "dtype": "torch.float32"}})",
      kNoExternals, {{"w.npy", npy}});
  EXPECT_TRUE(torch::equal(zanj::read(path).at("w").tensor(), torch::ones({300})));
  zanj::ReadOptions strict;
  strict.error_mode = zanj::ErrorMode::kExcept;
  EXPECT_THAT([&] { zanj::read(path, strict); },
              zanj_test::Throws<zanj::FormatError>("t.zanj: w: '$ref' w.npy is not listed"));
}

TEST(TreeErrorsTest, NpyDtypeDifferentFromJsonIsCastWithAWarning) {
  TempDir dir;
  const auto npy = zanj::encode_npy(torch::arange(300, torch::kFloat64));
  const auto path = build(
      dir,
      R"({"w": {"__muutils_format__": "torch.Tensor:external", "$ref": "w.npy", "dtype": "torch.float32"}})",
      external_meta("w.npy", "w"), {{"w.npy", npy}});
  std::ostringstream log;
  zanj::set_logger(
      std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::ostream_sink_st>(log)));
  const auto t = zanj::read(path).at("w").tensor();
  zanj::set_logger(nullptr);
  EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_THAT(log.str(), HasSubstr("dtype mismatch: JSON says torch.float32, w.npy holds float64"));
  zanj::ReadOptions strict;
  strict.error_mode = zanj::ErrorMode::kExcept;
  EXPECT_THAT([&] { zanj::read(path, strict); },
              zanj_test::Throws<zanj::FormatError>("t.zanj: w: dtype mismatch"));
}

TEST(TreeErrorsTest, NpyShapeDifferentFromJson) {
  TempDir dir;
  const auto npy = zanj::encode_npy(torch::ones({300}));
  const auto path = build(
      dir,
      R"({"w": {"__muutils_format__": "torch.Tensor:external", "$ref": "w.npy", "shape": [3, 100], "dtype": "torch.float32"}})",
      external_meta("w.npy", "w"), {{"w.npy", npy}});
  EXPECT_THAT([&] { zanj::read(path); },
              zanj_test::Throws<zanj::FormatError>(
                  "t.zanj: w: shape mismatch (JSON says [3, 100], w.npy holds [300])"));
}

TEST(TreeErrorsTest, BadInlineArrays) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"a": {"b": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [1, 2], "shape": [3], "dtype": "float32"}}})",
       "t.zanj: a/b: data does not match shape [3]"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [300], "shape": [1], "dtype": "uint8"}})",
       "t.zanj: x: value 300 out of range for uint8"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [1.5], "shape": [1], "dtype": "int64"}})",
       "t.zanj: x: value 1.5 is not a valid int64"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": ["a"], "shape": [1], "dtype": "float32"}})",
       "t.zanj: x: tensor data must hold numbers, found string"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [1], "shape": [1], "dtype": "uint32"}})",
       "t.zanj: x: unsupported dtype 'uint32'"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [1], "shape": [1]}})",
       "t.zanj: x: missing key 'dtype'"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_hex_meta", "data": "abc", "shape": [1], "dtype": "int8"}})",
       "t.zanj: x: hex data has an odd number of digits"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_b64_meta", "data": "!!!!", "shape": [1], "dtype": "int8"}})",
       "t.zanj: x: invalid base64 character"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_hex_meta", "data": "0102", "shape": [3], "dtype": "int8"}})",
       "t.zanj: x: data holds 2 bytes (expected 3"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:zero_dim", "data": 1, "shape": [1], "dtype": "torch.int64"}})",
       "t.zanj: x: zero_dim tensor with non-empty shape"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:array_list_meta", "data": [], "shape": [4294967296, 4294967296, 4294967296], "dtype": "int8"}})",
       "t.zanj: x: shape product overflows"},
      {R"({"x": {"__muutils_format__": "torch.Tensor:no_such_mode", "data": [], "dtype": "int8"}})",
       "t.zanj: x: unknown array mode 'no_such_mode'"},
  };
  for (const auto& [json, message] : cases) {
    SCOPED_TRACE(json);
    EXPECT_THAT([&] { zanj::read(build(dir, json, kNoExternals)); },
                zanj_test::Throws<zanj::FormatError>(message));
  }
}

TEST(TreeErrorsTest, MissingOrMalformedEntries) {
  TempDir dir;
  EXPECT_THAT(
      [&] { zanj::read(build(dir, "", kNoExternals)); },
      zanj_test::Throws<zanj::FormatError>("t.zanj: __zanj__.json: missing (not a ZANJ archive)"));
  EXPECT_THAT([&] { zanj::read(build(dir, "{\"a\": ", kNoExternals)); },
              zanj_test::Throws<zanj::FormatError>("t.zanj: __zanj__.json: malformed JSON"));
  EXPECT_THAT(
      [&] { zanj::read(build(dir, "{}", "[1]")); },
      zanj_test::Throws<zanj::FormatError>("t.zanj: __zanj_meta__.json: expected a JSON object"));
  // No meta: Python refuses; we read with a warning, or refuse in kExcept mode.
  const auto no_meta = build(dir, R"({"a": 1})", "");
  EXPECT_EQ(zanj::read(no_meta).at("a").scalar(), 1);
  zanj::ReadOptions strict;
  strict.error_mode = zanj::ErrorMode::kExcept;
  EXPECT_THAT([&] { zanj::read(no_meta, strict); },
              zanj_test::Throws<zanj::FormatError>("__zanj_meta__.json is missing"));
}

TEST(TreeErrorsTest, BadJsonlLinesNameTheLine) {
  TempDir dir;
  const auto path =
      build(dir, R"({"l": {"__muutils_format__": "list:external", "$ref": "l.jsonl"}})",
            R"({"externals_info": {"l.jsonl": {"item_type": "jsonl", "path": ["l"]}}})",
            {{"l.jsonl", "1\n2\n{oops\n"}});
  EXPECT_THAT([&] { zanj::read(path); },
              zanj_test::Throws<zanj::FormatError>("t.zanj: l.jsonl line 3: malformed JSON"));
}

TEST(TreeErrorsTest, ExternalWithoutRefIsFoundThroughExternalsInfo) {
  TempDir dir;
  const auto npy = zanj::encode_npy(torch::arange(300));
  const auto path = build(
      dir, R"({"w": {"__muutils_format__": "torch.Tensor:external", "dtype": "torch.int64"}})",
      external_meta("w.npy", "w"), {{"w.npy", npy}});
  EXPECT_TRUE(torch::equal(zanj::read(path).at("w").tensor(), torch::arange(300)));
}

}  // namespace
