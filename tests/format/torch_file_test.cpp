// SPDX-License-Identifier: MIT
// Python torch.save files: real files written by Debian's python3-torch (scripts/
// make_torch_fixtures.py), loaded into the equivalent C++ modules; files we write read back by
// Python; hostile pickles refused without running anything.
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

using namespace std::string_literals;
using zanj_test::BitIdentical;
using zanj_test::TempDir;

class PythonFiles : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!zanj_test::python_has("torch")) return;
    dir_ = new TempDir();
    ok_ = zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                         "/make_torch_fixtures.py " + dir_->path().string()) == 0;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    // python3-torch is installed by scripts/install_deps.sh, so CI always runs these.
    if (!dir_) GTEST_SKIP() << "needs /usr/bin/python3 with torch (scripts/install_deps.sh)";
    ASSERT_TRUE(ok_) << "make_torch_fixtures.py failed";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }

  static TempDir* dir_;
  static bool ok_;
};
TempDir* PythonFiles::dir_ = nullptr;
bool PythonFiles::ok_ = false;

template <typename M>
void expect_same_output(M module, const std::string& kind, const std::string& dir_file,
                        const std::string& io_file) {
  zanj::load_weights(*module, dir_file);
  module->eval();
  const zanj::Node io = zanj::read_torch(io_file);
  torch::NoGradGuard no_grad;
  torch::Tensor y;
  if constexpr (std::is_same_v<M, torch::nn::LSTM>) {
    y = std::get<0>(module->forward(io.at("input").tensor()));
  } else {
    y = module->forward(io.at("input").tensor());
  }
  EXPECT_TRUE(BitIdentical(y, io.at("output").tensor())) << kind;
}

TEST_F(PythonFiles, StateDictsOfFiveModuleKindsGiveBitIdenticalOutputs) {
  expect_same_output(torch::nn::Linear(6, 4), "linear", file("linear.pt"), file("linear_io.pt"));
  expect_same_output(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)), "conv2d",
                     file("conv2d.pt"), file("conv2d_io.pt"));
  torch::nn::BatchNorm2d bn(3);
  expect_same_output(bn, "batchnorm", file("batchnorm.pt"), file("batchnorm_io.pt"));
  EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 3);  // a long buffer came through
  expect_same_output(torch::nn::Embedding(10, 3), "embedding", file("embedding.pt"),
                     file("embedding_io.pt"));
  expect_same_output(torch::nn::LSTM(torch::nn::LSTMOptions(4, 5).num_layers(2).batch_first(true)),
                     "lstm", file("lstm.pt"), file("lstm_io.pt"));
}

TEST_F(PythonFiles, EveryDtypeMatchesPythonsBytes) {
  const zanj::Node d = zanj::read_torch(file("dtypes.pt"));
  const std::string raw = zanj_test::read_bytes(file("dtypes.raw"));
  const std::map<std::string, torch::ScalarType> expected = {{"float32", torch::kFloat32},
                                                             {"float64", torch::kFloat64},
                                                             {"float16", torch::kHalf},
                                                             {"bfloat16", torch::kBFloat16},
                                                             {"int64", torch::kInt64},
                                                             {"int32", torch::kInt32},
                                                             {"int16", torch::kInt16},
                                                             {"int8", torch::kInt8},
                                                             {"uint8", torch::kUInt8},
                                                             {"bool", torch::kBool},
                                                             {"complex64", torch::kComplexFloat},
                                                             {"complex128", torch::kComplexDouble},
                                                             {"scalar", torch::kFloat32},
                                                             {"empty", torch::kFloat32}};
  std::size_t at = 0, seen = 0;
  while (at < raw.size()) {
    const auto nl = raw.find('\n', at);
    const std::string name = raw.substr(at, nl - at);
    const auto nl2 = raw.find('\n', nl + 1);
    const std::size_t n = std::stoul(raw.substr(nl + 1, nl2 - nl - 1));
    const std::string bytes = raw.substr(nl2 + 1, n);
    at = nl2 + 1 + n;
    ++seen;
    const torch::Tensor t = d.at(name).tensor().contiguous();
    EXPECT_EQ(t.scalar_type(), expected.at(name)) << name;
    ASSERT_EQ(static_cast<std::size_t>(t.numel()) * t.element_size(), n) << name;
    EXPECT_EQ(std::string(static_cast<const char*>(t.data_ptr()), n), bytes) << name;
  }
  EXPECT_EQ(seen, expected.size());
  EXPECT_EQ(d.at("scalar").tensor().dim(), 0);
  EXPECT_EQ(d.at("empty").tensor().sizes(), torch::IntArrayRef({0, 4}));
}

