// SPDX-License-Identifier: MIT
// Many threads reading one file (every read mode) and saving different files at once. Built into
// its own binary, run under ThreadSanitizer by scripts/test.sh (-DCONFIGURED_MODEL_TSAN=ON).
#include <torch/torch.h>

#include <atomic>
#include <configured_model/configured_model.hpp>
#include <thread>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::string digest(const torch::nn::Module& m) { return zanj::state_digest(zanj::state_dict(m)); }

// Runs `body(i)` on `n` threads at once; returns how many threw.
template <class F>
int run_threads(int n, F body) {
  std::atomic<int> failures{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      try {
        body(i);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "thread " << i << ": " << e.what();
        ++failures;
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  return failures.load();
}

TEST(ConcurrencyTest, ManyThreadsReadOneFileEveryWay) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  TrainNetConfig c;
  c.hidden = 256;  // several external tensors
  torch::manual_seed(3);
  TrainNet net(c);
  net.save(path);
  const std::string want = digest(net);
  std::vector<std::string> got(8);
  EXPECT_EQ(run_threads(8,
                        [&](int i) {
                          zanj::ReadOptions o;
                          o.mmap = i % 2 == 1;
                          if (i % 4 < 2) {
                            got[i] = digest(*TrainNet::read(path, o));
                          } else if (i % 4 == 2) {
                            TrainNet mine(c);
                            mine.load(path, o);
                            got[i] = digest(mine);
                          } else {
                            const auto lazy = zanj::LazyFile::open(path, o);
                            TrainNet mine(c);
                            torch::NoGradGuard g;
                            mine.fc1->weight.copy_(lazy.tensor("state_dict/fc1.weight"));
                            mine.fc1->bias.copy_(lazy.tensor("state_dict/fc1.bias"));
                            mine.fc2->weight.copy_(lazy.tensor("state_dict/fc2.weight"));
                            mine.fc2->bias.copy_(lazy.tensor("state_dict/fc2.bias"));
                            got[i] = digest(mine);
                          }
                          EXPECT_TRUE(zanj::verify(path).ok);
                        }),
            0);
  for (const auto& d : got) EXPECT_EQ(d, want);
}

TEST(ConcurrencyTest, ThreadsSavingDifferentFilesAtOnce) {
  TempDir dir;
  std::vector<std::string> want(6);
  EXPECT_EQ(run_threads(6,
                        [&](int i) {
                          TrainNetConfig c;
                          c.hidden = 64 + 32 * i;
                          TrainNet net(c);
                          want[i] = digest(net);
                          zanj::SaveOptions s;
                          if (i % 2) s.compression = zanj::Compression::kDeflate;
                          net.save(dir.file("m" + std::to_string(i) + ".zanj"), s);
                        }),
            0);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(digest(*TrainNet::read(dir.file("m" + std::to_string(i) + ".zanj"))), want[i]);
  }
}

// Background saves while the training loop changes the same parameters, through a manager:
// the writer thread reads only the staging copy (ThreadSanitizer checks it), and each file
// holds the parameters of its step.
TEST(ConcurrencyTest, BackgroundSavesWhileTrainingChangesTheParameters) {
  TempDir dir;
  torch::manual_seed(9);
  TrainNetConfig c;
  c.hidden = 256;
  auto net = std::make_shared<TrainNet>(c);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  zanj::CheckpointPolicy policy;
  policy.keep_last = 10;
  std::vector<std::string> want;
  {
    zanj::CheckpointManager manager(dir.path(), policy);
    for (int step = 1; step <= 6; ++step) {
      opt.zero_grad();
      net->forward(torch::randn({32, c.in})).pow(2).mean().backward();
      opt.step();
      want.push_back(digest(*net));
      zanj::TrainingState state;
      state.step = step;
      manager.save_async(*net, opt, nullptr, state);
    }
    manager.wait();
  }
  for (int step = 1; step <= 6; ++step) {
    const std::string path = zanj::CheckpointManager(dir.path(), policy).path_for(step);
    EXPECT_EQ(digest(*TrainNet::read(path)), want[static_cast<std::size_t>(step - 1)]) << step;
  }
}

}  // namespace
