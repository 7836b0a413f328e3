// SPDX-License-Identifier: MIT
// The MyNN model of Python ZANJ's README, in C++. Files are interchangeable with Python's
// `MyNN.read` / `model.save` given the same class definitions there.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <configured_model/configured_model.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace mlp {

struct MyNNConfig {
  int64_t input_dim = 10;
  int64_t hidden_dim = 20;
  int64_t output_dim = 2;
  std::string act_fn = "ReLU";  // a torch.nn class name, looked up in zanj's registry
  nlohmann::json loss_kwargs = {{"reduction", "mean"}};
  std::string loss_factory = "CrossEntropyLoss";
};
// In the config's own namespace, so that nlohmann finds it. Strict: a missing field throws.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MyNNConfig, input_dim, hidden_dim, output_dim, act_fn,
                                   loss_kwargs, loss_factory)

class MyNN : public zanj::ConfiguredModel<MyNN, MyNNConfig> {
 public:
  explicit MyNN(MyNNConfig config) : ConfiguredModel(std::move(config)) {
    torch::nn::Sequential seq;
    seq->push_back(torch::nn::Linear(this->config().input_dim, this->config().hidden_dim));
    seq->push_back(zanj::make_activation(this->config().act_fn));
    seq->push_back(torch::nn::Linear(this->config().hidden_dim, this->config().output_dim));
    net = register_module("net", seq);
  }

  torch::Tensor forward(const torch::Tensor& x) { return net->forward(x); }

  /// The loss the config names, e.g. CrossEntropyLoss(reduction="mean").
  torch::nn::AnyModule loss() const {
    return zanj::make_loss(config().loss_factory, config().loss_kwargs);
  }

  torch::nn::Sequential net{nullptr};
};

/// A digest of the model's and the optimizer's tensors, sorted by name: the examples print it as
/// `final_state_digest=<hex>` to compare runs (a resumed one with an uninterrupted one).
inline std::string digest(const MyNN& model, const torch::optim::Optimizer& optimizer) {
  zanj::StateDict all;
  for (const auto& [name, t] : zanj::state_dict(model)) all.emplace_back("model/" + name, t);
  const zanj::Node ts = zanj::training_state_node(model, optimizer, nullptr, {});
  for (const auto& [param, state] : ts.at("optimizer").at("state").as_dict()) {
    for (const auto& [key, value] : state.as_dict()) {
      const std::string name = "optimizer/" + param + "/" + key;
      if (value.is_tensor()) all.emplace_back(name, value.tensor());
      if (value.is_list()) {  // LBFGS's history
        for (std::size_t i = 0; i < value.size(); ++i) {
          all.emplace_back(name + "/" + std::to_string(i), value.at(i).tensor());
        }
      }
    }
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return zanj::state_digest(all);
}

}  // namespace mlp
