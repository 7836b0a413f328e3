// SPDX-License-Identifier: MIT
// Distributed checkpoints with real processes: each rank is a distributed_helper process in a
// Gloo group over a FileStore (127.0.0.1). Every launch has a deadline; ranks still running
// after it are killed and the test fails, so a hang cannot stall the suite.
#include "configured_model/distributed.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "configured_model/async_saver.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/file.hpp"
#include "configured_model/json_text.hpp"
#include "distributed/checkpoint_index.hpp"
#include "distributed_tree.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {

struct Ranks {
  std::vector<int> status;  // exit code, or 128 + signal
  double seconds = 0;
};

// Starts `world` helper processes (rank 0..world-1) with `args` (plus any per-rank extras) and
// waits for all, killing them after `deadline`.
Ranks launch(const std::string& dir, int world, std::vector<std::string> args,
             const std::map<int, std::vector<std::string>>& per_rank = {},
             std::chrono::seconds deadline = std::chrono::seconds(60)) {
  static int launches = 0;
  const std::string store = dir + ".store" + std::to_string(++launches);
  std::error_code ec;
  fs::remove(store, ec);
  std::vector<pid_t> pids;
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> argv = {CONFIGURED_MODEL_DISTRIBUTED_HELPER,
                                     "--rank",
                                     std::to_string(r),
                                     "--world",
                                     std::to_string(world),
                                     "--store",
                                     store,
                                     "--dir",
                                     dir};
    argv.insert(argv.end(), args.begin(), args.end());
    if (const auto it = per_rank.find(r); it != per_rank.end()) {
      argv.insert(argv.end(), it->second.begin(), it->second.end());
    }
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> c;
      for (auto& a : argv) c.push_back(a.data());
      c.push_back(nullptr);
      execv(c[0], c.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  Ranks result;
  result.status.assign(static_cast<std::size_t>(world), -1);
  std::size_t left = pids.size();
  while (left > 0) {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (result.status[i] != -1) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        result.status[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        --left;
      }
    }
    if (left > 0 && std::chrono::steady_clock::now() - start > deadline) {
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (result.status[i] == -1) kill(pids[i], SIGKILL);
      }
      for (std::size_t i = 0; i < pids.size(); ++i) {
        if (result.status[i] == -1) waitpid(pids[i], nullptr, 0);
      }
      ADD_FAILURE() << "ranks still running after " << deadline.count() << " s: killed";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fs::remove(store, ec);
  return result;
}

std::vector<int> all(int world, int code) {
  return std::vector<int>(static_cast<std::size_t>(world), code);
}

std::vector<std::string> rank_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The whole tree as consolidate() gives it: rank 0's RNG state.
zanj::Node consolidated_expectation(int variant) {
  zanj::Node expected = zanj_test::whole_tree(variant);
  expected.at("training_state").at("rng")["cpu"] = zanj_test::rank_rng(0, variant);
  return expected;
}

using zanj_test::SameTree;

// Reading `d` throws E, naming `file` and saying `needle`.
template <class E>
void expect_read_error(const std::string& d, const std::string& file, const std::string& needle) {
  try {
    zanj::read_distributed(d, 0, 1);
    ADD_FAILURE() << "no error; expected " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

// A forger's rewrite of the index: the edited JSON with its checksum recomputed, as the library
// writes it. (A plain edit is refused by the checksum; see IndexEditsAreRefused...)
void write_forged_index(const std::string& d, nlohmann::ordered_json j) {
  j.erase(zanj::detail::kIndexChecksumKey);
  const std::string body = zanj::dump_json(j, zanj::JsonStyle::kIndented);
  j[zanj::detail::kIndexChecksumKey] = zanj::crc32(0, body.data(), body.size());
  zanj_test::write_bytes(d + "/checkpoint.json", zanj::dump_json(j, zanj::JsonStyle::kIndented));
}

nlohmann::ordered_json read_index_json(const std::string& d) {
  return nlohmann::ordered_json::parse(zanj_test::read_bytes(d + "/checkpoint.json"));
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("zanj_dist_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string dir(const std::string& name) const { return (root_ / name).string(); }

  // Saves variant `variant` with `world` ranks into `d`.
  void save(const std::string& d, int world, int variant = 0) {
    const auto r = launch(d, world, {"--mode", "save", "--variant", std::to_string(variant)});
    ASSERT_EQ(r.status, all(world, 0)) << "save with " << world << " ranks";
  }

  fs::path root_;
};

TEST_F(DistributedTest, SavedAtOneWorldSizeReadsAtAnother) {
  // (saved by, read by): the same, fewer, more, and down to one.
  const std::vector<std::pair<int, int>> cases = {{1, 1}, {2, 2}, {4, 2}, {2, 3}, {3, 4}, {4, 1}};
  for (const auto& [n, m] : cases) {
    SCOPED_TRACE(std::to_string(n) + " -> " + std::to_string(m));
    const std::string d = dir("ckpt_" + std::to_string(n) + "_" + std::to_string(m));
    save(d, n);
    const auto r = launch(d, m, {"--mode", "read", "--saved-world", std::to_string(n)});
    EXPECT_EQ(r.status, all(m, 0)) << "every rank reads its piece bit-identically";
    EXPECT_TRUE(SameTree(zanj::read_distributed(d, 0, 1), consolidated_expectation(0)));
    EXPECT_NO_THROW(zanj::verify_distributed(d));
    // One file per rank, each an ordinary ZANJ archive, and the index.
    const auto idx = zanj::detail::load_index(d);
    ASSERT_EQ(idx.files.size(), static_cast<std::size_t>(n));
    for (const auto& f : idx.files) EXPECT_NO_THROW(zanj::read(d + "/" + f.name));
    EXPECT_EQ(rank_files(d).size(), static_cast<std::size_t>(n) + 1);
  }
}

TEST_F(DistributedTest, ReplicatedTensorsCanBeBroadcastFromRankZero) {
  const std::string d = dir("ckpt");
  save(d, 3);
  const auto r = launch(d, 2, {"--mode", "read", "--saved-world", "3", "--broadcast"});
  EXPECT_EQ(r.status, all(2, 0));
}

TEST_F(DistributedTest, ConsolidatedFileIsAnOrdinaryCheckpoint) {
  const std::string d = dir("ckpt");
  save(d, 4);
  const std::string out = dir("whole.zanj");
  zanj::consolidate(d, out);
  EXPECT_TRUE(SameTree(zanj::read(out), consolidated_expectation(0)));
  if (zanj_test::python_has("numpy")) {
    EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                             "/check_checkpoint.py " + out + " >/dev/null"),
              0);
    // Each rank's file is an ordinary ZANJ archive to Python too (zipfile + numpy).
    for (const auto& f : zanj::detail::load_index(d).files) {
      EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                               "/check_checkpoint.py " + d + "/" + f.name + " >/dev/null"),
                0)
          << f.name;
    }
  }
}