TEST_F(PythonFiles, ViewsKeepSharingTheirStorageWithOffsetsAndStrides) {
  const zanj::Node f = zanj::read_torch(file("views.pt"));
  const auto& views = f.at("views");
  const torch::Tensor base = views.at("base").tensor();
  for (const char* name : {"base", "rows", "strided", "transposed", "row"}) {
    const torch::Tensor v = views.at(name).tensor();
    EXPECT_TRUE(v.is_alias_of(base)) << name;
    EXPECT_TRUE(BitIdentical(v, f.at("copies").at(name).tensor())) << name;
  }
  const torch::Tensor strided = views.at("strided").tensor();
  EXPECT_EQ(strided.storage_offset(), 8);
  EXPECT_EQ(strided.strides(), torch::IntArrayRef({8, 2}));
  EXPECT_EQ(views.at("transposed").tensor().strides(), torch::IntArrayRef({1, 8}));
  EXPECT_EQ(views.at("row").tensor().storage_offset(), 16);
}

TEST_F(PythonFiles, NestedCheckpointComesBackAsATree) {
  const zanj::Node c = zanj::read_torch(file("checkpoint.pt"));
  EXPECT_EQ(c.at("epoch").scalar(), 3);
  EXPECT_EQ(c.at("losses").at(1).scalar(), 0.25);
  EXPECT_EQ(c.at("name").scalar(), "run-1");
  EXPECT_EQ(c.at("best").scalar(), true);
  EXPECT_TRUE(c.at("note").is_null());
  EXPECT_EQ(c.at("shape").to_json(), nlohmann::ordered_json::array({2, 3}));
  EXPECT_EQ(c.at("dtype").scalar(), "torch.float16");
  const auto& opt = c.at("optimizer");
  ASSERT_EQ(opt.at("state").size(), 4u);  // int keys 0..3 as "0".."3", marked int-keyed
  EXPECT_EQ(opt.at("state").at("3").at("exp_avg").tensor().sizes(), torch::IntArrayRef({2}));
  EXPECT_EQ(opt.at("state").at("0").at("step").tensor().item<float>(), 2.0f);
  EXPECT_EQ(opt.at("param_groups").at(0).at("betas").to_json(),
            nlohmann::ordered_json::array({0.9, 0.999}));
  EXPECT_EQ(opt.at("param_groups").at(0).at("params").to_json(),
            nlohmann::ordered_json::array({0, 1, 2, 3}));

  torch::nn::Sequential net(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  zanj::LoadWeightsOptions options;
  options.subtree = "model";
  zanj::load_weights(*net, file("checkpoint.pt"), options);
  EXPECT_TRUE(BitIdentical(net->named_parameters()["2.bias"], c.at("model").at("2.bias").tensor()));
  // Without a subtree, "model" is found as the state dict.
  torch::nn::Sequential again(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 2));
  zanj::load_weights(*again, file("checkpoint.pt"));
  EXPECT_TRUE(
      BitIdentical(again->named_parameters()["0.weight"], net->named_parameters()["0.weight"]));
}

