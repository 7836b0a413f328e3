// SPDX-License-Identifier: MIT
// The registry of torch.nn modules by their Python names (activations, losses, user entries).
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

TEST(ModuleRegistryTest, BuildsTorchModulesByPythonName) {
  auto relu = zanj::make_activation("ReLU");
  EXPECT_TRUE(torch::equal(relu.forward(torch::tensor({-1.0, 2.0})), torch::tensor({0.0, 2.0})));
  auto leaky = zanj::make_activation("LeakyReLU", {{"negative_slope", 0.5}});
  EXPECT_TRUE(torch::equal(leaky.forward(torch::tensor({-2.0})), torch::tensor({-1.0})));
  auto loss = zanj::make_loss("MSELoss", {{"reduction", "sum"}});
  EXPECT_EQ(loss.forward(torch::tensor({1.0, 2.0}), torch::tensor({0.0, 0.0})).item<double>(), 5.0);
  EXPECT_THROW(zanj::make_loss("MSELoss", {{"reduction", "avg"}}), zanj::ConfigError);
  EXPECT_THROW(zanj::make_activation("ReLU", {{"slope", 1}}), zanj::ConfigError);
  EXPECT_THROW(zanj::make_loss("NoSuchLoss"), zanj::ConfigError);
}

TEST(ModuleRegistryTest, UsersCanRegisterTheirOwn) {
  zanj::register_activation("Square", [](const nlohmann::json&) {
    return torch::nn::AnyModule(torch::nn::Functional([](torch::Tensor x) { return x * x; }));
  });
  EXPECT_TRUE(torch::equal(zanj::make_activation("Square").forward(torch::tensor({3.0})),
                           torch::tensor({9.0})));
  const auto names = zanj::activation_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "Square"), names.end());
}

}  // namespace