TEST_F(DistributedTest, ASecondSaveReplacesTheFirstAndRemovesItsFiles) {
  const std::string d = dir("ckpt");
  save(d, 2, 0);
  save(d, 3, 1);
  EXPECT_TRUE(SameTree(zanj::read_distributed(d, 0, 1), consolidated_expectation(1)));
  EXPECT_EQ(rank_files(d).size(), 4u) << "three rank files and the index";
}

TEST_F(DistributedTest, ARankThatCannotWriteFailsTheSaveOnEveryRankAndKeepsThePrevious) {
  const std::string d = dir("ckpt");
  save(d, 3, 0);
  const auto before = rank_files(d);
  const auto r = launch(d, 3, {"--mode", "save", "--variant", "1"},
                        {{1, {"--fsize-limit", "2048"}}});  // rank 1's disk is full
  EXPECT_EQ(r.status, all(3, 3)) << "IoError on every rank";
  EXPECT_EQ(rank_files(d), before) << "nothing of the failed save is left";
  EXPECT_TRUE(SameTree(zanj::read_distributed(d, 0, 1), consolidated_expectation(0)));
}

TEST_F(DistributedTest, ARankKilledMidSaveLeavesThePreviousCheckpointAndTheOthersFail) {
  const std::string d = dir("ckpt");
  save(d, 3, 0);
  const auto r = launch(d, 3, {"--mode", "save", "--variant", "1", "--timeout-ms", "5000"},
                        {{2, {"--fsize-limit", "2048", "--die-on-fsize"}}});
  EXPECT_EQ(r.status[2], 128 + SIGXFSZ) << "rank 2 was killed while writing";
  EXPECT_EQ(r.status[0], 3);
  EXPECT_EQ(r.status[1], 3);
  EXPECT_TRUE(SameTree(zanj::read_distributed(d, 0, 1), consolidated_expectation(0)));
  EXPECT_NO_THROW(zanj::verify_distributed(d));
  // A later save removes the dead rank's temporary.
  save(d, 3, 2);
  for (const auto& name : rank_files(d)) EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
}