TEST_F(PythonFiles, MappedReadEqualsCopiedRead) {
  zanj::ReadOptions mapped;
  mapped.mmap = true;
  const zanj::Node a = zanj::read_torch(file("dtypes.pt"), mapped);
  const zanj::Node b = zanj::read_torch(file("dtypes.pt"));
  for (const auto& [k, v] : b.as_dict())
    EXPECT_TRUE(BitIdentical(a.at(k).tensor(), v.tensor())) << k;
}

TEST_F(PythonFiles, LegacyFormatIsNamedInTheError) {
  try {
    zanj::read_torch(file("legacy.pt"));
    FAIL() << "expected FormatError";
  } catch (const zanj::FormatError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("legacy torch.save file"));
    EXPECT_THAT(e.what(), ::testing::HasSubstr("legacy.pt"));
  }
}

TEST_F(PythonFiles, ForbiddenGlobalsAreRefusedAndNothingRuns) {
  for (const auto& [name, global] : std::vector<std::pair<std::string, std::string>>{
           {"evil_os_system.pt", "posix.system"},
           {"evil_eval.pt", "builtins.eval"},
           {"evil_subprocess.pt", "subprocess.check_call"}}) {
    try {
      zanj::read_torch(file(name));
      ADD_FAILURE() << name << ": expected UnsafeContentError";
    } catch (const zanj::UnsafeContentError& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("'" + global + "'")) << name;
      EXPECT_THAT(e.what(), ::testing::HasSubstr(name)) << name;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(file("PWNED")));
}

// An optimizer's state is keyed by int parameter ids. Converting .pt -> .pt and .pt -> .zanj ->
// .pt keeps them ints, so Python's Optimizer.load_state_dict restores every moment (with string
// keys it accepts the file and silently drops them all); diff --exact tells the key types apart.
TEST_F(PythonFiles, OptimizerStateKeepsItsIntKeysThroughEveryConversion) {
  TempDir dir;
  const zanj::Node c = zanj::read_torch(file("checkpoint.pt"));
  ASSERT_EQ(c.at("optimizer").at("state").key_type(), zanj::Node::KeyType::kInt);
  EXPECT_EQ(c.at("optimizer").key_type(), zanj::Node::KeyType::kString);
  const std::string direct = dir.file("direct.pt"), via = dir.file("via.zanj"),
                    back = dir.file("back.pt");
  zanj::save_torch(c, direct);
  zanj::save(c, via);
  const zanj::Node from_zanj = zanj::read(via);
  EXPECT_EQ(zanj::first_difference(from_zanj, c), std::nullopt);
  zanj::save_torch(from_zanj, back);
  EXPECT_EQ(zanj::first_difference(zanj::read_torch(back), c), std::nullopt);

  const std::string script = dir.file("load_optimizer.py");
  zanj_test::write_bytes(
      script,
      "import sys, torch\n"
      "orig = torch.load(sys.argv[1])\n"
      "for path in sys.argv[2:]:\n"
      // Not weights_only: Debian's torch 1.13 refuses BINFLOAT there (its own files too).
      "    d = torch.load(path)\n"
      "    assert sorted(d['optimizer']['state'].keys()) == [0, 1, 2, 3], path\n"
      "    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),\n"
      "                              torch.nn.Linear(8, 2))\n"
      "    opt = torch.optim.Adam(net.parameters(), lr=1e-3)\n"
      "    opt.load_state_dict(d['optimizer'])\n"
      "    assert len(opt.state) == 4, (path, len(opt.state))\n"
      "    for i, p in enumerate(net.parameters()):\n"
      "        for k in ('exp_avg', 'exp_avg_sq', 'step'):\n"
      "            assert torch.equal(opt.state[p][k], "
      "orig['optimizer']['state'][i][k]), (path, k)\n"
      "print('ok')\n");
  std::string out;
  EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + script + " " + file("checkpoint.pt") + " " +
                               direct + " " + back + " 2>&1",
                           &out),
            0)
      << out;

  // The same state with text keys is a different file to Python, and to diff --exact.
  zanj::Node texted = c;
  texted.at("optimizer").at("state").set_key_type(zanj::Node::KeyType::kString);
  EXPECT_NE(zanj::first_difference(texted, c), std::nullopt);
  const std::string cli = CONFIGURED_MODEL_ZANJ_CLI;
  if (cli.empty()) GTEST_SKIP() << "built without the zanj tool";
  zanj::save_torch(texted, dir.file("texted.pt"));
  EXPECT_EQ(
      zanj_test::run(cli + " diff --exact " + file("checkpoint.pt") + " " + back + " 2>&1", &out),
      0)
      << out;
  EXPECT_EQ(zanj_test::run(cli + " diff --exact " + file("checkpoint.pt") + " " +
                               dir.file("texted.pt") + " 2>&1",
                           &out),
            1)
      << out;
  EXPECT_NE(out.find("int keys vs str keys"), std::string::npos) << out;
  EXPECT_EQ(zanj_test::run(cli + " convert " + file("checkpoint.pt") + " " + dir.file("c.pt") +
                               " && " + cli + " diff --exact " + file("checkpoint.pt") + " " +
                               dir.file("c.pt") + " 2>&1",
                           &out),
            0)
      << out;

  // To safetensors the optimizer and counters cannot go: listed, and written only when asked.
  const std::string st = dir.file("w.safetensors");
  EXPECT_EQ(zanj_test::run(cli + " convert " + file("checkpoint.pt") + " " + st + " 2>&1", &out), 2)
      << out;
  EXPECT_NE(out.find("optimizer"), std::string::npos) << out;
  EXPECT_NE(out.find("epoch"), std::string::npos) << out;
  EXPECT_NE(out.find("--weights-only"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(st));
  EXPECT_EQ(
      zanj_test::run(cli + " convert --weights-only " + file("checkpoint.pt") + " " + st + " 2>&1",
                     &out),
      0)
      << out;
  EXPECT_EQ(zanj::read_weights(st).size(), c.at("model").size());
}

