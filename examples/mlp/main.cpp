// SPDX-License-Identifier: MIT
// Trains the README's MyNN on synthetic data, saves it with its training log, reads it back
// with no constructor arguments and checks that it computes exactly the same outputs.
//
//   mlp_example [--out mlp.zanj] [--hidden-dim 20] [--steps 100]
//   mlp_example --read some.zanj      # print MyNN's output for a fixed input as JSON
//   mlp_example --ckpt-dir runs/a --steps 200 [--save-every 10] [--resume] [--async]
//               [--optimizer sgd|adam|adamw|rmsprop|adagrad|lbfgs] [--dtype float32|float64|
//               bfloat16] [--freeze-first-layer] [--param-groups 1|2] [--dataset-size 1000]
//               [--batch-size 32]
//                                     # resumable run over a DataLoader with a RandomSampler:
//                                     # checkpoints every K steps (mid-epoch too), keeps the
//                                     # last 3, --resume continues from the latest one (the
//                                     # loader is built after resuming, as a training loop
//                                     # does), --async saves in the background
#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <optional>

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

// The training data of a resumable run: `size` samples of the two-class problem, served one
// example at a time to a torch::data DataLoader.
class Synthetic : public torch::data::datasets::Dataset<Synthetic> {
 public:
  Synthetic(int64_t size, int64_t input_dim, torch::Dtype dtype) {
    // Its own generator: building the data leaves torch's global RNG alone.
    x_ = torch::randn({size, input_dim}, at::detail::createCPUGenerator(0));
    y_ = (x_.sum(1) > 0).to(torch::kLong);
    x_ = x_.to(dtype);
  }
  torch::data::Example<> get(size_t index) override {
    const auto i = static_cast<int64_t>(index);
    return {x_[i], y_[i]};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(x_.size(0)); }

 private:
  torch::Tensor x_, y_;
};

struct RunOptions {
  std::string ckpt_dir;
  bool resume = false;
  int64_t hidden_dim = 20;
  int64_t steps = 100;
  int64_t save_every = 10;
  bool background = false;
  std::string optimizer = "sgd";
  std::string dtype = "float32";
  bool freeze_first_layer = false;
  int64_t param_groups = 1;
  int64_t dataset_size = 1000;
  int64_t batch_size = 32;
  bool build_loader_first = false;
};

torch::Dtype dtype_named(const std::string& name) {
  if (name == "float64") return torch::kFloat64;
  if (name == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

struct Trainable {
  std::vector<torch::Tensor> weights, biases, all;
};

// One group over every trainable parameter, or two: the weights, and the biases with `second`.
template <class Opt, class Options>
std::unique_ptr<torch::optim::Optimizer> grouped(const Trainable& t, int64_t groups, Options first,
                                                 Options second) {
  std::vector<torch::optim::OptimizerParamGroup> g;
  if (groups == 2) {
    g.emplace_back(t.weights, std::make_unique<Options>(first));
    g.emplace_back(t.biases, std::make_unique<Options>(second));
  } else {
    g.emplace_back(t.all, std::make_unique<Options>(first));
  }
  return std::make_unique<Opt>(std::move(g), first);
}

// A fresh optimizer of the kind --optimizer names, over the trainable parameters: one group, or
// two (the weights, and the biases at half the learning rate).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const RunOptions& o, mlp::MyNN& model) {
  namespace optim = torch::optim;
  Trainable t;
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    t.all.push_back(p.value());
    (p.value().dim() > 1 ? t.weights : t.biases).push_back(p.value());
  }
  const int64_t g = o.param_groups;
  if (o.optimizer == "adam") {
    return grouped<optim::Adam>(t, g, optim::AdamOptions(1e-2).amsgrad(true).weight_decay(1e-4),
                                optim::AdamOptions(5e-3).amsgrad(true));
  }
  if (o.optimizer == "adamw") {
    return grouped<optim::AdamW>(t, g, optim::AdamWOptions(1e-2),
                                 optim::AdamWOptions(5e-3).weight_decay(0));
  }
  if (o.optimizer == "rmsprop") {
    return grouped<optim::RMSprop>(t, g, optim::RMSpropOptions(1e-3).centered(true).momentum(0.5),
                                   optim::RMSpropOptions(5e-4).centered(true));
  }
  if (o.optimizer == "adagrad") {
    return grouped<optim::Adagrad>(t, g, optim::AdagradOptions(0.05).lr_decay(1e-3),
                                   optim::AdagradOptions(0.025));
  }
  if (o.optimizer == "lbfgs") {
    if (g != 1) throw zanj::UsageError("--optimizer lbfgs takes one param group (libtorch's rule)");
    return std::make_unique<optim::LBFGS>(t.all,
                                          optim::LBFGSOptions(0.1).max_iter(4).history_size(8));
  }
  return grouped<optim::SGD>(t, g, optim::SGDOptions(0.1).momentum(0.9).nesterov(true),
                             optim::SGDOptions(0.05).momentum(0.9));
}

