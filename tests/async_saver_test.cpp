// SPDX-License-Identifier: MIT
// Background saves: the file holds the state at the call while training goes on, resuming from
// it is exact, errors surface, staging is reused, and a kill mid-write leaves the directory clean.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <configured_model/configured_model.hpp>
#include <thread>

#include "test_util.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::string helper() { return CONFIGURED_MODEL_TRAINING_HELPER; }

// Whether two trees hold the same structure, JSON values and bit-identical tensors.
bool same_tree(const zanj::Node& a, const zanj::Node& b) {
  if (a.is_tensor() != b.is_tensor() || a.is_dict() != b.is_dict() || a.is_list() != b.is_list())
    return false;
  if (a.is_tensor()) return static_cast<bool>(BitIdentical(a.tensor(), b.tensor()));
  if (a.is_dict()) {
    if (a.size() != b.size()) return false;
    for (const auto& [k, v] : a.as_dict()) {
      if (!b.contains(k) || !same_tree(v, b.at(k))) return false;
    }
    return true;
  }
  if (a.is_list()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same_tree(a.at(i), b.at(i))) return false;
    }
    return true;
  }
  return a.scalar() == b.scalar();
}

struct Trainer {
  std::shared_ptr<TrainNet> model = std::make_shared<TrainNet>(TrainNetConfig{});
  std::unique_ptr<torch::optim::Optimizer> opt = zanj_test::make_optimizer("Adam", *model);
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

TEST(AsyncSaverTest, FileHoldsTheStateAtTheCallWhileTrainingGoesOn) {
  TempDir dir;
  torch::manual_seed(4);
  Trainer t;
  t.steps(5);
  zanj::save_checkpoint(dir.file("sync.zanj"), *t.model, *t.opt, nullptr, t.state);
  zanj::AsyncSaver saver;
  auto handle = saver.save_checkpoint(dir.file("async.zanj"), *t.model, *t.opt, nullptr, t.state);
  t.steps(5);  // parameters and Adam's moments change in place at once
  handle.wait();
  EXPECT_TRUE(handle.done());
  EXPECT_EQ(handle.path(), dir.file("async.zanj"));
  const auto sync = zanj::read(dir.file("sync.zanj"));
  EXPECT_TRUE(same_tree(sync, zanj::read(dir.file("async.zanj"))));
  // The comparison can fail: the state after the further steps differs.
  zanj::save_checkpoint(dir.file("later.zanj"), *t.model, *t.opt, nullptr, t.state);
  EXPECT_FALSE(same_tree(sync, zanj::read(dir.file("later.zanj"))));
  EXPECT_TRUE(zanj_test::SoundZip(dir.file("async.zanj")));
}

TEST(AsyncSaverTest, ResumingFromABackgroundCheckpointIsExact) {
  TempDir dir;
  for (const std::string opt : {"SGD", "AdamW"}) {
    SCOPED_TRACE(opt);
    const std::string straight = dir.file(opt + "_straight.zanj"), mid = dir.file(opt + "_mid.zanj");
    const std::string with_async = dir.file(opt + "_with_async.zanj");
    const std::string resumed = dir.file(opt + "_resumed.zanj");
    ASSERT_EQ(zanj_test::run(helper() + " train " + opt + " 10 " + straight), 0);
    ASSERT_EQ(zanj_test::run(helper() + " train-async " + opt + " 10 " + with_async + " 5 " + mid), 0);
    ASSERT_EQ(zanj_test::run(helper() + " resume " + mid + " 10 " + resumed), 0);
    const auto a = zanj::read(straight);
    EXPECT_TRUE(same_tree(a, zanj::read(with_async)));  // the save did not disturb training
    EXPECT_TRUE(same_tree(a, zanj::read(resumed)));
    EXPECT_EQ(zanj::read(mid).at("training_state").at("counters").at("step").scalar(), 5);
  }
}

TEST(AsyncSaverTest, StagingIsAllocatedOnceAndReused) {
  TempDir dir;
  torch::manual_seed(1);
  Trainer t;
  t.steps(1);
  zanj::AsyncSaver saver;
  saver.save_checkpoint(dir.file("a.zanj"), *t.model, *t.opt, nullptr, t.state).wait();
  const auto first = saver.staging_allocations();
  const auto bytes = saver.staging_bytes();
  EXPECT_GT(first, 4u);  // parameters, Adam moments, RNG state
  for (int i = 0; i < 3; ++i) {
    t.steps(1);
    saver.save_checkpoint(dir.file("a.zanj"), *t.model, *t.opt, nullptr, t.state);
  }
  saver.wait();
  EXPECT_EQ(saver.staging_allocations(), first);
  EXPECT_EQ(saver.staging_bytes(), bytes);
}

TEST(AsyncSaverTest, FailuresSurfaceFromWaitOrTheNextSave) {
  TempDir dir;
  zanj_test::write_bytes(dir.file("file"), "x");
  const std::string impossible = dir.file("file") + "/sub/m.zanj";  // parent is a file
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  zanj::AsyncSaver saver;
  auto h = saver.save_model(*model, impossible);
  EXPECT_THROW(h.wait(), zanj::IoError);
  EXPECT_THROW(h.wait(), zanj::IoError);  // every wait() tells
  saver.save_model(*model, impossible);             // nobody waits for this one ...
  EXPECT_THROW(saver.wait(), zanj::IoError);        // ... so the saver's wait() rethrows it
  EXPECT_NO_THROW(saver.wait());                    // once
  saver.save_model(*model, impossible);             // and this one ...
  EXPECT_THROW(saver.save_model(*model, dir.file("ok.zanj")), zanj::IoError);  // ... the next save
  saver.save_model(*model, dir.file("ok.zanj")).wait();
  EXPECT_TRUE(zanj_test::fs::exists(dir.file("ok.zanj")));
}

TEST(AsyncSaverTest, AThrowingProgressCallbackIsTheSavesError) {
  TempDir dir;
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  zanj::SaveOptions options;
  int calls = 0;
  options.progress = [&](const zanj::Progress&) {
    if (++calls == 2) throw zanj::IoError("stop here");
  };
  zanj::AsyncSaver saver;
  EXPECT_THROW(saver.save_model(*model, dir.file("m.zanj"), options).wait(), zanj::IoError);
  EXPECT_FALSE(zanj_test::fs::exists(dir.file("m.zanj")));
  options.progress = [&](const zanj::Progress&) { ++calls; };
  saver.save_model(*model, dir.file("m.zanj"), options).wait();
  EXPECT_GT(calls, 3);
}

// A file-size limit plays a full disk: the error comes from wait(), and nothing is left behind.
TEST(AsyncSaverTest, AFullDiskIsAnIoErrorFromWaitAndLeavesNoFile) {
  TempDir dir;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing us
    rlimit limit{1 << 20, 1 << 20};
    setrlimit(RLIMIT_FSIZE, &limit);
    auto model = std::make_shared<TrainNet>(TrainNetConfig{256, 2048, 256, 0.0});  // ~4 MB
    zanj::CheckpointManager manager(dir.path(), {});
    int code = 3;
    try {
      manager.save_async(1, model->to_node()).wait();
      code = 1;  // no error
    } catch (const zanj::IoError& e) {
      code = std::string(e.what()).find("ckpt-00000001.zanj") != std::string::npos ? 0 : 2;
    } catch (...) {
    }
    for (const auto& e : zanj_test::fs::directory_iterator(dir.path())) {
      const auto name = e.path().filename().string();
      if (name != "checkpoints.json") code = 4;  // a half-written file survived
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: no error, 2: message, 3: other error, 4: file left";
}

TEST(CheckpointManagerTest, BackgroundSavesKeepTheIndexAndPruning) {
  TempDir dir;
  zanj::CheckpointPolicy policy;
  policy.keep_last = 2;
  policy.metric = "loss";
  torch::manual_seed(3);
  Trainer t;
  {
    zanj::CheckpointManager manager(dir.path(), policy);
    for (int i = 1; i <= 5; ++i) {
      t.steps(1);
      manager.save_async(*t.model, *t.opt, nullptr, t.state, {{"loss", 10.0 - i}});
    }
    manager.wait();
    const auto all = manager.list();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].step, 4);
    EXPECT_EQ(all[1].step, 5);
    EXPECT_EQ(all[1].metrics["loss"], 5.0);
    t.steps(1);
    manager.save_async(*t.model, *t.opt, nullptr, t.state, {{"loss", 1.0}});
  }  // the destructor waits for the save in flight
  zanj::CheckpointManager again(dir.path(), policy);
  ASSERT_TRUE(again.latest());
  EXPECT_EQ(again.latest()->step, 6);
  auto r = again.resume_latest<TrainNet>();
  EXPECT_TRUE(BitIdentical(r.model->fc1->weight, t.model->fc1->weight));
}

