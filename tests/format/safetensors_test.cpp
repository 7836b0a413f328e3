// SPDX-License-Identifier: MIT
// safetensors: files from an independent Python writer (scripts/make_safetensors_fixtures.py),
// sharded indexes, our writer read back by Python, hostile headers, `zanj convert` round trips
// through every format, and load_weights with key maps.
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

using zanj_test::BitIdentical;
using zanj_test::TempDir;

class SafetensorsFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!zanj_test::python_has("torch")) return;
    dir_ = new TempDir();
    ok_ = zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                         "/make_safetensors_fixtures.py " + dir_->path().string()) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "needs /usr/bin/python3 with torch (scripts/install_deps.sh)";
    ASSERT_TRUE(ok_) << "make_safetensors_fixtures.py failed";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static TempDir* dir_;
  static bool ok_;
};
TempDir* SafetensorsFiles::dir_ = nullptr;
bool SafetensorsFiles::ok_ = false;

void expect_same_tensors(const zanj::Node& a, const zanj::Node& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a.as_dict()) {
    ASSERT_TRUE(b.contains(k)) << k;
    EXPECT_TRUE(BitIdentical(v.tensor(), b.at(k).tensor())) << k;
  }
}

TEST_F(SafetensorsFiles, EveryDtypeMappedAndCopiedEqualsTorchSave) {
  const auto st = zanj::SafetensorsFile::open(file("model.safetensors"));
  const zanj::Node expected = zanj::read_torch(file("model.pt"));
  expect_same_tensors(st.read_all(/*mmap=*/true), expected);
  expect_same_tensors(st.read_all(/*mmap=*/false), expected);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.metadata().at("source"), "fixture");
  ASSERT_NE(st.find("t.bf16"), nullptr);
  EXPECT_EQ(st.find("t.bf16")->dtype, torch::kBFloat16);
  EXPECT_EQ(st.find("scalar")->shape.size(), 0u);
  // Zero-copy: the mapped tensor's memory is inside the mapping, and writing to it stays private.
  torch::Tensor w = st.tensor("embed.weight");
  const torch::Tensor before = w.clone();
  w.add_(1);
  EXPECT_TRUE(BitIdentical(st.read_tensor("embed.weight"), before));
}

TEST_F(SafetensorsFiles, ShardedIndexReadsAsOne) {
  const auto st = zanj::SafetensorsFile::open(file("sharded/model.safetensors.index.json"));
  expect_same_tensors(st.read_all(), zanj::read_torch(file("model.pt")));
  EXPECT_EQ(st.metadata().count("total_size"), 1u);
  EXPECT_THAT(st.find("t.f32")->file, ::testing::HasSubstr("model-00001-of-00002"));
  EXPECT_THAT(st.find("empty")->file, ::testing::HasSubstr("model-00002-of-00002"));
}

TEST_F(SafetensorsFiles, OurFilesReadByAnIndependentReader) {
  TempDir dir;
  zanj::StateDict tensors;
  for (auto dtype : zanj_test::all_dtypes()) {
    if (at::isComplexType(dtype)) continue;  // the Python fixture reader knows the base dtypes
    tensors.emplace_back(std::string("x.") + c10::toString(dtype),
                         zanj_test::sample(dtype, {4, 3}));
  }
  tensors.emplace_back("strided", torch::arange(20, torch::kFloat32).reshape({4, 5}).t());
  zanj::save_safetensors(tensors, dir.file("ours.safetensors"), {{"who", "configured_model"}});
  std::string out;
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                               "/make_safetensors_fixtures.py --check " +
                               dir.file("ours.safetensors") + " " + dir.file("back.pt") + " 2>&1",
                           &out),
            0)
      << out;
  const zanj::Node back = zanj::read_torch(dir.file("back.pt"));
  for (const auto& [k, t] : tensors) {
    EXPECT_TRUE(BitIdentical(back.at("tensors").at(k).tensor(), t)) << k;
  }
  EXPECT_EQ(back.at("metadata").at("who").scalar(), "configured_model");
  // And by ours, from memory.
  const auto mem =
      zanj::SafetensorsFile::from_bytes(zanj_test::read_bytes(dir.file("ours.safetensors")), "mem");
  EXPECT_TRUE(BitIdentical(mem.tensor("strided"), tensors.back().second));
}