// A rank killed at each stage of writing its own file, and rank 0 killed at each stage of
// writing the index (the commit): the directory holds the previous checkpoint until the index
// is renamed into place, and the new one from then on; it verifies either way.
TEST_F(DistributedTest, ARankKilledAtEveryStageOfTheSaveLeavesOneWholeCheckpoint) {
  const std::vector<std::string> stages = {"temporary-created", "data-written", "temporary-synced",
                                           "renamed", "directory-synced"};
  struct Target {
    int rank;
    std::string file;
    bool commits;  // the file whose rename makes the new checkpoint the one read
  };
  for (const Target& target :
       {Target{1, "rank-00001-of-00002", false}, Target{0, "checkpoint.json", true}}) {
    for (const auto& stage : stages) {
      SCOPED_TRACE(target.file + " " + stage);
      const std::string d = dir("stages-" + std::to_string(target.rank) + "-" + stage);
      save(d, 2, 0);
      const auto r = launch(d, 2, {"--mode", "save", "--variant", "1", "--timeout-ms", "3000"},
                            {{target.rank, {"--kill-at", stage, "--kill-file", target.file}}});
      EXPECT_EQ(r.status[static_cast<std::size_t>(target.rank)], 128 + SIGKILL)
          << "the kill landed";
      const bool committed = target.commits && (stage == "renamed" || stage == "directory-synced");
      EXPECT_TRUE(
          SameTree(zanj::read_distributed(d, 0, 1), consolidated_expectation(committed ? 1 : 0)));
      EXPECT_NO_THROW(zanj::verify_distributed(d));
    }
  }
}

TEST_F(DistributedTest, RanksSavingDifferentTreesAllGetAConfigError) {
  const std::string d = dir("ckpt");
  const auto r = launch(d, 3, {"--mode", "save", "--skew"});
  EXPECT_EQ(r.status, all(3, 4));
  EXPECT_FALSE(zanj::is_distributed_checkpoint(d));
}

