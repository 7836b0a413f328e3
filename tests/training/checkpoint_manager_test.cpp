// SPDX-License-Identifier: MIT
// CheckpointManager: which checkpoints it keeps, its index, background saves, and the
// temporaries killed saves leave behind.
#include <sys/file.h>

#include <configured_model/configured_model.hpp>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::Trainer;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

TEST(CheckpointManagerTest, KeepsLastBestAndEveryMth) {
  TempDir dir;
  zanj::CheckpointPolicy policy;
  policy.save_every = 10;
  policy.keep_last = 2;
  policy.keep_best = 1;
  policy.metric = "val_loss";
  policy.keep_every = 50;
  zanj::CheckpointManager manager(dir.file("ckpts"), policy);
  auto model = std::make_shared<TrainNet>(TrainNetConfig{});
  auto opt = zanj_test::make_optimizer("SGD", *model);
  // val_loss is lowest at step 30.
  const std::map<int64_t, double> losses = {{10, 0.9}, {20, 0.5}, {30, 0.1}, {40, 0.4},
                                            {50, 0.6}, {60, 0.7}, {70, 0.8}};
  for (int64_t step = 1; step <= 70; ++step) {
    if (!manager.due(step)) continue;
    zanj::TrainingState st;
    st.step = step;
    manager.save(*model, *opt, nullptr, st, {{"val_loss", losses.at(step)}});
  }
  std::vector<int64_t> steps;
  for (const auto& c : manager.list()) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{30, 50, 60, 70}));
  EXPECT_EQ(manager.latest()->step, 70);
  EXPECT_EQ(manager.best()->step, 30);
  EXPECT_EQ(manager.best()->metrics["val_loss"], 0.1);
  // A fresh manager over the same directory sees the same (metrics come from the index).
  zanj::CheckpointManager again(dir.file("ckpts"), policy);
  EXPECT_EQ(again.best()->step, 30);
  auto run = again.resume_latest<TrainNet>();
  EXPECT_EQ(run.state.step, 70);
  // Stray files and temporaries are never taken for checkpoints.
  zanj_test::write_bytes(dir.file("ckpts/.ckpt-00000080.zanj.123-456.tmp"), "partial");
  zanj_test::write_bytes(dir.file("ckpts/notes.txt"), "x");
  EXPECT_EQ(again.latest()->step, 70);
}

// Each checkpoint carries its own step and metrics (SaveOptions::user_metadata), so an index
// left stale by a kill between a checkpoint's rename and the index's, or lost, is rebuilt:
// keep_best ranks what is really in the directory.
TEST(CheckpointManagerTest, AStaleOrMissingIndexIsRebuiltFromTheCheckpoints) {
  TempDir dir;
  zanj::CheckpointPolicy policy;
  policy.keep_best = 1;
  policy.keep_last = 3;
  policy.metric = "val_loss";
  const std::string d = dir.file("c");
  zanj::Node tree = zanj::Node::dict();
  tree["x"] = nlohmann::json(1);
  {
    zanj::CheckpointManager manager(d, policy);
    manager.save(1, tree, {{"val_loss", 0.5}});
    manager.save(2, tree, {{"val_loss", 0.7}});
  }
  const std::string index = zanj_test::read_bytes(d + "/checkpoints.json");
  // The kill: step 3 (the best) renamed into place, the index not yet rewritten.
  zanj::SaveOptions options;
  options.user_metadata = {{"note", "mine"}};
  {
    zanj::CheckpointManager manager(d, policy);
    manager.save(3, tree, {{"val_loss", 0.1}}, options);
  }
  const auto meta = zanj::read_metadata(d + "/ckpt-00000003.zanj");
  EXPECT_EQ(meta["configured_model"]["user_metadata"]["note"], "mine");
  EXPECT_EQ(meta["configured_model"]["user_metadata"]["checkpoint_manager"]["step"], 3);
  zanj_test::write_bytes(d + "/checkpoints.json", index);
  {
    zanj::CheckpointManager manager(d, policy);
    ASSERT_TRUE(manager.best());
    EXPECT_EQ(manager.best()->step, 3);
    EXPECT_EQ(manager.best()->metrics["val_loss"], 0.1);
  }
  // The manager wrote the index again on opening.
  const auto rebuilt = nlohmann::json::parse(zanj_test::read_bytes(d + "/checkpoints.json"));
  ASSERT_EQ(rebuilt["checkpoints"].size(), 3u);
  EXPECT_EQ(rebuilt["checkpoints"][2]["metrics"]["val_loss"], 0.1);
  // Lost altogether, or wrong about a metric: the same.
  std::filesystem::remove(d + "/checkpoints.json");
  EXPECT_EQ(zanj::CheckpointManager(d, policy).best()->step, 3);
  auto wrong = rebuilt;
  wrong["checkpoints"][0]["metrics"]["val_loss"] = 0.0;
  zanj_test::write_bytes(d + "/checkpoints.json", wrong.dump());
  EXPECT_EQ(zanj::CheckpointManager(d, policy).best()->step, 3);
  // A user_metadata that is not an object cannot hold the books: refused before writing.
  options.user_metadata = nlohmann::ordered_json::array();
  zanj::CheckpointManager manager(d, policy);
  EXPECT_THROW(manager.save(4, tree, {{"val_loss", 0.2}}, options), zanj::UsageError);
  EXPECT_FALSE(std::filesystem::exists(d + "/ckpt-00000004.zanj"));
}

TEST(CheckpointManagerTest, PruningNeverRemovesTheFileJustWritten) {
  TempDir dir;
  zanj::CheckpointPolicy policy;
  policy.keep_last = 1;
  zanj::CheckpointManager manager(dir.file("c"), policy);
  zanj::Node tree = zanj::Node::dict();
  tree["x"] = nlohmann::json(1);
  manager.save(5, tree);
  manager.save(3, tree);  // an older step written later (e.g. after a rollback)
  std::vector<int64_t> steps;
  for (const auto& c : manager.list()) steps.push_back(c.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 5}));
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
  const pid_t pid = fork();                      // another process opens the manager
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

}  // namespace
