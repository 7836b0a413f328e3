// SPDX-License-Identifier: MIT
// Data-parallel training of the MyNN example over libtorch's c10d (Gloo, 127.0.0.1), with
// distributed checkpoints through the CheckpointManager, resumable at any number of processes.
//
//   ddp_example --world-size 2 --steps 200 --ckpt-dir runs/ddp          # launches 2 ranks
//   ddp_example --world-size 3 --steps 400 --ckpt-dir runs/ddp --resume  # continues with 3
//
// Without --rank it is the launcher: it starts --world-size copies of itself (ranks 0..N-1)
// sharing a FileStore, waits for them (killing all after --timeout-s), checks that every rank
// ends in the same state and prints `final_state_digest=<hex>` as its last line.
//
// Each step draws a global batch of 32 samples from a generator seeded by the step (so the data
// order does not depend on the number of ranks); each rank computes the gradient of its rows,
// the gradients are summed over the ranks (allreduce), and every rank takes the same step.
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <configured_model/configured_model.hpp>
#include <configured_model/distributed.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "../mlp/my_nn.hpp"

namespace {

constexpr std::int64_t kBatch = 32;

struct Options {
  int world_size = 1;
  int rank = -1;  // -1: the launcher
  std::string store;
  std::int64_t steps = 200;
  std::int64_t save_every = 25;
  std::string ckpt_dir;
  bool resume = false;
  bool background = false;
  int timeout_s = 600;
};

void allreduce_sum(c10d::ProcessGroup& group, torch::Tensor& t) {
  std::vector<torch::Tensor> v{t};
  group.allreduce(v)->wait();
}

int run_rank(const Options& o) {
  auto store = c10::make_intrusive<c10d::FileStore>(o.store, o.world_size);
  auto pg_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(60));
  pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, o.rank, o.world_size, pg_options);

  // Background saves run their collectives on the writer thread while training all-reduces on
  // this one: they get a group of their own (same store, its own key prefix).
  c10::intrusive_ptr<c10d::ProcessGroup> ckpt_group;
  if (o.background) {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("checkpoints", store);
    ckpt_group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, o.rank, o.world_size, pg_options);
  }

  zanj::CheckpointPolicy policy;
  policy.save_every = o.save_every;
  policy.keep_last = 3;
  zanj::CheckpointManager manager(o.ckpt_dir, policy);

  torch::manual_seed(0);
  auto x = torch::randn({256, 10});
  auto y = (x.sum(1) > 0).to(torch::kLong);

  std::shared_ptr<mlp::MyNN> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<torch::optim::LRScheduler> scheduler;
  zanj::TrainingState state;
  if (o.resume) {
    const auto latest = manager.latest();
    if (!latest) throw zanj::IoError(o.ckpt_dir + ": no checkpoint to resume from");
    auto run = zanj::resume_distributed<mlp::MyNN>(latest->path, *group);
    model = run.model;
    optimizer = std::move(run.optimizer);
    scheduler = std::move(run.scheduler);
    state = run.state;
    if (o.rank == 0) {
      std::cout << "resumed from step " << state.step << " (" << latest->path << ") with "
                << o.world_size << " ranks\n";
    }
  } else {
    model = std::make_shared<mlp::MyNN>(mlp::MyNNConfig{});
    optimizer = std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
    scheduler = std::make_unique<zanj::StepLR>(*optimizer, 50, 0.5);
  }
  auto loss_fn = model->loss();
  const auto [offset, rows] = zanj::even_split(kBatch, o.rank, o.world_size);
  while (state.step < o.steps) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(1000 + static_cast<std::uint64_t>(state.step));
    const auto idx = torch::randint(0, x.size(0), {kBatch}, gen).narrow(0, offset, rows);
    optimizer->zero_grad();
    // This rank's share of the global mean loss: the ranks' gradients sum to the global one.
    auto loss = rows == 0 ? torch::zeros({}, torch::kFloat)
                          : loss_fn.forward(model->forward(x.index({idx})), y.index({idx})) *
                                (static_cast<double>(rows) / kBatch);
    if (rows > 0) loss.backward();
    for (auto& p : model->parameters()) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      auto g = p.grad();
      allreduce_sum(*group, g);
    }
    optimizer->step();
    scheduler->step();
    auto global_loss = loss.detach().clone();
    allreduce_sum(*group, global_loss);
    state.step += 1;
    state.samples_seen += kBatch;
    model->training_records()["loss"].push_back(global_loss.item<double>());
    if (manager.due(state.step) || state.step == o.steps) {
      if (o.background) {  // returns once this rank's state is copied aside
        manager.save_distributed_async(*model, *optimizer, scheduler.get(), state, *ckpt_group);
      } else {
        manager.save_distributed(*model, *optimizer, scheduler.get(), state, *group);
      }
    }
  }
  manager.wait();  // the last checkpoint is in place (rethrows a failed background save)
  std::cout << "rank " << o.rank << " trained to step " << state.step << ", last loss "
            << model->training_records()["loss"].back().get<double>() << "; latest checkpoint "
            << manager.latest()->path << "\n";
  std::cout << "final_state_digest=" << mlp::digest(*model, *optimizer) << "\n";
  return 0;
}