TEST_F(DistributedTest, DamagedCheckpointsAreTypedErrorsNamingFileAndRank) {
  const std::string d = dir("ckpt");
  save(d, 2);
  const auto idx = zanj::detail::load_index(d);
  const std::string f1 = d + "/" + idx.files[1].name;
  const std::string good = zanj_test::read_bytes(f1);
  fs::remove(f1);
  expect_read_error<zanj::IoError>(d, idx.files[1].name,
                                   "rank 1 of 2: the file the index names is missing");
  zanj_test::write_bytes(f1, good.substr(0, good.size() / 2));
  expect_read_error<zanj::FormatError>(d, idx.files[1].name, "truncated");
  // Another save's file under this name, same size: foreign.
  const std::string other = dir("other");
  save(other, 2, 1);
  const auto oidx = zanj::detail::load_index(other);
  zanj_test::write_bytes(f1, zanj_test::read_bytes(other + "/" + oidx.files[1].name));
  std::string index_text = zanj_test::read_bytes(d + "/checkpoint.json");
  {
    auto j = read_index_json(d);
    j["files"][1]["bytes"] = fs::file_size(f1);
    write_forged_index(d, j);
  }
  expect_read_error<zanj::FormatError>(d, idx.files[1].name, "not this checkpoint's file");
  zanj_test::write_bytes(f1, good);
  zanj_test::write_bytes(d + "/checkpoint.json", index_text);
  EXPECT_NO_THROW(zanj::read_distributed(d, 0, 1));
  // An index that disagrees with the files: a piece's shape, then pieces that overlap.
  auto j = read_index_json(d);
  for (auto& t : j["tensors"]) {
    if (t["path"] == "state_dict/fc.weight")
      t["pieces"][0]["length"] = t["pieces"][0]["length"].get<int>() + 1;
  }
  write_forged_index(d, j);
  EXPECT_THROW(zanj::read_distributed(d, 0, 1), zanj::FormatError);
  zanj_test::write_bytes(d + "/checkpoint.json", index_text);
  j = read_index_json(d);
  j["files"][0]["name"] = "../escape.zanj";
  write_forged_index(d, j);
  EXPECT_THROW(zanj::read_distributed(d, 0, 1), zanj::FormatError);
  zanj_test::write_bytes(d + "/checkpoint.json", "{\"format\": 3}");
  EXPECT_THROW(zanj::read_distributed(d, 0, 1), zanj::FormatError);
  fs::remove(d + "/checkpoint.json");
  EXPECT_THROW(zanj::read_distributed(d, 0, 1), zanj::IoError);
  EXPECT_FALSE(zanj::is_distributed_checkpoint(d));
}

// The index checks itself (CRC-32 of its text) and every piece is checked against what its rank
// file says it is: a one-character edit, and a forged index (checksum recomputed) that swaps two
// pieces of the same dtype and shape, are refused by read, verify and consolidate alike.
TEST_F(DistributedTest, EditedOrForgedIndexesAreRefusedByEveryReader) {
  const auto refused_everywhere = [&](const std::string& d, const std::string& needle,
                                      const std::string& file) {
    expect_read_error<zanj::FormatError>(d, file, needle);
    EXPECT_THROW(zanj::verify_distributed(d), zanj::FormatError);
    EXPECT_THROW(zanj::consolidate(d, dir("whole.zanj")), zanj::FormatError);
  };
  // A plain one-character edit (a piece's rank): found by the index's own checksum.
  const std::string d = dir("ckpt");
  save(d, 2);
  const std::string index_text = zanj_test::read_bytes(d + "/checkpoint.json");
  auto edited = read_index_json(d);
  auto& rank = edited["tensors"][0]["pieces"][0]["rank"];
  rank = 1 - rank.get<int>();
  zanj_test::write_bytes(d + "/checkpoint.json",
                         zanj::dump_json(edited, zanj::JsonStyle::kIndented));
  refused_everywhere(d, "the index was changed after it was written", "checkpoint.json");
  zanj_test::write_bytes(d + "/checkpoint.json", index_text);
  EXPECT_NO_THROW(zanj::verify_distributed(d));

  // A forgery (checksum recomputed) that the dtype-and-shape check cannot see: the case,
  // a bias pointed at the momentum buffer of the same dtype and shape. Found by piece_info.
  auto store = c10::make_intrusive<c10d::FileStore>((root_ / "store").string(), 1);
  auto pg_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
  pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, 0, 1, pg_options);
  zanj::Node tree = zanj::Node::dict();
  tree["bias"] = torch::randn({20});
  tree["momentum"] = torch::randn({20});
  const std::string f = dir("forged");
  zanj::save_distributed(f, tree, *group);
  auto j = read_index_json(f);
  ASSERT_EQ(j["tensors"].size(), 2u);
  std::swap(j["tensors"][0]["pieces"][0]["index"], j["tensors"][1]["pieces"][0]["index"]);
  write_forged_index(f, j);
  refused_everywhere(f, "the index expects this piece to be", "rank-00000");
}

