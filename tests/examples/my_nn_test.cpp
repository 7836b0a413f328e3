// SPDX-License-Identifier: MIT
#include "my_nn.hpp"

#include <spdlog/sinks/ostream_sink.h>

#include <configured_model/configured_model.hpp>
#include <fstream>

#include "test_support.hpp"

namespace {

using mlp::MyNN;
using mlp::MyNNConfig;
using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;

// ---- The TORCH_MODULE form, as the README shows it ----
struct BlockConfig {
  int64_t width = 4;
  double dropout = 0.1;
  std::string act_fn = "GELU";
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(BlockConfig, width, dropout, act_fn)

class BlockImpl : public zanj::ConfiguredModel<BlockImpl, BlockConfig> {
 public:
  explicit BlockImpl(BlockConfig c) : ConfiguredModel(std::move(c)) {
    fc = register_module("fc", torch::nn::Linear(config().width, config().width));
    norm = register_module("norm", torch::nn::BatchNorm1d(config().width));
    act = zanj::make_activation(config().act_fn);
  }
  torch::Tensor forward(torch::Tensor x) { return act.forward(norm(fc(x))); }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d norm{nullptr};
  torch::nn::AnyModule act;
};
TORCH_MODULE(Block);

// A class whose name starts with "MyNN": Python's prefix match would load it as MyNN.
class MyNNSomethingElse : public zanj::ConfiguredModel<MyNNSomethingElse, MyNNConfig> {
 public:
  explicit MyNNSomethingElse(MyNNConfig c) : ConfiguredModel(std::move(c)) {}
};

std::shared_ptr<MyNN> trained_model(int64_t hidden = 20) {
  torch::manual_seed(3);
  MyNNConfig config;
  config.hidden_dim = hidden;
  auto model = std::make_shared<MyNN>(config);
  model->training_records()["loss"] = {0.9, 0.5, 0.25};
  model->training_records()["note"] = "first run";
  return model;
}

void expect_same_model(const MyNN& a, const MyNN& b) {
  const auto sa = zanj::state_dict(a);
  const auto sb = zanj::state_dict(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(BitIdentical(sa[i].second, sb[i].second)) << sa[i].first;
  }
}

TEST(ConfiguredModelTest, SavesAndReadsBackWithoutConstructorArguments) {
  TempDir dir;
  for (int64_t hidden : {20, 64}) {  // all inline, and with an external first weight
    auto model = trained_model(hidden);
    model->save(dir.file("run.zanj"));
    std::shared_ptr<MyNN> again = MyNN::read(dir.file("run.zanj"));
    EXPECT_EQ(again->config().hidden_dim, hidden);
    EXPECT_EQ(again->config().loss_kwargs, model->config().loss_kwargs);
    EXPECT_EQ(again->training_records(), model->training_records());
    expect_same_model(*model, *again);
    const auto x = torch::randn({5, 10});
    EXPECT_TRUE(torch::equal(model->forward(x), again->forward(x)));
  }
}

TEST(ConfiguredModelTest, StreamsAndByteStringsHoldTheSameFileAsPaths) {
  TempDir dir;
  auto model = trained_model(64);
  std::stringstream stream;
  model->save(stream);
  const std::string bytes = stream.str();
  std::shared_ptr<MyNN> again = MyNN::read(stream);
  expect_same_model(*model, *again);
  EXPECT_EQ(again->training_records(), model->training_records());
  // A byte string is a whole .zanj: written to disk, every reader and zanj::verify accept it.
  zanj_test::write_bytes(dir.file("from_stream.zanj"), bytes);
  EXPECT_TRUE(zanj_test::SoundZip(dir.file("from_stream.zanj")));
  expect_same_model(*model, *MyNN::read(dir.file("from_stream.zanj")));
  zanj::Node tree = zanj::Node::dict();
  tree["w"] = torch::randn({300});
  tree["n"] = nlohmann::json(3);
  const zanj::Node back = zanj::read_bytes(zanj::save_to_bytes(tree));
  EXPECT_TRUE(BitIdentical(back.at("w").tensor(), tree.at("w").tensor()));
  // Same checks as files: a truncated stream is a FormatError, a failing stream an IoError.
  std::stringstream cut(bytes.substr(0, bytes.size() - 10));
  EXPECT_THROW(MyNN::read(cut), zanj::FormatError);
  std::ofstream closed;
  EXPECT_THROW(model->save(closed), zanj::IoError);
}

TEST(ConfiguredModelTest, StoresPythonsLayout) {
  TempDir dir;
  trained_model(64)->save(dir.file("run.zanj"));
  const auto archive = zanj::ArchiveReader::open(dir.file("run.zanj"));
  const auto j = zanj::parse_json(archive.read("__zanj__.json"), "", "");
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"zanj_model_config", "meta", "training_records",
                                            "state_dict", "__muutils_format__"}));
  EXPECT_EQ(j["__muutils_format__"], "MyNN");
  EXPECT_EQ(j["zanj_model_config"]["__muutils_format__"], "MyNNConfig(SerializableDataclass)");
  EXPECT_TRUE(j["zanj_model_config"]["hidden_dim"].is_number_integer());
  EXPECT_EQ(j["meta"]["num_params"], 64 * 10 + 64 + 2 * 64 + 2);
  std::vector<std::string> sd;
  for (auto it = j["state_dict"].begin(); it != j["state_dict"].end(); ++it) sd.push_back(it.key());
  EXPECT_EQ(sd,
            (std::vector<std::string>{"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}));
  EXPECT_EQ(j["state_dict"]["net.0.weight"]["$ref"], "state_dict/net.0.weight.npy");
  EXPECT_EQ(j["state_dict"]["net.0.bias"]["__muutils_format__"], "torch.Tensor:array_list_meta");
}

TEST(ConfiguredModelTest, TorchModuleHolderFormRoundTripsBuffers) {
  TempDir dir;
  torch::manual_seed(4);
  Block block(BlockConfig{6, 0.2, "SiLU"});
  block->train();
  block->forward(torch::randn({8, 6}));  // moves BatchNorm running stats and the counter
  block->save(dir.file("block.zanj"));
  Block again(BlockImpl::read(dir.file("block.zanj")));
  EXPECT_EQ(BlockImpl::class_name(), "Block");
  EXPECT_EQ(again->config().act_fn, "SiLU");
  EXPECT_EQ(again->norm->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_TRUE(BitIdentical(again->norm->running_mean, block->norm->running_mean));
  block->eval();
  again->eval();
  const auto x = torch::randn({3, 6});
  EXPECT_TRUE(torch::equal(block->forward(x), again->forward(x)));
  // 0-d buffers are written as zero_dim, as Python does.
  const auto j = zanj::parse_json(
      zanj::ArchiveReader::open(dir.file("block.zanj")).read("__zanj__.json"), "", "");
  EXPECT_EQ(j["state_dict"]["norm.num_batches_tracked"]["__muutils_format__"],
            "torch.Tensor:zero_dim");
  EXPECT_EQ(j["state_dict"]["norm.num_batches_tracked"]["dtype"], "torch.int64");
}

TEST(ConfiguredModelTest, ClassTagMustMatchExactly) {
  TempDir dir;
  MyNNSomethingElse other(MyNNConfig{});
  other.save(dir.file("other.zanj"));
  EXPECT_THAT([&] { MyNN::read(dir.file("other.zanj")); },
              zanj_test::Throws<zanj::StateMismatchError>(
                  "other.zanj: __muutils_format__: model class mismatch "
                  "(expected 'MyNN', found 'MyNNSomethingElse')"));
  zanj::Node not_a_model = zanj::Node::dict();
  not_a_model["x"] = nlohmann::json(1);
  zanj::save(not_a_model, dir.file("tree.zanj"));
  EXPECT_THROW(MyNN::read(dir.file("tree.zanj")), zanj::StateMismatchError);
}

zanj::Node stored_model(const std::shared_ptr<MyNN>& m) { return m->to_node(); }

TEST(ConfiguredModelTest, StrictLoadListsEveryMismatch) {
  TempDir dir;
  auto tree = stored_model(trained_model());
  auto& sd = tree.at("state_dict");
  sd.erase("net.0.bias");                                  // missing
  sd["extra.weight"] = torch::zeros({1});                  // unexpected
  sd.at("net.2.weight") = torch::zeros({3, 20});           // shape
  sd.at("net.2.bias") = torch::zeros({2}, torch::kInt64);  // dtype
  zanj::save(tree, dir.file("bad.zanj"));
  EXPECT_THAT([&] { MyNN::read(dir.file("bad.zanj")); },
              zanj_test::Throws<zanj::StateMismatchError>(
                  "bad.zanj: state_dict: does not fit the model",
                  "shape mismatch: net.2.weight (expected [2, 20], found [3, 20])",
                  "dtype mismatch: net.2.bias (expected Float, found Long)",
                  "missing keys: net.0.bias", "unexpected keys: extra.weight"));
}

TEST(ConfiguredModelTest, NonStrictLoadToleratesMissingAndExtraKeysOnly) {
  TempDir dir;
  auto model = trained_model();
  auto tree = stored_model(model);
  tree.at("state_dict").erase("net.0.bias");
  tree.at("state_dict")["extra"] = torch::zeros({1});
  zanj::save(tree, dir.file("partial.zanj"));
  zanj::ReadOptions options;
  options.strict = false;
  auto again = MyNN::read(dir.file("partial.zanj"), options);
  EXPECT_TRUE(BitIdentical(again->net[0]->as<torch::nn::Linear>()->weight,
                           model->net[0]->as<torch::nn::Linear>()->weight));
  tree.at("state_dict").at("net.2.bias") = torch::zeros({5});
  zanj::save(tree, dir.file("shape.zanj"));
  EXPECT_THROW(MyNN::read(dir.file("shape.zanj"), options), zanj::StateMismatchError);
}

TEST(ConfiguredModelTest, ReadOptionsConvertTheDtype) {
  TempDir dir;
  auto model = trained_model();
  model->save(dir.file("run.zanj"));
  zanj::ReadOptions options;
  options.dtype = torch::kFloat64;
  auto again = MyNN::read(dir.file("run.zanj"), options);
  for (const auto& p : again->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  // float32 -> float64 is exact.
  EXPECT_TRUE(BitIdentical(again->net[0]->as<torch::nn::Linear>()->weight,
                           model->net[0]->as<torch::nn::Linear>()->weight.to(torch::kFloat64)));
  // A float64 file reads into a float64 model: read() builds the model in the stored dtypes.
  again->save(dir.file("double.zanj"));
  auto doubled = MyNN::read(dir.file("double.zanj"));
  for (const auto& p : doubled->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(BitIdentical(doubled->net[0]->as<torch::nn::Linear>()->weight,
                           again->net[0]->as<torch::nn::Linear>()->weight));
  // load() into an existing float32 model does not change its dtype: it says how to.
  EXPECT_THAT(
      [&] { model->load(dir.file("double.zanj")); },
      zanj_test::Throws<zanj::StateMismatchError>(
          "dtype mismatch: net.0.weight (expected Float, found Double)", "->to(torch::kFloat64)"));
}

TEST(ConfiguredModelTest, ConfigErrorsNameTheField) {
  TempDir dir;
  auto tree = stored_model(trained_model());
  tree.at("zanj_model_config").at("hidden_dim") = nlohmann::json("twenty");
  zanj::save(tree, dir.file("type.zanj"));
  EXPECT_THAT(
      [&] { MyNN::read(dir.file("type.zanj")); },
      zanj_test::Throws<zanj::ConfigError>("type.zanj: zanj_model_config: ",
                                           "field 'hidden_dim': expected integer, found string"));
  // nlohmann would truncate 20.5 (and NaN) into an int silently: refused, naming the field.
  for (double bad : {20.5, 20.0}) {
    tree = stored_model(trained_model());
    tree.at("zanj_model_config").at("hidden_dim") = nlohmann::json(bad);
    zanj::save(tree, dir.file("float.zanj"));
    EXPECT_THAT(
        [&] { MyNN::read(dir.file("float.zanj")); },
        zanj_test::Throws<zanj::ConfigError>("field 'hidden_dim': expected integer, found float"));
  }
  tree = stored_model(trained_model());
  tree.at("zanj_model_config").erase("output_dim");
  zanj::save(tree, dir.file("missing.zanj"));
  EXPECT_THAT([&] { MyNN::read(dir.file("missing.zanj")); },
              zanj_test::Throws<zanj::ConfigError>("field 'output_dim': missing"));
  tree = stored_model(trained_model());
  tree.at("zanj_model_config").at("act_fn") = nlohmann::json("NoSuchActivation");
  zanj::save(tree, dir.file("act.zanj"));
  EXPECT_THAT([&] { MyNN::read(dir.file("act.zanj")); },
              zanj_test::Throws<zanj::ConfigError>("unknown activation 'NoSuchActivation'"));
}

TEST(ConfiguredModelTest, NewerFormatIsAVersionErrorAndOtherVersionsWarn) {
  TempDir dir;
  trained_model()->save(dir.file("run.zanj"));
  auto rewrite_meta = [&](const std::function<void(nlohmann::ordered_json&)>& edit,
                          const std::string& out) {
    const auto in = zanj::ArchiveReader::open(dir.file("run.zanj"));
    auto meta = zanj::parse_json(in.read("__zanj_meta__.json"), "", "");
    edit(meta);
    zanj::ArchiveWriter w(out);
    for (const auto& e : in.entries()) {
      w.add(e.name, e.name == "__zanj_meta__.json" ? zanj::dump_json(meta) : in.read(e.name),
            zanj::Compression::kStored);
    }
    w.commit();
  };
  rewrite_meta([](auto& m) { m["configured_model"]["format_version"] = 99; }, dir.file("new.zanj"));
  EXPECT_THAT([&] { MyNN::read(dir.file("new.zanj")); },
              zanj_test::Throws<zanj::VersionError>(
                  "new.zanj: __zanj_meta__.json: format version 99 is newer"));
  rewrite_meta(
      [](auto& m) {
        m["configured_model"]["library_version"] = "0.0.1";
        m["sysinfo"]["libtorch"]["version"] = "2.9.0";
      },
      dir.file("old.zanj"));
  std::ostringstream log;
  auto logger = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_st>(log));
  zanj::set_logger(logger);
  EXPECT_NO_THROW(MyNN::read(dir.file("old.zanj")));
  zanj::set_logger(nullptr);
  EXPECT_THAT(log.str(), HasSubstr("written by configured_model 0.0.1"));
  EXPECT_THAT(log.str(), HasSubstr("written with libtorch 2.9.0"));
}

TEST(ConfiguredModelTest, ReadsModelsWrittenByPythonZanj) {
  // Weights follow ((k % 17) - 8) / 16 over each tensor's flat index (make_python_zanj.py).
  auto formula = [](at::IntArrayRef shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return ((torch::arange(n).remainder(17) - 8).to(torch::kFloat32) / 16).reshape(shape);
  };
  for (const auto& [file, hidden] : {std::pair<std::string, int64_t>{"mynn_readme.zanj", 20},
                                     {"mynn_hidden64_fortran.zanj", 64}}) {
    SCOPED_TRACE(file);
    auto model = MyNN::read(zanj_test::data_dir() + "/python/" + file);
    EXPECT_EQ(model->config().hidden_dim, hidden);
    EXPECT_EQ(model->config().act_fn, "ReLU");
    EXPECT_TRUE(
        BitIdentical(model->net[0]->as<torch::nn::Linear>()->weight, formula({hidden, 10})));
    EXPECT_TRUE(BitIdentical(model->net[2]->as<torch::nn::Linear>()->bias, formula({2})));
    const auto& records = model->training_records();
    ASSERT_EQ(records["loss_per_step"].size(), 300u);
    EXPECT_EQ(records["loss_per_step"][1].get<double>(), 0.5);
    EXPECT_EQ(records["note"], "h\u00e9llo \u2603");
    EXPECT_TRUE(std::isnan(records["nan_loss"].get<double>()));
  }
}

TEST(ConfiguredModelTest, PythonComputesTheSameOutputsFromOurFile) {
  if (!zanj_test::python_has("numpy, torch"))
    GTEST_SKIP() << "needs python3-numpy and python3-torch";
  TempDir dir;
  auto model = trained_model(64);
  model->save(dir.file("run.zanj"));
  std::string python_out;
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                               "/check_checkpoint.py --mynn-probe " + dir.file("run.zanj"),
                           &python_out),
            0);
  const auto py = nlohmann::json::parse(python_out);
  torch::NoGradGuard no_grad;
  const auto ours =
      model->forward(torch::arange(30, torch::kFloat32).reshape({3, 10}) / 10).to(torch::kDouble);
  ASSERT_EQ(py.size(), 3u);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_NEAR(py[i][j].get<double>(), ours[i][j].item<double>(), 1e-6);
    }
  }
}

}  // namespace