TEST_F(PythonFiles, FilesWeWriteLoadInPythonWithWeightsOnly) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  zanj::Node sd = zanj::Node::dict();
  for (auto dtype : zanj_test::all_dtypes()) {
    sd[std::string(c10::toString(dtype))] = zanj_test::sample(dtype, {3, 4});
  }
  const torch::Tensor base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  sd["base"] = base;
  sd["view"] = base.slice(1, 1, 6, 2);
  tree["state"] = sd;
  tree["epoch"] = nlohmann::json(7);
  tree["names"] = nlohmann::json::array({"a", "b"});
  const std::string ours = dir.file("ours.pt");
  zanj::save_torch(tree, ours);

  // Python loads it weights-only, checks the view still shares its storage, and saves it again.
  const std::string script = dir.file("resave.py");
  zanj_test::write_bytes(script,
                         "import sys, torch\n"
                         "d = torch.load(sys.argv[1], weights_only=True)\n"
                         "s = d['state']\n"
                         "assert s['view'].storage().data_ptr() == s['base'].storage().data_ptr()\n"
                         "assert s['view'].stride() == (6, 2) and s['view'].storage_offset() == 1\n"
                         "assert d['epoch'] == 7 and d['names'] == ['a', 'b']\n"
                         "torch.save(d, sys.argv[2])\n");
  std::string out;
  ASSERT_EQ(
      zanj_test::run("/usr/bin/python3 " + script + " " + ours + " " + dir.file("py.pt") + " 2>&1",
                     &out),
      0)
      << out;
  const zanj::Node back = zanj::read_torch(dir.file("py.pt"));
  for (const auto& [k, v] : sd.as_dict()) {
    EXPECT_TRUE(BitIdentical(back.at("state").at(k).tensor(), v.tensor())) << k;
  }
  EXPECT_EQ(back.at("epoch").scalar(), 7);
  EXPECT_TRUE(
      back.at("state").at("view").tensor().is_alias_of(back.at("state").at("base").tensor()));
}

// ---- hostile bytes, made here ----