TEST_F(SafetensorsFiles, ConvertRoundTripsThroughEveryFormatBitExactly) {
  TempDir dir;
  const std::string cli = CONFIGURED_MODEL_ZANJ_CLI;
  if (cli.empty()) GTEST_SKIP() << "built without the zanj tool (CONFIGURED_MODEL_BUILD_TOOLS=OFF)";
  const zanj::Node original =
      zanj::SafetensorsFile::open(file("model.safetensors")).read_all(false);
  // A chain safetensors -> zanj -> pt -> libtorch-pt -> safetensors, then every format into
  // every other from the chain's files, and a sharded index into pt.
  const auto convert = [&](const std::string& in, const std::string& out) {
    const std::string to = out.find(".libtorch") != std::string::npos ? " --to libtorch-pt" : "";
    std::string text;
    EXPECT_EQ(zanj_test::run(cli + " convert " + in + " " + out + to + " 2>&1", &text), 0)
        << in << " -> " << out << ": " << text;
  };
  const std::vector<std::string> chain = {file("model.safetensors"), dir.file("a.zanj"),
                                          dir.file("b.pt"), dir.file("c.libtorch"),
                                          dir.file("d.safetensors")};
  for (std::size_t i = 0; i + 1 < chain.size(); ++i) convert(chain[i], chain[i + 1]);
  convert(file("sharded/model.safetensors.index.json"), dir.file("e.pt"));
  for (std::size_t i = 1; i < chain.size(); ++i) {
    for (const char* ext : {".zanj", ".pt", ".libtorch", ".safetensors"}) {
      const std::string out = dir.file("x" + std::to_string(i) + ext);
      convert(chain[i], out);
      expect_same_tensors(zanj::read_weights(out), original);
    }
  }
  expect_same_tensors(zanj::read(dir.file("a.zanj")), original);
  expect_same_tensors(zanj::read_torch(dir.file("b.pt")), original);
  expect_same_tensors(zanj::read_weights(dir.file("c.libtorch")), original);
  expect_same_tensors(zanj::SafetensorsFile::open(dir.file("d.safetensors")).read_all(), original);
  expect_same_tensors(zanj::read_torch(dir.file("e.pt")), original);
  EXPECT_EQ(zanj::detect_format(dir.file("c.libtorch")), zanj::WeightsFormat::kLibtorch);

  // --rename, and `zanj ls` of each foreign format.
  std::string text;
  ASSERT_EQ(zanj_test::run(cli + " convert " + file("model.safetensors") + " " +
                               dir.file("r.safetensors") + " --rename '^t\\.=layer.' 2>&1",
                           &text),
            0)
      << text;
  EXPECT_NE(zanj::SafetensorsFile::open(dir.file("r.safetensors")).find("layer.f32"), nullptr);
  for (const auto& f : {file("model.safetensors"), dir.file("b.pt"), dir.file("c.libtorch")}) {
    ASSERT_EQ(zanj_test::run(cli + " ls " + f, &text), 0) << f;
    EXPECT_THAT(text, ::testing::HasSubstr("embed.weight")) << f;
    EXPECT_THAT(text, ::testing::HasSubstr("[11, 3]")) << f;
    ASSERT_EQ(zanj_test::run(cli + " verify " + f, &text), 0) << f << text;
  }
  // Errors exit 2 with the message on stderr.
  EXPECT_EQ(zanj_test::run(cli + " convert " + file("model.safetensors") + " x.txt 2>/dev/null"),
            2);
  EXPECT_EQ(zanj_test::run(cli + " convert " + file("model.safetensors") +
                           " x.zanj --to nope 2>/dev/null"),
            2);
  EXPECT_EQ(zanj_test::run(cli + " ls " + dir.file("absent.pt") + " 2>/dev/null"), 2);
}

TEST_F(SafetensorsFiles, LoadWeightsWithKeyMaps) {
  TempDir dir;
  // A Python-style file of a DataParallel model whose layers are numbered from 1.
  torch::nn::Sequential net(torch::nn::Linear(3, 4), torch::nn::Linear(4, 2));
  zanj::StateDict stored;
  for (const auto& [k, t] : zanj::state_dict(*net)) {
    const auto dot = k.find('.');
    const int index = std::stoi(k.substr(0, dot)) + 1;
    stored.emplace_back("module.layers." + std::to_string(index) + k.substr(dot),
                        torch::randn_like(t));
  }
  zanj::save_safetensors(stored, dir.file("dp.safetensors"));

  zanj::LoadWeightsOptions options;
  options.keys.strip_prefix("module.")
      .rename(R"(^layers\.(\d+)\.)", "L$1.")
      .map([](const std::string& k) -> std::optional<std::string> {
        const auto dot = k.find('.');
        return std::to_string(std::stoi(k.substr(1, dot - 1)) - 1) + k.substr(dot);
      });
  zanj::load_weights(*net, dir.file("dp.safetensors"), options);
  EXPECT_TRUE(BitIdentical(net->named_parameters()["1.bias"], stored[3].second));

  // Without the map: one StateMismatchError naming missing and unexpected keys.
  try {
    zanj::load_weights(*net, dir.file("dp.safetensors"));
    FAIL() << "expected StateMismatchError";
  } catch (const zanj::StateMismatchError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("missing keys: 0.weight"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("unexpected keys: module.layers.1.weight"));
  }
  // Two keys renamed onto one name.
  zanj::LoadWeightsOptions collide;
  collide.keys.rename(R"(\d)", "0");
  EXPECT_THROW(zanj::load_weights(*net, dir.file("dp.safetensors"), collide), zanj::FormatError);
  EXPECT_THROW(zanj::KeyMap().rename("(", "x"), zanj::UsageError);

  // dtype conversion: a bf16 file into a float module.
  zanj::StateDict half;
  for (const auto& [k, t] : zanj::state_dict(*net)) half.emplace_back(k, t.to(torch::kBFloat16));
  zanj::save_safetensors(half, dir.file("bf16.safetensors"));
  EXPECT_THROW(zanj::load_weights(*net, dir.file("bf16.safetensors")), zanj::StateMismatchError);
  zanj::LoadWeightsOptions cast;
  cast.read.dtype = torch::kFloat32;
  zanj::load_weights(*net, dir.file("bf16.safetensors"), cast);
  EXPECT_TRUE(
      BitIdentical(net->named_parameters()["0.weight"], half[0].second.to(torch::kFloat32)));
}

