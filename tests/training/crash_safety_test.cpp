// SPDX-License-Identifier: MIT
// Crash safety, stage by stage: a process is SIGKILLed at each stage of a save (temporary
// created, data written, temporary synced, renamed, directory synced) of a model file, of a
// manager's checkpoint, of the manager's index, and of a background save; every time the kill is
// asserted to have landed at that stage, and what is on disk is either the previous complete
// checkpoint or the new one, never anything else.
#include <sys/wait.h>

#include <configured_model/configured_model.hpp>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::TempDir;
using zanj_test::TrainNet;

const std::vector<std::string> kStages = {"temporary-created", "data-written", "temporary-synced",
                                          "renamed", "directory-synced"};

// Whether the new file is in place once the stage has passed.
bool renamed_by(const std::string& stage) {
  return stage == "renamed" || stage == "directory-synced";
}

// Runs `training_helper crash MODE WHERE STAGE FILTER`; true when it died by SIGKILL.
bool killed_at(const std::string& mode, const std::string& where, const std::string& stage,
               const std::string& filter) {
  const std::string cmd = std::string(CONFIGURED_MODEL_TRAINING_HELPER) + " crash " + mode + " " +
                          where + " " + stage + " " + filter + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  // system() runs the command through sh, which reports a child killed by signal N as 128 + N.
  return WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL;
}

int64_t iteration_of(const std::string& path) {
  return TrainNet::read(path)->training_records()["iteration"].get<int64_t>();
}

std::vector<std::string> hidden_temporaries(const zanj_test::fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : zanj_test::fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.front() == '.' && name.size() > 4 && name.substr(name.size() - 4) == ".tmp") {
      names.push_back(name);
    }
  }
  return names;
}

TEST(CrashSafetyTest, AModelSaveKilledAtEveryStageLeavesTheOldFileOrTheNew) {
  for (const auto& stage : kStages) {
    SCOPED_TRACE(stage);
    TempDir dir;
    const std::string path = dir.file("model.zanj");
    ASSERT_TRUE(killed_at("save", path, stage, "model.zanj"));
    EXPECT_EQ(iteration_of(path), renamed_by(stage) ? 2 : 1);
    EXPECT_TRUE(zanj_test::SoundZip(path));
    // Before the rename, the killed save's temporary is there, hidden; after it, nothing is.
    EXPECT_EQ(hidden_temporaries(dir.path()).size(), renamed_by(stage) ? 0u : 1u);
  }
}

TEST(CrashSafetyTest, ACompletedSaveIsNotKilled) {
  TempDir dir;
  EXPECT_FALSE(killed_at("save", dir.file("model.zanj"), "none", "model.zanj"));
  EXPECT_EQ(iteration_of(dir.file("model.zanj")), 2);
}

// The manager: killed while writing the checkpoint, or while writing its index afterwards. The
// next manager on the directory removes the temporaries and finds the newest complete one.
void expect_manager_recovers(const std::string& mode, const std::string& filter, bool index_stage) {
  for (const auto& stage : kStages) {
    SCOPED_TRACE(mode + " " + filter + " " + stage);
    TempDir dir;
    ASSERT_TRUE(killed_at(mode, dir.path().string(), stage, filter));
    zanj::CheckpointManager manager(dir.path().string(), {});
    EXPECT_TRUE(hidden_temporaries(dir.path()).empty());
    const auto latest = manager.latest();
    ASSERT_TRUE(latest);
    // The index is written after the checkpoint: a kill there still leaves checkpoint 2.
    const int64_t expected = index_stage || renamed_by(stage) ? 2 : 1;
    EXPECT_EQ(latest->step, expected);
    EXPECT_EQ(iteration_of(latest->path), expected);
  }
}

TEST(CrashSafetyTest, AManagerCheckpointKilledAtEveryStage) {
  expect_manager_recovers("manager", ".zanj", false);
}

TEST(CrashSafetyTest, TheManagersIndexKilledAtEveryStage) {
  expect_manager_recovers("manager", "checkpoints.json", true);
}

TEST(CrashSafetyTest, ABackgroundSaveKilledAtEveryStage) {
  expect_manager_recovers("async", ".zanj", false);
}

}  // namespace