TEST_F(DistributedTest, CliListsVerifiesDiffsAndConsolidatesDirectories) {
  const std::string d = dir("ckpt");
  save(d, 2);
  const std::string cli = CONFIGURED_MODEL_ZANJ_CLI;
  if (cli.empty()) GTEST_SKIP() << "built without the zanj tool (CONFIGURED_MODEL_BUILD_TOOLS=OFF)";
  std::string out;
  EXPECT_EQ(zanj_test::run(cli + " ls " + d, &out), 0);
  EXPECT_NE(out.find("state_dict/emb.weight"), std::string::npos) << out;
  EXPECT_NE(out.find("sharded, 2 piece(s)"), std::string::npos) << out;
  EXPECT_EQ(zanj_test::run(cli + " verify " + d, &out), 0) << out;
  const std::string whole = dir("whole.zanj");
  EXPECT_EQ(zanj_test::run(cli + " consolidate " + d + " " + whole + " 2>/dev/null"), 0);
  EXPECT_TRUE(SameTree(zanj::read(whole), consolidated_expectation(0)));
  EXPECT_EQ(zanj_test::run(cli + " diff --exact " + d + " " + whole, &out), 0) << out;
  EXPECT_EQ(zanj_test::run(cli + " show " + d + " state_dict/fc.bias", &out), 0) << out;
  // One flipped byte in rank 1's file: verify names the file and fails.
  const auto idx = zanj::detail::load_index(d);
  const std::string f1 = d + "/" + idx.files[1].name;
  std::string bytes = zanj_test::read_bytes(f1);
  bytes[bytes.size() / 3] = static_cast<char>(bytes[bytes.size() / 3] ^ 0x5a);
  zanj_test::write_bytes(f1, bytes);
  EXPECT_EQ(zanj_test::run(cli + " verify " + d, &out), 1);
  EXPECT_NE(out.find(idx.files[1].name), std::string::npos) << out;
  EXPECT_EQ(zanj_test::run(cli + " consolidate " + dir("absent") + " " + whole + " 2>/dev/null"),
            2);
}

// The README's snippet, with a group of one process.
struct EmbeddingModel {
  std::int64_t rows, dim;
  zanj::Node to_node() const {
    zanj::Node sd = zanj::Node::dict();
    sd["emb.weight"] = torch::arange(rows * dim, torch::kFloat).reshape({rows, dim});
    zanj::Node root = zanj::Node::dict();
    root["state_dict"] = std::move(sd);
    return root;
  }
};

TEST_F(DistributedTest, ReadmeSnippet) {
  zanj_test::ScopedCwd in_dir(root_);
  auto store = c10::make_intrusive<c10d::FileStore>((root_ / "store").string(), 1);
  auto pg_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
  pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, 0, 1, pg_options);
  const std::int64_t vocab = 10, dim = 4;
  const int rank = 0, world_size = 1, new_rank = 0, new_world_size = 1;
  auto model = std::make_shared<EmbeddingModel>(EmbeddingModel{vocab, dim});
#include "distributed.inc"  // the README's snippet, extracted from README.md
  EXPECT_EQ(rows, vocab);
  EXPECT_TRUE(SameTree(back, tree));
  EXPECT_TRUE(SameTree(zanj::read("whole.zanj"), tree));
}

TEST_F(DistributedTest, AsyncSaveHoldsTheValuesAtTheCallAndReportsFailures) {
  auto store = c10::make_intrusive<c10d::FileStore>((root_ / "store").string(), 1);
  auto pg_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
  pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, 0, 1, pg_options);
  zanj::AsyncSaver saver;
  zanj::Node tree = zanj_test::whole_tree(0);
  const std::string d = dir("ckpt");
  auto handle = zanj::save_distributed_async(saver, d, tree, *group);
  // Training goes on at once: the file must still hold the values at the call.
  tree.at("state_dict").at("fc.weight").tensor().add_(1);
  tree.at("buffers").as_list()[0].tensor().zero_();
  handle.wait();
  EXPECT_TRUE(SameTree(zanj::read_distributed(d, 0, 1), zanj_test::whole_tree(0)));
  // A save that cannot be written: wait() rethrows the writer thread's IoError.
  auto bad = zanj::save_distributed_async(saver, "/proc/zanj-cannot-write/ckpt", tree, *group);
  EXPECT_THROW(bad.wait(), zanj::IoError);
}

}  // namespace