TEST(CheckpointManagerTest, RemovesTemporariesNoLiveWriterHolds) {
  TempDir dir;
  const std::string stale = dir.file(".ckpt-00000007.zanj.4242-1.tmp");
  const std::string live = dir.file(".ckpt-00000008.zanj.4243-2.tmp");
  const std::string other = dir.file(".notes.tmp");
  zanj_test::write_bytes(stale, "half");
  zanj_test::write_bytes(live, "half");
  zanj_test::write_bytes(other, "not ours");
  const int fd = ::open(live.c_str(), O_RDONLY);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // as a writer holds its temporary
  const pid_t pid = fork();                       // another process opens the manager
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    zanj::CheckpointManager manager(dir.path(), {});
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_FALSE(zanj_test::fs::exists(stale));
  EXPECT_TRUE(zanj_test::fs::exists(live));
  EXPECT_TRUE(zanj_test::fs::exists(other));
  ::close(fd);
}

// SIGKILL while a background write is in flight: the previous checkpoint stays the latest (or
// a completed later one is), it reads, and the next manager leaves no temporary behind.
TEST(CrashSafetyTest, SigkillDuringABackgroundSaveKeepsTheLatestCheckpoint) {
  TempDir dir;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 8; ++trial) {
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(out[1], 1);
      close(out[0]);
      execl(helper().c_str(), helper().c_str(), "manager-async-loop", dir.path().c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    // Wait for the first background save to start, then kill at some point of the writes.
    std::string seen;
    char c;
    while (seen.find("started") == std::string::npos && read(out[0], &c, 1) == 1) seen += c;
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(out[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << seen;
    zanj::CheckpointManager manager(dir.path(), {});
    const auto latest = manager.latest();
    ASSERT_TRUE(latest);
    auto model = TrainNet::read(latest->path);
    EXPECT_EQ(model->config().hidden, 1024);
    for (const auto& e : zanj_test::fs::directory_iterator(dir.path())) {
      EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr(".tmp")));
    }
  }
}

}  // namespace

