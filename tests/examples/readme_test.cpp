// SPDX-License-Identifier: MIT
// The README's C++ code blocks, compiled and run from README.md itself: each `.inc` is a block
// marked `<!-- test: NAME -->` there (readme_snippets.py writes them at configure time). Each
// test sets up what the block uses, runs it as written, and checks what it claims.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <filesystem>
#include <iostream>

#include "my_nn.hpp"
#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

// The README's "Fast reads and big files" snippet, as written there (compiled from README.md).
TEST(ReadmeTest, FastReadsSnippet) {
  TempDir dir;
  const std::string run = dir.file("run.zanj");
  auto model = std::make_shared<mlp::MyNN>(mlp::MyNNConfig{});
  model->save(run);
#include "fast_reads.inc"
  EXPECT_TRUE(zanj_test::SameState(*model, *m));
  EXPECT_TRUE(zanj_test::BitIdentical(w, zanj::state_dict(*model).front().second));
  ASSERT_EQ(file.tensors().size(), 4u);
  EXPECT_EQ(file.tensors()[0].bytes, 800u);
}

// The README's "Compressed files" snippet, as written there (compiled from README.md).
TEST(ReadmeTest, CompressedFilesSnippet) {
  TempDir dir;
  const std::string run = dir.file("run.zanj");
  torch::manual_seed(2);
  auto model = std::make_shared<mlp::MyNN>(mlp::MyNNConfig{});
  const auto before = zanj::state_digest(zanj::state_dict(*model));
#include "compressed_files.inc"
  EXPECT_EQ(zanj::state_digest(zanj::state_dict(*model)), before);
  const auto archive = zanj::ArchiveReader::open(run);
  for (const auto& e : archive.entries()) EXPECT_EQ(e.method, 8) << e.name;
  auto fresh = std::make_shared<mlp::MyNN>(mlp::MyNNConfig{});
  fresh->load(run);
  EXPECT_EQ(zanj::state_digest(zanj::state_dict(*fresh)), before);
}

// What the README's resume loop trains on: 100 samples of a two-class problem.
class TwoClasses : public torch::data::datasets::Dataset<TwoClasses> {
 public:
  TwoClasses() : x_(torch::randn({100, 10}, at::detail::createCPUGenerator(3))) {
    y_ = (x_.sum(1) > 0).to(torch::kLong);
  }
  torch::data::Example<> get(size_t i) override {
    return {x_[static_cast<int64_t>(i)], y_[static_cast<int64_t>(i)]};
  }
  torch::optional<size_t> size() const override { return 100; }

 private:
  torch::Tensor x_, y_;
};

// The README's "Resuming training exactly" loop, as written there: 25 steps straight equal 15
// steps (a checkpoint at step 10, mid-epoch) and a resume to 25, bit for bit.
TEST(ReadmeTest, ResumeLoopSnippet) {
  const mlp::MyNNConfig config;
  TwoClasses dataset;
  auto go = [&](int64_t steps) {
#include "resume_loop.inc"
    EXPECT_EQ(state.step, steps);
    EXPECT_EQ(state.data, sampler.position());
    return mlp::digest(*model, *optimizer);
  };
  TempDir straight_dir, split_dir;
  std::string straight, resumed;
  {
    zanj_test::ScopedCwd in_dir(straight_dir.path());
    torch::manual_seed(1);
    straight = go(25);
  }
  {
    zanj_test::ScopedCwd in_dir(split_dir.path());
    torch::manual_seed(1);
    EXPECT_NE(go(15), straight);
    torch::manual_seed(99);  // a new process: the RNG is wherever it is
    resumed = go(25);
  }
  EXPECT_EQ(resumed, straight);
}

// The README's "Saves that do not stop training" snippet, as written there (compiled from
// README.md).
TEST(ReadmeTest, BackgroundSavesSnippet) {
  TempDir dir;
  zanj_test::ScopedCwd in_dir(dir.path());
  torch::manual_seed(6);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto optimizer = zanj_test::make_optimizer("SGD", *model);
  auto scheduler = std::make_unique<zanj::StepLR>(*optimizer, 3, 0.5);
  zanj::TrainingState state;
  zanj::CheckpointManager manager("runs/a", {});
  auto train_more = [&] {
    optimizer->zero_grad();
    model->forward(torch::randn({4, 8})).sum().backward();
    optimizer->step();
  };
  const auto before = zanj::state_digest(zanj::state_dict(*model));
#include "background_saves.inc"
  EXPECT_EQ(zanj::state_digest(zanj::state_dict(*TrainNet::read("run.zanj"))), before);
  EXPECT_NE(zanj::state_digest(zanj::state_dict(*model)), before);
  EXPECT_TRUE(manager.latest());
}

// The README's "Weights from Python, libtorch and Hugging Face" snippet, as written there, run
// in a folder holding files of those names.
TEST(ReadmeTest, WeightsFromPythonSnippet) {
  TempDir dir;
  zanj_test::ScopedCwd in_dir(dir.path());
  zanj::Node python = zanj::Node::dict();  // DataParallel names, as Python writes them
  python["module.layers.0.weight"] = torch::randn({4, 3}).to(torch::kBFloat16);
  python["module.layers.0.bias"] = torch::randn({4}).to(torch::kBFloat16);
  python["module.layers.1.weight"] = torch::randn({2, 4}).to(torch::kBFloat16);
  python["module.layers.1.bias"] = torch::randn({2}).to(torch::kBFloat16);
  zanj::save_torch(python, "pytorch_model.bin");
  zanj::Node ckpt_in = zanj::Node::dict();
  ckpt_in["model"] = python;
  ckpt_in["epoch"] = nlohmann::json(3);
  zanj::save_torch(ckpt_in, "checkpoint.pt");
  zanj::save_safetensors({{"lm_head.weight", torch::ones({2, 2})}}, "shard1.safetensors");
  zanj_test::write_bytes("model.safetensors.index.json",
                         R"({"weight_map": {"lm_head.weight": "shard1.safetensors"}})");
#include "weights_from_python.inc"
  EXPECT_TRUE(BitIdentical(net->named_parameters()["1.weight"],
                           python.at("module.layers.1.weight").tensor().to(torch::kFloat32)));
  EXPECT_EQ(epoch, 3);
  EXPECT_TRUE(BitIdentical(w, torch::ones({2, 2})));
}

}  // namespace
