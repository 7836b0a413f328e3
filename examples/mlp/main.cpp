// SPDX-License-Identifier: MIT
// Trains the README's MyNN on synthetic data, saves it with its training log, reads it back
// with no constructor arguments and checks that it computes exactly the same outputs.
//
//   mlp_example [--out mlp.zanj] [--hidden-dim 20] [--steps 100]
//   mlp_example --read some.zanj      # print MyNN's output for a fixed input as JSON
#include <iostream>

#include <CLI/CLI.hpp>

#include "my_nn.hpp"

namespace {

// The fixed probe input: arange(30).reshape(3, 10) / 10.
torch::Tensor probe_input(int64_t input_dim) {
  return torch::arange(3 * input_dim, torch::kFloat32).reshape({3, input_dim}) / 10;
}

nlohmann::ordered_json to_nested(const torch::Tensor& t) {
  auto d = t.to(torch::kDouble).contiguous();
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < d.size(0); ++i) {
    nlohmann::ordered_json row = nlohmann::ordered_json::array();
    for (int64_t j = 0; j < d.size(1); ++j) row.push_back(d[i][j].item<double>());
    rows.push_back(row);
  }
  return rows;
}

int read_and_print(const std::string& path) {
  auto model = mlp::MyNN::read(path);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto out = model->forward(probe_input(model->config().input_dim));
  std::cout << zanj::dump_json(to_nested(out), zanj::JsonStyle::kLine) << "\n";
  return 0;
}

bool same_state(const mlp::MyNN& a, const mlp::MyNN& b) {
  const auto sa = zanj::state_dict(a);
  const auto sb = zanj::state_dict(b);
  if (sa.size() != sb.size()) return false;
  for (std::size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].first != sb[i].first || !torch::equal(sa[i].second, sb[i].second)) return false;
  }
  return true;
}

int train_save_check(const std::string& out, int64_t hidden_dim, int steps) {
  torch::manual_seed(0);
  mlp::MyNNConfig config;
  config.hidden_dim = hidden_dim;
  auto model = std::make_shared<mlp::MyNN>(config);
  auto loss_fn = model->loss();

  // Synthetic two-class problem: is the sum of the inputs positive?
  const auto x = torch::randn({256, config.input_dim});
  const auto y = (x.sum(1) > 0).to(torch::kLong);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    auto loss = loss_fn.forward(model->forward(x), y);
    loss.backward();
    optimizer.step();
    model->training_records()["loss"].push_back(loss.item<double>());
  }
  model->training_records()["steps"] = steps;

  model->save(out);
  auto again = mlp::MyNN::read(out);

  torch::NoGradGuard no_grad;
  model->eval();
  again->eval();
  const auto probe = probe_input(config.input_dim);
  const bool outputs_equal = torch::equal(model->forward(probe), again->forward(probe));
  const bool state_equal = same_state(*model, *again);
  const bool records_equal = model->training_records() == again->training_records();
  const auto& losses = model->training_records()["loss"];
  std::cout << "trained MyNN(hidden_dim=" << hidden_dim << ") for " << steps << " steps: loss "
            << losses.front().get<double>() << " -> " << losses.back().get<double>() << "\n"
            << "saved " << out << " and read it back with MyNN::read\n"
            << "outputs identical: " << (outputs_equal ? "yes" : "NO") << "\n"
            << "state_dict identical: " << (state_equal ? "yes" : "NO") << "\n"
            << "training_records identical: " << (records_equal ? "yes" : "NO") << "\n";
  return outputs_equal && state_equal && records_equal ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train, save and read back the MyNN example model (configured_model)"};
  std::string out = "mlp.zanj";
  std::string read_path;
  int64_t hidden_dim = 20;
  int steps = 100;
  app.add_option("--out", out, "where to save the trained model")->capture_default_str();
  app.add_option("--hidden-dim", hidden_dim, "hidden layer width (64 makes the first weight "
                 "an external .npy entry)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "training steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--read", read_path,
                 "read a MyNN checkpoint, print its output for arange(30).reshape(3,10)/10 as "
                 "JSON, and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!read_path.empty()) return read_and_print(read_path);
    return train_save_check(out, hidden_dim, steps);
  } catch (const zanj::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
