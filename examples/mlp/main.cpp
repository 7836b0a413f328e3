// SPDX-License-Identifier: MIT
// Trains the README's MyNN on synthetic data, saves it with its training log, reads it back
// with no constructor arguments and checks that it computes exactly the same outputs.
//
//   mlp_example [--out mlp.zanj] [--hidden-dim 20] [--steps 100]
//   mlp_example --read some.zanj      # print MyNN's output for a fixed input as JSON
//   mlp_example --ckpt-dir runs/a --steps 200 [--save-every 10] [--resume] [--async]
//                                     # resumable run: checkpoints every K steps, keeps the
//                                     # last 3, --resume continues from the latest one,
//                                     # --async saves in the background while training goes on
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

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

// Synthetic two-class problem: is the sum of the inputs positive? Always the same data.
struct Data {
  torch::Tensor x, y;
};
Data make_data(int64_t input_dim) {
  torch::manual_seed(0);
  auto x = torch::randn({256, input_dim});
  return {x, (x.sum(1) > 0).to(torch::kLong)};
}

int train_save_check(const std::string& out, int64_t hidden_dim, int steps) {
  mlp::MyNNConfig config;
  config.hidden_dim = hidden_dim;
  const Data data = make_data(config.input_dim);
  auto model = std::make_shared<mlp::MyNN>(config);
  auto loss_fn = model->loss();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  for (int step = 0; step < steps; ++step) {
    optimizer.zero_grad();
    auto loss = loss_fn.forward(model->forward(data.x), data.y);
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

int resumable_run(const std::string& ckpt_dir, bool resume, int64_t hidden_dim, int64_t steps,
                  int64_t save_every, bool background) {
  zanj::CheckpointPolicy policy;
  policy.save_every = save_every;
  policy.keep_last = 3;
  zanj::CheckpointManager manager(ckpt_dir, policy);

  mlp::MyNNConfig config;
  config.hidden_dim = hidden_dim;
  const Data data = make_data(config.input_dim);

  std::shared_ptr<mlp::MyNN> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  zanj::TrainingState state;
  if (resume) {
    auto run = manager.resume_latest<mlp::MyNN>();  // restores torch's RNG state too
    model = run.model;
    optimizer = std::move(run.optimizer);
    scheduler = std::move(run.scheduler);
    state = run.state;
    std::cout << "resumed from step " << state.step << " in " << ckpt_dir << "\n";
  } else {
    model = std::make_shared<mlp::MyNN>(config);
    optimizer = std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
    scheduler = std::make_unique<zanj::StepLR>(*optimizer, 50, 0.5);
  }
  auto loss_fn = model->loss();
  while (state.step < steps) {
    // Minibatches drawn from torch's RNG: resuming must continue the same sequence.
    const auto idx = torch::randint(0, data.x.size(0), {32});
    optimizer->zero_grad();
    auto loss = loss_fn.forward(model->forward(data.x.index({idx})), data.y.index({idx}));
    loss.backward();
    optimizer->step();
    scheduler->step();
    state.step += 1;
    state.samples_seen += 32;
    model->training_records()["loss"].push_back(loss.item<double>());
    if (manager.due(state.step) || state.step == steps) {
      if (background) {
        // Returns once the state is copied aside; the next steps run while it is written.
        manager.save_async(*model, *optimizer, scheduler.get(), state);
      } else {
        manager.save(*model, *optimizer, scheduler.get(), state);
      }
    }
  }
  manager.wait();  // the last checkpoint is in place (rethrows a failed background save)
  const auto& losses = model->training_records()["loss"];
  std::cout << "trained to step " << state.step << ", last loss " << losses.back().get<double>()
            << "; latest checkpoint " << manager.latest()->path << "\n";
  std::cout << "final_state_digest=" << mlp::digest(*model, *optimizer) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Past `ulimit -f` a write fails with EFBIG ("File too large", an IoError naming the file)
  // instead of the default SIGXFSZ killing the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"Train, save and read back the MyNN example model (configured_model)"};
  std::string out = "mlp.zanj";
  std::string read_path;
  std::string ckpt_dir;
  bool resume = false;
  int64_t hidden_dim = 20;
  int64_t steps = 100;
  int64_t save_every = 10;
  app.add_option("--out", out, "where to save the trained model")->capture_default_str();
  app.add_option("--hidden-dim", hidden_dim,
                 "hidden layer width (64 makes the first weight "
                 "an external .npy entry)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "train until this many steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--read", read_path,
                 "read a MyNN checkpoint, print its output for arange(30).reshape(3,10)/10 as "
                 "JSON, and exit");
  app.add_option("--ckpt-dir", ckpt_dir,
                 "resumable run: keep checkpoints in this directory (every --save-every steps, "
                 "last 3 kept); prints final_state_digest=<hex> last");
  app.add_option("--save-every", save_every, "checkpoint interval for --ckpt-dir")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--resume", resume, "continue from the latest checkpoint in --ckpt-dir");
  bool background = false;
  app.add_flag("--async", background,
               "with --ckpt-dir: save checkpoints in the background (training goes on meanwhile)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!read_path.empty()) return read_and_print(read_path);
    if (!ckpt_dir.empty())
      return resumable_run(ckpt_dir, resume, hidden_dim, steps, save_every, background);
    if (resume) {
      std::cerr << "error: --resume needs --ckpt-dir\n";
      return 2;
    }
    return train_save_check(out, hidden_dim, static_cast<int>(steps));
  } catch (const zanj::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