// ---- hostile headers, made here ----

std::string with_header(const std::string& json, const std::string& data,
                        std::uint64_t len_override = 0) {
  std::string out(8, '\0');
  const std::uint64_t n = len_override ? len_override : json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

void expect_refused(const std::string& bytes, const std::string& fragment) {
  try {
    zanj::SafetensorsFile::from_bytes(bytes, "evil.safetensors");
    ADD_FAILURE() << "expected FormatError containing '" << fragment << "'";
  } catch (const zanj::FormatError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(fragment));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("evil.safetensors"));
  }
}

TEST(HostileSafetensors, HeadersThatLieAreFormatErrors) {
  const std::string f8(8, '\0');
  const auto one = [](const std::string& dtype, const std::string& shape,
                      const std::string& offsets) {
    return "{\"a\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}}";
  };
  EXPECT_NO_THROW(
      zanj::SafetensorsFile::from_bytes(with_header(one("F32", "[2]", "[0,8]"), f8), "ok"));
  expect_refused(with_header("{}", "", 1ULL << 40), "exceeds the limit");
  expect_refused(with_header("{}", "", 4000), "does not fit");
  expect_refused("\x01\x02", "too short");
  expect_refused(with_header("[1,2]", ""), "not a JSON object");
  // A key twice (last one winning would read these bytes as int32): refused by name.
  expect_refused(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                             f8),
                 "duplicate key \"a\"");
  expect_refused(with_header("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", ""),
                 "duplicate key \"k\"");
  expect_refused(with_header("{\"a\":", ""), "header");
  expect_refused(with_header(one("F32", "[2]", "[0,16]"), f8), "outside the 8 data bytes");
  expect_refused(with_header(one("F32", "[3]", "[0,8]"), f8),
                 "is 12 bytes, but data_offsets span 8");
  expect_refused(with_header(one("F32", "[2]", "[8,0]"), f8), "outside");
  expect_refused(with_header(one("F8_E4M3", "[8]", "[0,8]"), f8), "dtype 'F8_E4M3'");
  expect_refused(with_header(one("F32", "[-2]", "[0,8]"), f8), "non-count");
  expect_refused(with_header(one("F32", "[4294967296,4294967296,4294967296]", "[0,8]"), f8),
                 "too large");
  expect_refused(with_header(one("F32", "[1]", "[0,4]"), f8), "after the last tensor");
  expect_refused(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                             f8),
                 "overlaps");
  expect_refused(
      with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", f8), "hole");
  expect_refused(with_header("{\"__metadata__\":{\"k\":1}}", ""), "__metadata__/k");
}

TEST(HostileSafetensors, BoolBytesOtherThanZeroOrOneAreRefusedOnRead) {
  const auto st = zanj::SafetensorsFile::from_bytes(
      with_header("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                  std::string(8, '\x07')),
      "b.safetensors");
  EXPECT_THROW(st.tensor("a"), zanj::FormatError);
  EXPECT_THROW(st.tensor("absent"), zanj::FormatError);
}

TEST(HostileSafetensors, IndexesThatDisagreeWithShards) {
  TempDir dir;
  zanj::save_safetensors({{"a", torch::ones({2})}, {"b", torch::zeros({3})}},
                         dir.file("s1.safetensors"));
  const auto index = [&](const std::string& weight_map) {
    zanj_test::write_bytes(dir.file("m.safetensors.index.json"),
                           "{\"metadata\":{},\"weight_map\":" + weight_map + "}");
    return dir.file("m.safetensors.index.json");
  };
  EXPECT_EQ(
      zanj::SafetensorsFile::open(index("{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}"))
          .tensors()
          .size(),
      2u);
  const auto refused = [](const std::string& path, const std::string& fragment) {
    try {
      zanj::SafetensorsFile::open(path);
      ADD_FAILURE() << "expected an error containing " << fragment;
    } catch (const zanj::Error& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr(fragment));
    }
  };
  refused(index("{\"a\":\"s1.safetensors\"}"), "does not list it there");
  refused(index("{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"c\":\"s1.safetensors\"}"),
          "which does not hold it");
  refused(index("{\"a\":\"../s1.safetensors\"}"), "not a file name");
  refused(index("{\"a\":\"absent.safetensors\"}"), "absent.safetensors: no such file");
  refused(index("{\"a\":3}"), "is not a file name");
  zanj_test::write_bytes(dir.file("x.safetensors.index.json"), "{\"metadata\":{}}");
  refused(dir.file("x.safetensors.index.json"), "weight_map");
}

}  // namespace