std::string zip_with(const TempDir& dir, const std::string& pickle,
                     const std::vector<std::pair<std::string, std::string>>& storages = {}) {
  const std::string path = dir.file("h.pt");
  zanj::ArchiveWriter w(path);
  w.add("h/data.pkl", pickle, zanj::Compression::kStored);
  for (const auto& [k, v] : storages) w.add("h/data/" + k, v, zanj::Compression::kStored);
  w.add("h/version", "3\n", zanj::Compression::kStored);
  w.commit();
  return path;
}

// A pickle of one float tensor: storage '0' of `numel` floats, the view (offset, size, stride).
std::string tensor_pickle(int numel, int offset, int size, int stride) {
  std::string p =
      "\x80\x02"
      "ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
      "ctorch\nFloatStorage\nX\x01\x00\x00\x00"
      "0X\x03\x00\x00\x00"
      "cpuK"s;
  p += static_cast<char>(numel);
  p += "tQK";
  p += static_cast<char>(offset);
  p += "K";
  p += static_cast<char>(size);
  p += "\x85K";
  p += static_cast<char>(stride);
  p += "\x85\x89"
       "ccollections\nOrderedDict\n)RtR.";
  return p;
}

template <typename E>
void expect_refused(const std::string& path, const std::string& fragment) {
  try {
    zanj::read_torch(path);
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const E& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(fragment));
  }
}

TEST(HostileTorchFiles, WellFormedHandMadePickleReads) {
  TempDir dir;
  const std::string floats(16, '\0');
  const auto t =
      zanj::read_torch(zip_with(dir, tensor_pickle(4, 1, 3, 1), {{"0", floats}})).tensor();
  EXPECT_EQ(t.sizes(), torch::IntArrayRef({3}));
  EXPECT_EQ(t.storage_offset(), 1);
}

TEST(HostileTorchFiles, LiesAboutStoragesAreFormatErrors) {
  TempDir dir;
  // The pickle claims 8 floats; the entry holds 4.
  expect_refused<zanj::FormatError>(
      zip_with(dir, tensor_pickle(8, 0, 4, 1), {{"0", std::string(16, 0)}}),
      "storage size disagrees");
  // The view reaches past its storage.
  expect_refused<zanj::FormatError>(
      zip_with(dir, tensor_pickle(4, 2, 3, 1), {{"0", std::string(16, 0)}}),
      "reaches past its storage");
  expect_refused<zanj::FormatError>(
      zip_with(dir, tensor_pickle(4, 0, 2, 4), {{"0", std::string(16, 0)}}),
      "reaches past its storage");
  // The storage entry is missing.
  expect_refused<zanj::FormatError>(zip_with(dir, tensor_pickle(4, 0, 4, 1)),
                                    "missing storage entry");
}

TEST(HostileTorchFiles, CorruptStorageBytesFailTheirCrcOnEveryPath) {
  TempDir dir;
  const std::string path = zip_with(dir, tensor_pickle(4, 0, 4, 1), {{"0", std::string(16, 1)}});
  const auto at = zanj::ArchiveReader::open(path).data_offset("h/data/0");
  std::string bytes = zanj_test::read_bytes(path);
  bytes[at + 5] ^= 0x40;
  zanj_test::write_bytes(path, bytes);
  expect_refused<zanj::FormatError>(path, "h/data/0");
  torch::nn::Linear one(4, 1);  // load_weights maps the file and checks the CRC before copying
  zanj::LoadWeightsOptions options;
  options.keys.map([](const std::string&) { return std::optional<std::string>("weight"); });
  try {
    zanj::load_weights(*one, path, options);
    FAIL() << "expected FormatError";
  } catch (const zanj::FormatError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("CRC"));
  }
}