namespace {

// The README's "Saves that do not stop training" snippet, as written there.
TEST(ReadmeTest, BackgroundSavesSnippet) {
  TempDir dir;
  const auto cwd = zanj_test::fs::current_path();
  zanj_test::fs::current_path(dir.path());
  torch::manual_seed(6);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto optimizer = zanj_test::make_optimizer("SGD", *model);
  auto scheduler = std::make_unique<zanj::StepLR>(*optimizer, 3, 0.5);
  zanj::TrainingState state;
  zanj::CheckpointManager manager("runs/a", {});
  auto train_more = [&] {
    optimizer->zero_grad();
    model->forward(torch::randn({4, 8})).sum().backward();
    optimizer->step();
  };
  const auto before = zanj::state_digest(zanj::state_dict(*model));
  // --- snippet ---
  zanj::AsyncSaver saver;  // keeps one staging copy of the state, reused save after save
  auto handle = saver.save_checkpoint("run.zanj", *model, *optimizer, scheduler.get(), state);
  train_more();            // parameters and optimizer state may change at once
  handle.wait();           // optional: the file is in place; rethrows a failed save

  // with a manager: the index and pruning happen on the writer thread too
  manager.save_async(*model, *optimizer, scheduler.get(), state);
  manager.wait();          // e.g. before exiting
  // --- end ---
  EXPECT_EQ(zanj::state_digest(zanj::state_dict(*TrainNet::read("run.zanj"))), before);
  EXPECT_NE(zanj::state_digest(zanj::state_dict(*model)), before);
  EXPECT_TRUE(manager.latest());
  zanj_test::fs::current_path(cwd);
}

}  // namespace
