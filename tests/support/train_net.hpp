// SPDX-License-Identifier: MIT
// A small model with dropout (so the RNG matters) shared by the training tests and their helper.
#pragma once

#include <torch/torch.h>

#include <configured_model/configured_model.hpp>

namespace zanj_test {

struct TrainNetConfig {
  int64_t in = 8;
  int64_t hidden = 32;
  int64_t out = 4;
  double dropout = 0.3;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TrainNetConfig, in, hidden, out, dropout)

class TrainNet : public zanj::ConfiguredModel<TrainNet, TrainNetConfig> {
 public:
  explicit TrainNet(TrainNetConfig c) : ConfiguredModel(std::move(c)) {
    fc1 = register_module("fc1", torch::nn::Linear(config().in, config().hidden));
    drop = register_module("drop", torch::nn::Dropout(config().dropout));
    fc2 = register_module("fc2", torch::nn::Linear(config().hidden, config().out));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(drop(fc1(x)))); }
  torch::nn::Linear fc1{nullptr};
  torch::nn::Dropout drop{nullptr};
  torch::nn::Linear fc2{nullptr};
};

/// The optimizers the exactness tests cover, by name.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name,
                                                               TrainNet& model) {
  namespace o = torch::optim;
  // Two param groups with different options, to prove groups survive.
  auto groups = [&](auto opts_a, auto opts_b) {
    std::vector<o::OptimizerParamGroup> g;
    g.emplace_back(model.fc1->parameters(), std::make_unique<decltype(opts_a)>(opts_a));
    g.emplace_back(model.fc2->parameters(), std::make_unique<decltype(opts_b)>(opts_b));
    return g;
  };
  if (name == "SGD") {
    return std::make_unique<o::SGD>(groups(o::SGDOptions(0.1).momentum(0.9).nesterov(true),
                                           o::SGDOptions(0.05).momentum(0.5).weight_decay(1e-4)),
                                    o::SGDOptions(0.1));
  }
  if (name == "Adam") {
    return std::make_unique<o::Adam>(
        groups(o::AdamOptions(1e-2), o::AdamOptions(5e-3).amsgrad(true)), o::AdamOptions(1e-2));
  }
  if (name == "AdamW") {
    return std::make_unique<o::AdamW>(
        groups(o::AdamWOptions(1e-2).amsgrad(true), o::AdamWOptions(2e-2).weight_decay(0.1)),
        o::AdamWOptions(1e-2));
  }
  if (name == "RMSprop") {
    return std::make_unique<o::RMSprop>(
        groups(o::RMSpropOptions(1e-2).momentum(0.5).centered(true), o::RMSpropOptions(5e-3)),
        o::RMSpropOptions(1e-2));
  }
  return std::make_unique<o::Adagrad>(
      groups(o::AdagradOptions(0.1).lr_decay(0.01),
             o::AdagradOptions(0.05).initial_accumulator_value(0.1)),
      o::AdagradOptions(0.1));
}

/// A TrainNet with an Adam optimizer, a few steps at a time on random batches (torch's RNG).
struct Trainer {
  std::shared_ptr<TrainNet> model = std::make_shared<TrainNet>(TrainNetConfig{});
  std::unique_ptr<torch::optim::Optimizer> opt = make_optimizer("Adam", *model);
  zanj::TrainingState state;
  void steps(int n) {
    for (int i = 0; i < n; ++i) {
      opt->zero_grad();
      auto loss = model->forward(torch::randn({16, 8})).pow(2).mean();
      loss.backward();
      opt->step();
      state.step += 1;
      model->training_records()["loss"].push_back(loss.item<double>());
    }
  }
};

}  // namespace zanj_test
