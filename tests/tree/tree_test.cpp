// SPDX-License-Identifier: MIT
#include <cmath>
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using ojson = nlohmann::ordered_json;

using zanj_test::sample;

zanj::Node save_and_read(const zanj::Node& tree, const std::string& path,
                         const zanj::SaveOptions& options = {}) {
  zanj::save(tree, path, options);
  EXPECT_TRUE(zanj_test::SoundZip(path));
  return zanj::read(path);
}

class TreeRoundTripTest : public ::testing::TestWithParam<zanj::ArrayMode> {};

TEST_P(TreeRoundTripTest, EveryDtypeAndShapeBitForBit) {
  torch::manual_seed(2);
  TempDir dir;
  const std::vector<std::vector<int64_t>> shapes = {{},     {0},   {3},   {2, 3},  {0, 4},
                                                    {2, 0}, {255}, {256}, {20, 20}};
  zanj::Node tree = zanj::Node::dict();
  std::vector<std::pair<std::string, torch::Tensor>> originals;
  for (auto dtype : zanj_test::all_dtypes()) {
    for (const auto& shape : shapes) {
      const std::string key = std::string(c10::toString(dtype)) + "_" + c10::str(shape);
      auto t = sample(dtype, shape);
      tree[key] = t;
      originals.emplace_back(key, t);
    }
  }
  zanj::SaveOptions options;
  options.array_mode = GetParam();
  const auto back = save_and_read(tree, dir.file("all.zanj"), options);
  for (const auto& [key, t] : originals) {
    SCOPED_TRACE(key);
    EXPECT_TRUE(BitIdentical(back.at(key).tensor(), t));
  }
  // Every entry we wrote loads with numpy the way Python ZANJ loads it.
  if (zanj_test::python_has("numpy")) {
    EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                             "/check_checkpoint.py " + dir.file("all.zanj") + " 2>&1"),
              0);
  }
}

INSTANTIATE_TEST_SUITE_P(AllArrayModes, TreeRoundTripTest,
                         ::testing::Values(zanj::ArrayMode::kListMeta, zanj::ArrayMode::kHexMeta,
                                           zanj::ArrayMode::kB64Meta),
                         [](const ::testing::TestParamInfo<zanj::ArrayMode>& param_info) {
                           switch (param_info.param) {
                             case zanj::ArrayMode::kHexMeta:
                               return std::string("HexMeta");
                             case zanj::ArrayMode::kB64Meta:
                               return std::string("B64Meta");
                             default:
                               return std::string("ListMeta");
                           }
                         });

TEST(TreeTest, ThresholdIsInclusiveAndForcedExternalsAreExternal) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["n255"] = torch::zeros({255});
  tree["n256"] = torch::zeros({256});
  tree["bf16"] = torch::ones({2}, torch::kBFloat16);
  tree["complex"] = torch::ones({2}, torch::kComplexFloat);
  tree["empty2d"] = torch::zeros({0, 5});
  tree["list255"] = nlohmann::json(std::vector<int>(255, 1));
  tree["list256"] = nlohmann::json(std::vector<int>(256, 1));
  zanj::save(tree, dir.file("t.zanj"));
  const auto archive = zanj::ArchiveReader::open(dir.file("t.zanj"));
  EXPECT_FALSE(archive.contains("n255.npy"));
  EXPECT_TRUE(archive.contains("n256.npy"));
  EXPECT_TRUE(archive.contains("bf16.npy"));
  EXPECT_TRUE(archive.contains("complex.npy"));
  EXPECT_TRUE(archive.contains("empty2d.npy"));
  EXPECT_FALSE(archive.contains("list255.jsonl"));
  EXPECT_TRUE(archive.contains("list256.jsonl"));
  const auto tree_json = zanj::parse_json(archive.read("__zanj__.json"), "t", "t");
  EXPECT_EQ(tree_json["bf16"]["dtype"], "torch.bfloat16");
  EXPECT_EQ(tree_json["n255"]["dtype"], "float32");
  EXPECT_EQ(tree_json["n256"]["dtype"], "torch.float32");
  // bfloat16 is stored as exact <f4 values.
  EXPECT_EQ(zanj::parse_npy_header(archive.read("bf16.npy")).descr, "<f4");
  const auto meta = zanj::parse_json(archive.read("__zanj_meta__.json"), "t", "t");
  EXPECT_EQ(meta["externals_info"]["n256.npy"]["path"], ojson::array({"n256"}));
  EXPECT_EQ(meta["externals_info"]["list256.jsonl"]["item_type"], "jsonl");
  EXPECT_EQ(meta["configured_model"]["format_version"], zanj::kFormatVersion);
}

