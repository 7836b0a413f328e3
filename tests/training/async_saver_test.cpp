// SPDX-License-Identifier: MIT
// Background saves: the file holds the state at the call while training goes on, resuming from
// it is exact, errors surface, and staging is reused.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <configured_model/configured_model.hpp>
#include <thread>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::Trainer;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::string helper() { return CONFIGURED_MODEL_TRAINING_HELPER; }

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
  EXPECT_TRUE(zanj_test::SameTree(sync, zanj::read(dir.file("async.zanj"))));
  // The comparison can fail: the state after the further steps differs.
  zanj::save_checkpoint(dir.file("later.zanj"), *t.model, *t.opt, nullptr, t.state);
  EXPECT_FALSE(zanj_test::SameTree(sync, zanj::read(dir.file("later.zanj"))));
  EXPECT_TRUE(zanj_test::SoundZip(dir.file("async.zanj")));
}

TEST(AsyncSaverTest, ResumingFromABackgroundCheckpointIsExact) {
  TempDir dir;
  for (const std::string opt : {"SGD", "AdamW"}) {
    SCOPED_TRACE(opt);
    const std::string straight = dir.file(opt + "_straight.zanj"),
                      mid = dir.file(opt + "_mid.zanj");
    const std::string with_async = dir.file(opt + "_with_async.zanj");
    const std::string resumed = dir.file(opt + "_resumed.zanj");
    ASSERT_EQ(zanj_test::run(helper() + " train " + opt + " 10 " + straight), 0);
    ASSERT_EQ(zanj_test::run(helper() + " train-async " + opt + " 10 " + with_async + " 5 " + mid),
              0);
    ASSERT_EQ(zanj_test::run(helper() + " resume " + mid + " 10 " + resumed), 0);
    const auto a = zanj::read(straight);
    EXPECT_TRUE(
        zanj_test::SameTree(a, zanj::read(with_async)));  // the save did not disturb training
    EXPECT_TRUE(zanj_test::SameTree(a, zanj::read(resumed)));
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

TEST(AsyncSaverTest, AReservedSaverAllocatesNothingAtTheFirstSave) {
  TempDir dir;
  torch::manual_seed(1);
  Trainer t;
  t.steps(1);
  zanj::AsyncSaver saver;
  saver.reserve(zanj::checkpoint_node(*t.model, *t.opt, nullptr, t.state));
  const auto reserved = saver.staging_allocations();
  EXPECT_GT(reserved, 4u);
  t.steps(1);
  saver.save_checkpoint(dir.file("a.zanj"), *t.model, *t.opt, nullptr, t.state).wait();
  EXPECT_EQ(saver.staging_allocations(), reserved);
  // The file holds the values at the save, not the zeros of the reservation.
  const auto back = zanj::read(dir.file("a.zanj"));
  EXPECT_TRUE(zanj_test::BitIdentical(back.at("state_dict").at("fc1.weight").tensor(),
                                      t.model->fc1->weight));
}

TEST(AsyncSaverTest, FailuresSurfaceFromWaitOrTheNextSave) {
  TempDir dir;
  zanj_test::write_bytes(dir.file("file"), "x");
  const std::string impossible = dir.file("file") + "/sub/m.zanj";  // parent is a file
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  zanj::AsyncSaver saver;
  auto h = saver.save_model(*model, impossible);
  EXPECT_THROW(h.wait(), zanj::IoError);
  EXPECT_THROW(h.wait(), zanj::IoError);      // every wait() tells
  saver.save_model(*model, impossible);       // nobody waits for this one ...
  EXPECT_THROW(saver.wait(), zanj::IoError);  // ... so the saver's wait() rethrows it
  EXPECT_NO_THROW(saver.wait());              // once
  saver.save_model(*model, impossible);       // and this one ...
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

}  // namespace