TEST(HostileTorchFiles, MalformedPicklesAreFormatErrors) {
  TempDir dir;
  expect_refused<zanj::FormatError>(zip_with(dir, "\x80\x02h\x05."),
                                    "memo index 5 was never stored");
  // Protocol 0's text PUT and GET: a stored index, one never stored, one that is no number.
  expect_refused<zanj::FormatError>(zip_with(dir, "(lp0\ng5\n."), "memo index 5 was never stored");
  expect_refused<zanj::FormatError>(zip_with(dir, "(lp7x\n."), "bad memo index '7x'");
  expect_refused<zanj::FormatError>(zip_with(dir, "(lp0\ng\n."), "bad memo index ''");
  expect_refused<zanj::FormatError>(zip_with(dir, std::string("\x80\x02j\xff\xff\xff\x7f.", 8)),
                                    "was never stored");
  expect_refused<zanj::FormatError>(zip_with(dir, "\x80\x02]q\x00"s), "truncated");
  expect_refused<zanj::FormatError>(zip_with(dir,
                                             "\x80\x02X\xff\xff\xff\x0f"
                                             "abc."),
                                    "truncated");
  expect_refused<zanj::FormatError>(zip_with(dir, "\x80\x02."), "STOP with 0 values");
  expect_refused<zanj::FormatError>(zip_with(dir, "\x80\x02N.junk"), "after STOP");
  expect_refused<zanj::FormatError>(zip_with(dir, "\x80\x02\xff."), "unsupported opcode 0xff");
  // A list that holds itself: refused when turned into a tree, not an endless recursion.
  expect_refused<zanj::FormatError>(zip_with(dir,
                                             "\x80\x02]q\x00h\x00"
                                             "a."s),
                                    "nested deeper");
  // 100,000 nested lists.
  std::string deep = "\x80\x02";
  for (int i = 0; i < 100000; ++i) deep += "]";
  for (int i = 0; i < 99999; ++i) deep += "a";
  deep += ".";
  expect_refused<zanj::FormatError>(zip_with(dir, deep), "nested deeper");
  // Doubling a list 40 times would expand to 2^40 values.
  std::string bomb = "\x80\x02]";
  for (int i = 0; i < 40; ++i) bomb += "q\x00h\x00\x86"s;
  bomb += ".";
  expect_refused<zanj::FormatError>(zip_with(dir, bomb), "values");
}

TEST(HostileTorchFiles, ObjectBuildingOpcodesAndUnlistedGlobalsAreUnsafe) {
  TempDir dir;
  expect_refused<zanj::UnsafeContentError>(zip_with(dir,
                                                    "\x80\x02"
                                                    "cos\nsystem\n."),
                                           "'os.system'");
  expect_refused<zanj::UnsafeContentError>(zip_with(dir,
                                                    "\x80\x02X\x08\x00\x00\x00"
                                                    "builtinsX\x04\x00\x00\x00"
                                                    "eval\x93."s),
                                           "'builtins.eval'");
  expect_refused<zanj::UnsafeContentError>(zip_with(dir,
                                                    "\x80\x02"
                                                    "ccollections\nOrderedDict\n)\x81."),
                                           "arbitrary object");
  // An allowed global that is not callable with REDUCE.
  expect_refused<zanj::FormatError>(zip_with(dir,
                                             "\x80\x02"
                                             "ctorch\nFloatStorage\n)R."),
                                    "cannot be called");
}

TEST(HostileTorchFiles, TruncatedAndForeignFiles) {
  TempDir dir;
  const std::string good = zip_with(dir, tensor_pickle(4, 0, 4, 1), {{"0", std::string(16, 0)}});
  const std::string bytes = zanj_test::read_bytes(good);
  zanj_test::write_bytes(dir.file("cut.pt"), bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW(zanj::read_torch(dir.file("cut.pt")), zanj::FormatError);
  zanj_test::write_bytes(dir.file("text.pt"), "hello");
  expect_refused<zanj::FormatError>(dir.file("text.pt"), "not a torch.save file");
  EXPECT_THROW(zanj::read_torch(dir.file("absent.pt")), zanj::IoError);
}

}  // namespace