TEST(TreeTest, GenericTreesRoundTrip) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["embedding"] = torch::randn({100, 8});
  tree["meta"] = nlohmann::json{{"epoch", 3}, {"lr", 1e-3},       {"name", "h\u00e9llo"},
                                {"nan", NAN}, {"big", INT64_MAX}, {"nested", {{"a", {1, 2}}}}};
  zanj::Node tensors = zanj::Node::list();
  for (int i = 0; i < 300; ++i)
    tensors.push_back(i % 100 == 1 ? zanj::Node(torch::randn({300}))
                                   : zanj::Node(nlohmann::json(i)));
  tree["many"] = tensors;  // long list (.jsonl) with nested external tensors
  const auto back = save_and_read(tree, dir.file("g.zanj"));
  EXPECT_TRUE(BitIdentical(back.at("embedding").tensor(), tree.at("embedding").tensor()));
  const auto meta = back.at("meta").to_json();
  EXPECT_EQ(meta["epoch"], 3);
  EXPECT_EQ(meta["lr"], 1e-3);
  EXPECT_EQ(meta["name"], "h\u00e9llo");
  EXPECT_TRUE(std::isnan(meta["nan"].get<double>()));
  EXPECT_EQ(meta["big"].get<int64_t>(), INT64_MAX);
  EXPECT_EQ(meta["nested"]["a"], ojson::array({1, 2}));
  ASSERT_EQ(back.at("many").size(), 300u);
  for (int i = 0; i < 300; ++i) {
    if (i % 100 == 1) {
      EXPECT_TRUE(BitIdentical(back.at("many").at(i).tensor(), tree.at("many").at(i).tensor()));
    } else {
      EXPECT_EQ(back.at("many").at(i).scalar(), i);
    }
  }
  EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                           "/check_checkpoint.py " + dir.file("g.zanj") + " 2>&1"),
            0);
}

TEST(TreeTest, CollidingExternalNamesStayReadable) {
  // {"a/b": t1, "a": {"b": t2}} both want "a/b.npy"; Python would refuse to save.
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["a/b"] = torch::full({300}, 1.0);
  tree["a"]["b"] = torch::full({300}, 2.0);
  const auto back = save_and_read(tree, dir.file("c.zanj"));
  EXPECT_TRUE(torch::equal(back.at("a/b").tensor(), torch::full({300}, 1.0)));
  EXPECT_TRUE(torch::equal(back.at("a").at("b").tensor(), torch::full({300}, 2.0)));
}

TEST(TreeTest, DeflatedFilesRoundTrip) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["w"] = torch::zeros({1000});
  zanj::SaveOptions options;
  options.compression = zanj::Compression::kDeflate;
  const auto back = save_and_read(tree, dir.file("d.zanj"), options);
  EXPECT_TRUE(torch::equal(back.at("w").tensor(), torch::zeros({1000})));
  EXPECT_EQ(zanj::ArchiveReader::open(dir.file("d.zanj")).find("w.npy")->method, 8);
}

TEST(TreeTest, ProgressReportsEveryEntryUpToTheTotal) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["a"] = torch::zeros({1000});
  tree["b"] = torch::zeros({2000});
  std::vector<zanj::Progress> saves, reads;
  zanj::SaveOptions save_options;
  save_options.progress = [&](const zanj::Progress& p) { saves.push_back(p); };
  zanj::save(tree, dir.file("p.zanj"), save_options);
  ASSERT_EQ(saves.size(), 4u);  // meta, tree, a.npy, b.npy
  EXPECT_EQ(saves.back().entry, "b.npy");
  EXPECT_EQ(saves.back().bytes_done, saves.back().bytes_total);
  for (std::size_t i = 1; i < saves.size(); ++i)
    EXPECT_GT(saves[i].bytes_done, saves[i - 1].bytes_done);
  zanj::ReadOptions read_options;
  read_options.progress = [&](const zanj::Progress& p) { reads.push_back(p); };
  zanj::read(dir.file("p.zanj"), read_options);
  ASSERT_EQ(reads.size(), 2u);  // the two external entries
  EXPECT_EQ(reads.back().bytes_done, reads.back().bytes_total);
  EXPECT_EQ(reads.back().bytes_total, 128u + 4000 + 128 + 8000);
}

