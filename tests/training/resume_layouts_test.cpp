// SPDX-License-Identifier: MIT
// What resume brings back beyond the common case: LBFGS, optimizers over a subset of the model
// (frozen layers), tied parameters, the data position, a damaged newest checkpoint.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <fstream>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

torch::Tensor loss_of(TrainNet& model) {
  torch::manual_seed(3);
  return model.forward(torch::randn({16, 8})).pow(2).mean();
}

// Every tensor of every parameter's optimizer state, by name: what two runs must agree on.
zanj::Node optimizer_state(const torch::nn::Module& model, const torch::optim::Optimizer& opt) {
  return zanj::training_state_node(model, opt, nullptr, {}).at("optimizer").at("state");
}

TEST(ResumeLayoutsTest, LbfgsHistoryComesBackAndTheNextStepsAgree) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  model->eval();
  torch::optim::LBFGS opt(model->parameters(),
                          torch::optim::LBFGSOptions(0.5).max_iter(3).history_size(4));
  auto closure = [&] {
    opt.zero_grad();
    auto l = loss_of(*model);
    l.backward();
    return l;
  };
  for (int i = 0; i < 3; ++i) opt.step(closure);
  zanj::save_checkpoint(dir.file("c.zanj"), *model, opt, nullptr, {});
  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  run.model->eval();
  EXPECT_TRUE(zanj_test::SameTree(optimizer_state(*model, opt),
                                  optimizer_state(*run.model, *run.optimizer)));
  // Its history has entries (old_dirs), so the check above compared real state.
  const auto saved = optimizer_state(*model, opt);
  EXPECT_GT(saved.at("fc1.weight").at("old_dirs").size(), 0u);
  for (int i = 0; i < 2; ++i) {
    opt.step(closure);
    run.optimizer->step([&] {
      run.optimizer->zero_grad();
      auto l = loss_of(*run.model);
      l.backward();
      return l;
    });
  }
  EXPECT_TRUE(BitIdentical(model->fc2->weight, run.model->fc2->weight));
}

TEST(ResumeLayoutsTest, AnOptimizerOverASubsetKeepsTheFrozenLayerFrozen) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  for (auto& p : model->fc1->parameters()) p.requires_grad_(false);
  torch::optim::Adam opt(model->fc2->parameters(), torch::optim::AdamOptions(1e-2));
  loss_of(*model).backward();
  opt.step();
  zanj::save_checkpoint(dir.file("c.zanj"), *model, opt, nullptr, {});
  const auto tree = zanj::read(dir.file("c.zanj"));
  EXPECT_EQ(tree.at("training_state").at("optimizer").at("frozen").size(), 2u);
  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  EXPECT_FALSE(run.model->fc1->weight.requires_grad());
  EXPECT_FALSE(run.model->fc1->bias.requires_grad());
  EXPECT_TRUE(run.model->fc2->weight.requires_grad());
  ASSERT_EQ(run.optimizer->param_groups().at(0).params().size(), 2u);
  EXPECT_EQ(run.optimizer->param_groups()[0].params()[0].unsafeGetTensorImpl(),
            run.model->fc2->weight.unsafeGetTensorImpl());
  // A model with a parameter the checkpoint never saw is still refused.
  struct Grown : TrainNet {
    Grown() : TrainNet(TrainNetConfig{}) { register_parameter("extra", torch::zeros({1})); }
  };
  Grown grown;
  EXPECT_THAT([&] { zanj::resume_training(tree.at("training_state"), grown, "c.zanj"); },
              zanj_test::Throws<zanj::StateMismatchError>(
                  "c.zanj: training_state/optimizer",
                  "model parameters the checkpoint does not know: extra"));
}

// The GPT pattern: the output projection is the embedding's weight, registered under both names.
struct HeadImpl : torch::nn::Module {
  explicit HeadImpl(const torch::Tensor& tied) { weight = register_parameter("weight", tied); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::matmul(x, weight.t()); }
  torch::Tensor weight;
};
TORCH_MODULE(Head);

struct TiedConfig {
  int64_t vocab = 11;
  int64_t dim = 6;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TiedConfig, vocab, dim)
class Tied : public zanj::ConfiguredModel<Tied, TiedConfig> {
 public:
  explicit Tied(TiedConfig c) : ConfiguredModel(std::move(c)) {
    wte = register_module("wte", torch::nn::Embedding(config().vocab, config().dim));
    lm_head = register_module("lm_head", Head(wte->weight));
  }
  torch::Tensor forward(const torch::Tensor& tokens) { return lm_head(wte(tokens)); }
  torch::nn::Embedding wte{nullptr};
  Head lm_head{nullptr};
};

std::vector<torch::Tensor> distinct(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) {
    bool seen = false;
    for (const auto& q : out) seen = seen || q.is_same(p);
    if (!seen) out.push_back(p);
  }
  return out;
}

