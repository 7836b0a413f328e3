// SPDX-License-Identifier: MIT
// Runs (part of) a training run in its own process, for the resume-exactness and crash tests.
//
//   training_helper train OPTIMIZER STEPS OUT [--stop-at K CKPT]   fresh run
//   training_helper resume CKPT STEPS OUT                          continue a checkpoint
//   training_helper train-async OPTIMIZER STEPS OUT K CKPT         fresh run, saving CKPT at step
//                                  K in the background while training goes on
//   training_helper crash MODE WHERE STAGE FILTER                  one complete save (iteration
//                                  1), then a second (iteration 2) that SIGKILLs this process
//                                  when a file whose path contains FILTER reaches STAGE (a
//                                  detail::SaveStage name; "none" never kills). MODE: save
//                                  (model->save(WHERE)), manager (CheckpointManager on the
//                                  directory WHERE), async (the manager's save_async).
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "save_stages.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::TrainNet;

struct Data {
  torch::Tensor x, y;
};

Data make_data() {
  torch::manual_seed(0);
  return {torch::randn({64, 8}), torch::randint(0, 4, {64})};
}

void step_once(TrainNet& model, torch::optim::Optimizer& opt, torch::optim::LRScheduler& sched,
               const Data& d, zanj::TrainingState& state) {
  model.train();
  const auto idx = torch::randint(0, 64, {16});  // batch sampling draws from torch's RNG
  opt.zero_grad();
  auto loss =
      torch::nn::functional::cross_entropy(model.forward(d.x.index({idx})), d.y.index({idx}));
  loss.backward();
  opt.step();
  sched.step();
  state.step += 1;
  state.samples_seen += 16;
  model.training_records()["loss"].push_back(loss.item<double>());
}

// The stage and path filter at which crash mode kills this process.
std::string g_kill_stage;
std::string g_kill_filter;

void kill_at_stage(zanj::detail::SaveStage stage, const std::string& path) {
  if (zanj::detail::save_stage_name(stage) == g_kill_stage &&
      path.find(g_kill_filter) != std::string::npos) {
    std::raise(SIGKILL);
  }
}

int crash(const std::string& mode, const std::string& where, const std::string& stage,
          const std::string& filter) {
  torch::manual_seed(2);
  auto model = std::make_shared<TrainNet>(zanj_test::TrainNetConfig{});
  std::optional<zanj::CheckpointManager> manager;
  if (mode != "save") manager.emplace(where, zanj::CheckpointPolicy{});
  auto save = [&](int64_t iteration) {
    model->training_records()["iteration"] = iteration;
    if (mode == "save") {
      model->save(where);
    } else if (mode == "manager") {
      manager->save(iteration, model->to_node());
    } else {
      manager->save_async(iteration, model->to_node());
      manager->wait();
    }
  };
  save(1);
  g_kill_stage = stage;
  g_kill_filter = filter;
  zanj::detail::set_save_stage_hook(kill_at_stage);
  save(2);
  std::cout << "completed" << std::endl;
  return 0;
}

int run(TrainNet& model, torch::optim::Optimizer& opt, torch::optim::LRScheduler& sched,
        zanj::TrainingState state, const Data& d, int64_t steps, const std::string& out,
        int64_t stop_at, const std::string& ckpt) {
  while (state.step < steps) {
    step_once(model, opt, sched, d, state);
    if (state.step == stop_at) {
      zanj::save_checkpoint(ckpt, model, opt, &sched, state);
      return 0;  // the process ends here, as if the run had been stopped
    }
  }
  state.user = {{"finished", true}};
  zanj::save_checkpoint(out, model, opt, &sched, state);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "train" && (argc == 5 || argc == 8)) {
    const Data d = make_data();
    torch::manual_seed(1);
    auto model = std::make_shared<TrainNet>(zanj_test::TrainNetConfig{});
    auto opt = zanj_test::make_optimizer(argv[2], *model);
    zanj::StepLR sched(*opt, 3, 0.5);
    const int64_t stop_at = argc == 8 ? std::atoll(argv[6]) : -1;
    return run(*model, *opt, sched, {}, d, std::atoll(argv[3]), argv[4], stop_at,
               argc == 8 ? argv[7] : "");
  }
  if (mode == "resume" && argc == 5) {
    const Data d = make_data();
    auto r = zanj::resume<TrainNet>(argv[2]);
    return run(*r.model, *r.optimizer, *r.scheduler, r.state, d, std::atoll(argv[3]), argv[4], -1,
               "");
  }
  if (mode == "train-async" && argc == 7) {
    const Data d = make_data();
    torch::manual_seed(1);
    auto model = std::make_shared<TrainNet>(zanj_test::TrainNetConfig{});
    auto opt = zanj_test::make_optimizer(argv[2], *model);
    zanj::StepLR sched(*opt, 3, 0.5);
    zanj::TrainingState state;
    const int64_t steps = std::atoll(argv[3]), k = std::atoll(argv[5]);
    zanj::AsyncSaver saver;
    zanj::SaveHandle handle;
    while (state.step < steps) {
      step_once(*model, *opt, sched, d, state);
      // Training goes on at once, changing everything the snapshot copied.
      if (state.step == k) handle = saver.save_checkpoint(argv[6], *model, *opt, &sched, state);
    }
    handle.wait();
    state.user = {{"finished", true}};
    zanj::save_checkpoint(argv[4], *model, *opt, &sched, state);
    return 0;
  }
  if (mode == "crash" && argc == 6) return crash(argv[2], argv[3], argv[4], argv[5]);
  std::cerr << "usage: see the comment at the top of training_helper.cpp\n";
  return 2;
} catch (const std::exception& e) {
  std::cerr << "training_helper: " << e.what() << "\n";
  return 1;
}