int resumable_run(const RunOptions& o) {
  zanj::CheckpointPolicy policy;
  policy.save_every = o.save_every;
  policy.keep_last = 3;
  zanj::CheckpointManager manager(o.ckpt_dir, policy);

  mlp::MyNNConfig config;
  config.hidden_dim = o.hidden_dim;
  const torch::Dtype dtype = dtype_named(o.dtype);

  // The data: a torch::data DataLoader over a RandomSampler whose position goes into every
  // checkpoint. A training loop builds it after resuming (the default here) or before.
  Synthetic dataset(o.dataset_size, config.input_dim, dtype);
  std::optional<zanj::ResumableSampler<torch::data::samplers::RandomSampler>> sampler;
  auto make_sampler = [&] {
    sampler.emplace(torch::data::samplers::RandomSampler(o.dataset_size));
  };
  if (o.build_loader_first) make_sampler();

  std::shared_ptr<mlp::MyNN> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  std::optional<zanj::Resumed> resumed;
  zanj::TrainingState state;
  if (o.resume) {
    // The model, optimizer, scheduler, counters and RNG states as they were at the checkpoint.
    auto run = manager.resume_latest<mlp::MyNN>();
    model = run.model;
    optimizer = std::move(run.optimizer);
    scheduler = std::move(run.scheduler);
    resumed.emplace(std::move(run));
    std::cout << "resumed from step " << resumed->state.step << " in " << o.ckpt_dir << "\n";
  } else {
    torch::manual_seed(1);
    model = std::make_shared<mlp::MyNN>(config);
    model->to(dtype);
    if (o.freeze_first_layer) {
      for (auto& p : model->net[0]->parameters()) p.requires_grad_(false);
    }
    optimizer = make_optimizer(o, *model);
    scheduler = std::make_unique<zanj::StepLR>(*optimizer, 50, 0.5);
  }

  if (!sampler) make_sampler();
  if (resumed) {
    // The sampler continues the epoch the checkpoint was taken in, and torch's RNG is set back
    // to the checkpoint's (undoing what building the sampler drew from it).
    resumed->restore(*sampler);
    state = resumed->state;
  }
  state.data = sampler->position();
  auto loader = torch::data::make_data_loader(
      dataset.map(torch::data::transforms::Stack<>()), *sampler,
      torch::data::DataLoaderOptions(static_cast<size_t>(o.batch_size)));

  auto loss_fn = model->loss();
  bool reserved = false;
  while (state.step < o.steps) {
    for (auto& batch : *loader) {
      auto closure = [&] {
        optimizer->zero_grad();
        auto loss = loss_fn.forward(model->forward(batch.data), batch.target);
        loss.backward();
        return loss;
      };
      const auto loss = optimizer->step(closure);
      scheduler->step();
      state.step += 1;
      state.samples_seen += batch.data.size(0);
      model->training_records()["loss"].push_back(loss.item<double>());
      if (o.background && !reserved) {
        // Once the optimizer's state exists: the first background save then stalls the loop
        // no longer than the later ones (its staging memory is already in place).
        manager.reserve_async(*model, *optimizer, scheduler.get(), state);
        reserved = true;
      }
      if (manager.due(state.step) || state.step == o.steps) {
        if (o.background) {
          // Returns once the state is copied aside; the next steps run while it is written.
          manager.save_async(*model, *optimizer, scheduler.get(), state);
        } else {
          manager.save(*model, *optimizer, scheduler.get(), state);
        }
      }
      if (state.step == o.steps) break;
    }
    if (state.step < o.steps) state.epoch += 1;
  }
  manager.wait();  // the last checkpoint is in place (rethrows a failed background save)
  const auto& losses = model->training_records()["loss"];
  std::cout << "trained to step " << state.step << " (epoch " << state.epoch << "), last loss "
            << losses.back().get<double>() << "; latest checkpoint " << manager.latest()->path
            << "\n";
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
  RunOptions run;
  app.add_option("--optimizer", run.optimizer, "with --ckpt-dir: the optimizer")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam", "adamw", "rmsprop", "adagrad", "lbfgs"}));
  app.add_option("--dtype", run.dtype, "with --ckpt-dir: the model's and data's dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "float64", "bfloat16"}));
  app.add_flag("--freeze-first-layer", run.freeze_first_layer,
               "with --ckpt-dir: the first layer's parameters are frozen (not optimized)");
  app.add_option("--param-groups", run.param_groups,
                 "with --ckpt-dir: 1, or 2 (weights; biases at half the learning rate)")
      ->capture_default_str()
      ->check(CLI::IsMember({1, 2}));
  app.add_option("--dataset-size", run.dataset_size, "with --ckpt-dir: training samples")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch-size", run.batch_size, "with --ckpt-dir: samples per batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--build-loader-first", run.build_loader_first,
               "with --ckpt-dir --resume: build the data loader before resuming");
  CLI11_PARSE(app, argc, argv);
  try {
    if (!read_path.empty()) return read_and_print(read_path);
    if (!ckpt_dir.empty()) {
      run.ckpt_dir = ckpt_dir;
      run.resume = resume;
      run.hidden_dim = hidden_dim;
      run.steps = steps;
      run.save_every = save_every;
      run.background = background;
      return resumable_run(run);
    }
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