// Starts the ranks, waits for them, checks their digests agree.
int launch(const Options& o, int argc, char** argv) {
  const std::string store = "/tmp/zanj_ddp_store." + std::to_string(::getpid());
  std::remove(store.c_str());
  std::vector<pid_t> pids;
  std::vector<std::string> logs;
  for (int r = 0; r < o.world_size; ++r) {
    logs.push_back(store + ".rank" + std::to_string(r) + ".log");
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(logs.back().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<std::string> args(argv, argv + argc);
      args.insert(args.end(), {"--rank", std::to_string(r), "--store", store});
      std::vector<char*> c;
      for (auto& a : args) c.push_back(a.data());
      c.push_back(nullptr);
      ::execv("/proc/self/exe", c.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<int> status(pids.size(), -1);
  std::size_t left = pids.size();
  bool timed_out = false;
  while (left > 0) {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      int st = 0;
      if (status[i] == -1 && ::waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        status[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        --left;
        if (status[i] != 0) {  // one rank failed: the others would wait for it until timeout
          for (std::size_t k = 0; k < pids.size(); ++k) {
            if (status[k] == -1) ::kill(pids[k], SIGTERM);
          }
        }
      }
    }
    if (left > 0 && std::chrono::steady_clock::now() - start > std::chrono::seconds(o.timeout_s)) {
      for (std::size_t k = 0; k < pids.size(); ++k) {
        if (status[k] == -1) ::kill(pids[k], SIGKILL);
      }
      timed_out = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::remove(store.c_str());
  std::vector<std::string> digests(pids.size());
  bool ok = !timed_out;
  for (std::size_t i = 0; i < pids.size(); ++i) {
    std::ifstream in(logs[i]);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("final_state_digest=", 0) == 0)
        digests[i] = line;
      else if (i == 0 || status[i] != 0)
        std::cerr << "[rank " << i << "] " << line << "\n";
    }
    std::remove(logs[i].c_str());
    if (status[i] != 0) {
      std::cerr << "rank " << i << " failed (status " << status[i] << ")\n";
      ok = false;
    }
    if (digests[i].empty() || digests[i] != digests[0]) ok = false;
  }
  if (timed_out) std::cerr << "ranks still running after " << o.timeout_s << " s were killed\n";
  if (!ok) {
    std::cerr << "ranks disagree or failed\n";
    return 1;
  }
  std::cout << digests[0] << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Past `ulimit -f` a write fails with EFBIG ("File too large", an IoError naming the file)
  // instead of the default SIGXFSZ killing the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  // Gloo writes to its sockets without MSG_NOSIGNAL: when another rank dies, SIGPIPE would kill
  // this one silently instead of its save failing with an IoError (Python ignores SIGPIPE).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"data-parallel training with distributed checkpoints (configured_model)"};
  Options o;
  app.add_option("--world-size", o.world_size, "processes (ranks)")->check(CLI::Range(1, 64));
  app.add_option("--steps", o.steps, "train until this step")->check(CLI::NonNegativeNumber);
  app.add_option("--save-every", o.save_every, "checkpoint interval")->check(CLI::PositiveNumber);
  app.add_option("--ckpt-dir", o.ckpt_dir, "checkpoint directory (CheckpointManager)")->required();
  app.add_flag("--resume", o.resume, "continue from the latest checkpoint, at any --world-size");
  app.add_flag("--async", o.background, "save checkpoints in the background (training goes on)");
  app.add_option("--timeout-s", o.timeout_s, "launcher: kill the ranks after this long");
  app.add_option("--rank", o.rank, "internal: run as this rank")->group("");
  app.add_option("--store", o.store, "internal: the FileStore path")->group("");
  CLI11_PARSE(app, argc, argv);
  zanj::logger()->set_level(spdlog::level::warn);
  try {
    if (o.rank < 0) return launch(o, argc, argv);
    return run_rank(o);
  } catch (const std::exception& e) {
    std::cerr << "rank " << o.rank << ": " << e.what() << "\n";
    return 2;
  }
}
