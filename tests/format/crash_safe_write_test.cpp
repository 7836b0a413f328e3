// SPDX-License-Identifier: MIT
// Crash-safe writes report their stages in order (what the crash tests stop processes at), for
// zips (ArchiveWriter) and plain files (the storage seam's writer) alike, and a failed write leaves
// nothing.
#include <configured_model/archive.hpp>
#include <configured_model/errors.hpp>
#include <configured_model/file.hpp>
#include <string>
#include <utility>
#include <vector>

#include "save_stages.hpp"
#include "storage/storage.hpp"
#include "test_support.hpp"

namespace {

using zanj::detail::SaveStage;
using zanj_test::TempDir;

std::vector<std::pair<std::string, std::string>> g_seen;

void record(SaveStage stage, const std::string& path) {
  g_seen.emplace_back(std::string(zanj::detail::save_stage_name(stage)), path);
}

// Installs the recording hook for the scope of one test.
struct Recording {
  Recording() {
    g_seen.clear();
    zanj::detail::set_save_stage_hook(record);
  }
  ~Recording() { zanj::detail::set_save_stage_hook(nullptr); }
};

const std::vector<std::string> kInOrder = {"temporary-created", "data-written", "temporary-synced",
                                           "renamed", "directory-synced"};

std::vector<std::string> stages_for(const std::string& path) {
  std::vector<std::string> names;
  for (const auto& [stage, p] : g_seen) {
    if (p == path) names.push_back(stage);
  }
  return names;
}

TEST(CrashSafeWriteTest, AZipReportsEveryStageInOrder) {
  TempDir dir;
  Recording rec;
  const std::string path = dir.file("a.zanj");
  zanj::ArchiveWriter w(path);
  w.add("x", std::string(1000, 'x'), zanj::Compression::kStored);
  EXPECT_EQ(stages_for(path), std::vector<std::string>{"temporary-created"});
  w.commit();
  EXPECT_EQ(stages_for(path), kInOrder);
}

TEST(CrashSafeWriteTest, APlainFileReportsEveryStageInOrder) {
  TempDir dir;
  Recording rec;
  const std::string path = dir.file("index.json");
  {
    const auto f = zanj::detail::storage_for(path).create(path);
    f->append("{}", 2);
    f->commit();
  }
  EXPECT_EQ(stages_for(path), kInOrder);
  EXPECT_EQ(zanj_test::read_bytes(path), "{}");
}

TEST(CrashSafeWriteTest, AnAbandonedWriteLeavesNothingAndReportsNoCommit) {
  TempDir dir;
  Recording rec;
  const std::string path = dir.file("index.json");
  {
    const auto f = zanj::detail::storage_for(path).create(path);
    f->append("partial", 7);
  }  // destroyed without commit()
  EXPECT_EQ(stages_for(path), std::vector<std::string>{"temporary-created"});
  EXPECT_TRUE(zanj_test::fs::is_empty(dir.path()));
}

TEST(CrashSafeWriteTest, InMemoryArchivesHaveNoStages) {
  Recording rec;
  const std::string bytes = [] {
    zanj::Node tree = zanj::Node::dict();
    tree["x"] = nlohmann::json(1);
    return zanj::save_to_bytes(tree);
  }();
  EXPECT_FALSE(bytes.empty());
  EXPECT_TRUE(g_seen.empty());
}

}  // namespace
