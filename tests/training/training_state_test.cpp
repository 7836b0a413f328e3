// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <configured_model/configured_model.hpp>
#include <thread>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

TEST(TrainingStateTest, OptimizerStateIsKeyedByParameterName) {
  TempDir dir;
  torch::manual_seed(5);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("Adam", *model);
  model->forward(torch::randn({4, 8})).sum().backward();
  opt->step();
  zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, nullptr,
                        {3, 1, 12, {{"note", "x"}}, nullptr});
  const auto tree = zanj::read(dir.file("c.zanj"));
  const auto& state = tree.at("training_state").at("optimizer").at("state");
  EXPECT_TRUE(state.contains("fc1.weight"));
  EXPECT_TRUE(state.contains("fc2.bias"));
  EXPECT_EQ(tree.at("training_state")
                .at("optimizer")
                .at("param_groups")
                .at(0)
                .at("params")
                .at(0)
                .scalar(),
            "fc1.weight");
  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  EXPECT_EQ(run.state.step, 3);
  EXPECT_EQ(run.state.epoch, 1);
  EXPECT_EQ(run.state.samples_seen, 12);
  EXPECT_EQ(run.state.user["note"], "x");
  EXPECT_EQ(run.scheduler, nullptr);
  // The new optimizer holds the new model's parameters, with the saved state.
  EXPECT_EQ(run.optimizer->param_groups().size(), 2u);
  const auto& p = run.optimizer->param_groups()[0].params()[0];
  EXPECT_EQ(p.unsafeGetTensorImpl(), run.model->fc1->weight.unsafeGetTensorImpl());
  auto& st = static_cast<torch::optim::AdamParamState&>(
      *run.optimizer->state().at(c10::guts::to_string(p.unsafeGetTensorImpl())));
  EXPECT_EQ(st.step(), 1);
  EXPECT_TRUE(BitIdentical(st.exp_avg(), state.at("fc1.weight").at("exp_avg").tensor()));
}

TEST(TrainingStateTest, MismatchedModelIsAClearError) {
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, nullptr, {});
  auto other = std::make_shared<TrainNet>(TrainNetConfig{8, 16, 4, 0.3});  // fc1 shape differs
  const auto tree = zanj::read(dir.file("c.zanj"));
  // SGD without momentum has no state; use Adam state to see the shape check.
  auto adam = zanj_test::make_optimizer("Adam", *model);
  model->forward(torch::randn({2, 8})).sum().backward();
  adam->step();
  zanj::save_checkpoint(dir.file("a.zanj"), *model, *adam, nullptr, {});
  EXPECT_THAT(
      [&] {
        zanj::resume_training(zanj::read(dir.file("a.zanj")).at("training_state"), *other,
                              "a.zanj");
      },
      zanj_test::Throws<zanj::StateMismatchError>(
          "a.zanj: training_state/optimizer/state/fc1.weight: exp_avg: shape mismatch"));
  // A model with a parameter the optimizer never saw.
  struct Extra : torch::nn::Module {
    Extra() {
      register_module("fc1", torch::nn::Linear(8, 32));
      register_parameter("new_param", torch::zeros({1}));
    }
  };
  Extra extra;
  EXPECT_THAT([&] { zanj::resume_training(tree.at("training_state"), extra, "c.zanj"); },
              zanj_test::Throws<zanj::StateMismatchError>(
                  "parameters missing from the model: fc2.weight, fc2.bias",
                  "model parameters the checkpoint does not know: new_param"));
}

TEST(TrainingStateTest, PlainTorchStepLRIsRefusedWithAHint) {
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  torch::optim::StepLR plain(*opt, 2);
  EXPECT_THAT([&] { zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, &plain, {}); },
              zanj_test::Throws<zanj::ConfigError>("use zanj::StepLR"));
  EXPECT_FALSE(zanj_test::fs::exists(dir.file("c.zanj")));
}

TEST(TrainingStateTest, UserSchedulersPlugInThroughTheRegistry) {
  struct Halving : torch::optim::LRScheduler, zanj::SavableScheduler {
    explicit Halving(torch::optim::Optimizer& o) : LRScheduler(o) {}
    std::vector<double> get_lrs() override {
      auto lrs = get_current_lrs();
      for (auto& lr : lrs) lr /= 2;
      return lrs;
    }
    std::string scheduler_type() const override { return "Halving"; }
    nlohmann::json scheduler_state() const override { return {{"count", step_count_}}; }
    void set_count(unsigned c) { step_count_ = c; }
    unsigned count() const { return step_count_; }
  };
  zanj::register_scheduler("Halving", [](torch::optim::Optimizer& o, const nlohmann::json& s) {
    auto h = std::make_unique<Halving>(o);
    h->set_count(s.at("count").get<unsigned>());
    return std::unique_ptr<torch::optim::LRScheduler>(std::move(h));
  });
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  Halving h(*opt);
  h.step();
  h.step();
  zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, &h, {});
  auto run = zanj::resume<TrainNet>(dir.file("c.zanj"));
  ASSERT_NE(run.scheduler, nullptr);
  EXPECT_EQ(dynamic_cast<Halving&>(*run.scheduler).count(), 2u);
  EXPECT_EQ(static_cast<torch::optim::SGDOptions&>(run.optimizer->param_groups()[0].options()).lr(),
            0.025);
}

TEST(TrainingStateTest, RestoresTheRngState) {
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  torch::manual_seed(42);
  torch::rand({3});
  zanj::save_checkpoint(dir.file("c.zanj"), *model, *opt, nullptr, {});
  const auto expected = torch::rand({5});
  torch::manual_seed(7);
  zanj::resume<TrainNet>(dir.file("c.zanj"));
  EXPECT_TRUE(torch::equal(torch::rand({5}), expected));
}

// ---- crash safety ----

}  // namespace