TEST(ResumeLayoutsTest, TiedParametersResumeWithOneOptimizerSlot) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = std::make_shared<Tied>(TiedConfig{});
  ASSERT_TRUE(model->lm_head->named_parameters()["weight"].is_same(model->wte->weight));
  torch::optim::Adam opt(distinct(*model), torch::optim::AdamOptions(1e-2));
  auto tokens = torch::tensor({1, 2, 3, 4});
  auto step = [&](Tied& m, torch::optim::Optimizer& o) {
    o.zero_grad();
    torch::nn::functional::cross_entropy(m.forward(tokens), tokens).backward();
    o.step();
  };
  step(*model, opt);
  zanj::save_checkpoint(dir.file("c.zanj"), *model, opt, nullptr, {});
  auto run = zanj::resume<Tied>(dir.file("c.zanj"));
  EXPECT_TRUE(run.model->lm_head->named_parameters()["weight"].is_same(run.model->wte->weight));
  EXPECT_EQ(run.optimizer->param_groups()[0].params().size(), 1u);
  step(*model, opt);
  step(*run.model, *run.optimizer);
  EXPECT_TRUE(BitIdentical(model->wte->weight, run.model->wte->weight));
}

TEST(ResumeLayoutsTest, AnOptimizerSubclassNeedsItsOwnCodec) {
  struct MySGD : torch::optim::SGD {
    using torch::optim::SGD::SGD;
  };
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  MySGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_THAT(
      [&] { zanj::training_state_node(*model, opt, nullptr, {}); },
      zanj_test::Throws<zanj::ConfigError>("cannot save optimizer", "LBFGS", "register_optimizer"));
}

using Sampler = zanj::ResumableSampler<torch::data::samplers::RandomSampler>;

std::vector<size_t> take(Sampler& s, int batches) {
  std::vector<size_t> out;
  for (int i = 0; i < batches; ++i) {
    auto b = s.next(4);
    if (!b) break;
    out.insert(out.end(), b->begin(), b->end());
  }
  return out;
}

TEST(ResumeLayoutsTest, TheSamplerContinuesItsEpochAndTheRngIsSetBack) {
  TempDir dir;
  torch::manual_seed(1);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  Sampler sampler(torch::data::samplers::RandomSampler(20));
  zanj::TrainingState state;
  state.data = sampler.position();
  take(sampler, 2);
  zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, nullptr, state);
  const auto rest = take(sampler, 10);
  const auto next_random = torch::rand({3});

  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  // Saving before the sampler is restored would silently lose the position: refused.
  EXPECT_THAT(
      [&] {
        zanj::save_checkpoint(dir.file("d.zanj"), *run.model, *run.optimizer, nullptr, run.state);
      },
      zanj_test::Throws<zanj::StateMismatchError>("run.restore(sampler)"));
  Sampler again(torch::data::samplers::RandomSampler(20));  // draws from torch's RNG
  run.restore(again);
  again.reset();  // the DataLoader's start of epoch: skipped once after a restore
  EXPECT_EQ(take(again, 10), rest);
  EXPECT_TRUE(BitIdentical(torch::rand({3}), next_random));
  EXPECT_EQ(run.state.data, again.position());
  // A position restored into another kind of sampler is refused.
  zanj::ResumableSampler<torch::data::samplers::SequentialSampler> sequential(
      torch::data::samplers::SequentialSampler(20));
  EXPECT_THAT([&] { run.restore(sequential); },
              zanj_test::Throws<zanj::StateMismatchError>("training_state/data",
                                                          "saved by a RandomSampler"));
}

TEST(ResumeLayoutsTest, AMalformedDataPositionIsAFormatError) {
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  Sampler sampler(torch::data::samplers::RandomSampler(5));
  zanj::TrainingState state;
  state.data = sampler.position();
  auto tree = zanj::checkpoint_node(*model, *opt, nullptr, state);
  tree.at("training_state").at("data").at("indices") = torch::tensor({0, 1, 1, 3, 4});
  zanj::save(tree, dir.file("c.zanj"));
  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  Sampler again(torch::data::samplers::RandomSampler(5));
  EXPECT_THAT([&] { run.restore(again); },
              zanj_test::Throws<zanj::FormatError>("c.zanj: training_state/data/indices",
                                                   "not a permutation"));
}

TEST(ResumeLayoutsTest, ResumeLatestSkipsADamagedNewestCheckpoint) {
  TempDir dir;
  zanj::CheckpointManager manager(dir.file("ckpt"), zanj::CheckpointPolicy{});
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  zanj::TrainingState state;
  state.step = 10;
  manager.save(*model, *opt, nullptr, state);
  state.step = 20;
  manager.save(*model, *opt, nullptr, state);
  // The newest loses its second half (a disk that filled up, a copy cut short).
  const std::string newest = manager.latest()->path;
  const auto size = std::filesystem::file_size(newest);
  std::filesystem::resize_file(newest, size / 2);
  auto run = manager.resume_latest<TrainNet>();
  EXPECT_EQ(run.state.step, 10);
  // With nothing readable left, the newest checkpoint's error.
  std::filesystem::resize_file(manager.list().front().path, 10);
  EXPECT_THROW(manager.resume_latest<TrainNet>(), zanj::FormatError);
}

}  // namespace
