// SPDX-License-Identifier: MIT
// A ConfiguredModel inside another keeps its own training records through a save and read, and
// clone() gives a deep copy of the same type.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>

#include "test_support.hpp"
#include "train_net.hpp"

namespace nested {

struct OuterConfig {
  zanj_test::TrainNetConfig inner;
  int64_t head = 3;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(OuterConfig, inner, head)

class Outer : public zanj::ConfiguredModel<Outer, OuterConfig> {
 public:
  explicit Outer(OuterConfig c) : ConfiguredModel(std::move(c)) {
    inner = register_module("inner", std::make_shared<zanj_test::TrainNet>(config().inner));
    head = register_module("head", torch::nn::Linear(config().inner.out, config().head));
  }
  std::shared_ptr<zanj_test::TrainNet> inner;
  torch::nn::Linear head{nullptr};
};

}  // namespace nested

namespace {

using nested::Outer;
using zanj_test::TempDir;

TEST(NestedModelTest, AnInnerModelKeepsItsOwnTrainingRecords) {
  TempDir dir;
  auto model = std::make_shared<Outer>(nested::OuterConfig{});
  model->training_records()["loss"] = {0.5, 0.25};
  model->inner->training_records()["pretrain_loss"] = {1.5, 1.0};
  model->save(dir.file("m.zanj"));
  auto back = Outer::read(dir.file("m.zanj"));
  EXPECT_EQ(back->training_records(), model->training_records());
  EXPECT_EQ(back->inner->training_records(), model->inner->training_records());
  // Stored where Python ZANJ does not look: its records stay the outer model's alone.
  const auto tree = zanj::read(dir.file("m.zanj"));
  EXPECT_FALSE(tree.at("training_records").contains("pretrain_loss"));
  EXPECT_EQ(tree.at("meta").at("nested_training_records").at("inner").at("pretrain_loss").size(),
            2u);
}

TEST(NestedModelTest, CloneIsADeepCopyOfTheSameType) {
  auto model = std::make_shared<Outer>(nested::OuterConfig{});
  model->to(torch::kFloat64);
  model->head->bias.requires_grad_(false);
  model->training_records()["loss"] = {0.5};
  model->inner->training_records()["note"] = "inner";
  auto copy = std::dynamic_pointer_cast<Outer>(model->clone());
  ASSERT_TRUE(copy);
  EXPECT_EQ(nlohmann::json(copy->config()), nlohmann::json(model->config()));
  EXPECT_TRUE(zanj_test::SameState(*copy, *model));
  EXPECT_EQ(copy->head->weight.scalar_type(), torch::kFloat64);
  EXPECT_FALSE(copy->head->bias.requires_grad());
  EXPECT_EQ(copy->training_records(), model->training_records());
  EXPECT_EQ(copy->inner->training_records(), model->inner->training_records());
  // A copy, not an alias.
  EXPECT_NE(copy->head->weight.data_ptr(), model->head->weight.data_ptr());
  torch::NoGradGuard no_grad;
  copy->head->weight.add_(1);
  EXPECT_FALSE(torch::equal(copy->head->weight, model->head->weight));
}

}  // namespace