// ---- Files made exactly as Python ZANJ writes them (scripts/make_python_zanj.py) ----

torch::Tensor formula(at::IntArrayRef shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return ((torch::arange(n, torch::kInt64).remainder(17) - 8).to(torch::kFloat32) / 16)
      .reshape(shape);
}

TEST(PythonFilesTest, ReadsEveryInlineModeTagAndExternalKind) {
  const auto tree = zanj::read(zanj_test::data_dir() + "/python/tree_modes_stored.zanj");
  EXPECT_EQ(tree.at("__muutils_format__").scalar(), "BasicZanj(SerializableDataclass)");
  EXPECT_TRUE(BitIdentical(tree.at("float32_small").tensor(),
                           torch::tensor({{-0.75f, -0.5f, -0.25f}, {0.0f, 0.25f, 0.5f}})));
  EXPECT_TRUE(BitIdentical(tree.at("int16_hex").tensor(),
                           torch::tensor({1, -2, 300, -32768}, torch::kInt16)));
  EXPECT_TRUE(BitIdentical(tree.at("float64_b64").tensor(),
                           torch::tensor({{1.5, -2.25}, {1e-300, 3.0}}, torch::kFloat64)));
  EXPECT_TRUE(
      BitIdentical(tree.at("t_0d_float32").tensor(), torch::scalar_tensor(3.5, torch::kFloat32)));
  EXPECT_TRUE(
      BitIdentical(tree.at("t_0d_int64").tensor(), torch::scalar_tensor(-7, torch::kInt64)));
  EXPECT_TRUE(
      BitIdentical(tree.at("np_uint8").tensor(), torch::tensor({0, 7, 255}, torch::kUInt8)));
  EXPECT_TRUE(BitIdentical(tree.at("np_large").tensor(), formula({16, 20})));
  EXPECT_TRUE(
      BitIdentical(tree.at("bool_small").tensor(), torch::tensor({{true, false}, {false, true}})));
  const auto special = tree.at("special").tensor();
  EXPECT_TRUE(std::isnan(special[0].item<double>()));
  EXPECT_EQ(special[1].item<double>(), INFINITY);
  EXPECT_EQ(special[2].item<double>(), -INFINITY);
  EXPECT_EQ(tree.at("empty_1d").tensor().sizes(), at::IntArrayRef({0}));
  EXPECT_TRUE(BitIdentical(tree.at("bf16").tensor(), formula({300}).to(torch::kBFloat16)));
  ASSERT_EQ(tree.at("long_tuple").size(), 300u);
  EXPECT_EQ(tree.at("long_tuple").at(299).scalar(), 299);
  ASSERT_EQ(tree.at("long_dict_list").size(), 260u);
  EXPECT_EQ(tree.at("long_dict_list").at(5).at("name").scalar(), "n5");
  EXPECT_TRUE(BitIdentical(tree.at("tensor_list").at(1).tensor(), formula({20, 20})));
  EXPECT_EQ(tree.at("tensor_list").at(255).scalar(), 255);
  EXPECT_EQ(tree.at("inner").at("x").scalar(), 7);
  EXPECT_EQ(tree.at("unicode").scalar(), "h\u00e9llo \u2603");
  EXPECT_EQ(tree.at("set_value").at("__muutils_format__").scalar(), "set");
  EXPECT_EQ(tree.at("d").at("k_list").at(2).is_null(), true);
}

TEST(PythonFilesTest, ReadsLegacyFormatKey) {
  const auto tree = zanj::read(zanj_test::data_dir() + "/python/legacy_format.zanj");
  EXPECT_TRUE(BitIdentical(tree.at("weights").tensor(), torch::tensor({1.0f, 2.0f, 3.0f})));
}

}  // namespace
