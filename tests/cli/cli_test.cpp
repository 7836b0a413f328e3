// SPDX-License-Identifier: MIT
// The zanj command-line tool, run as a user runs it.
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::string zanj_cmd() { return CONFIGURED_MODEL_ZANJ_CLI; }

int zanj_run(const std::string& args, std::string* out = nullptr) {
  return zanj_test::run(zanj_cmd() + " " + args + " 2>/dev/null", out);
}

std::shared_ptr<TrainNet> saved_model(const std::string& path, int64_t hidden = 64) {
  torch::manual_seed(9);
  const TrainNetConfig c{10, hidden, 2, 0.3};
  auto m = std::make_shared<TrainNet>(c);
  m->training_records()["loss"] = {0.5, 0.25};
  m->save(path);
  return m;
}

TEST(CliTest, LsListsEveryTensorWithStorage) {
  TempDir dir;
  saved_model(dir.file("m.zanj"));
  std::string out;
  ASSERT_EQ(zanj_run("ls --json " + dir.file("m.zanj"), &out), 0);
  const auto rows = nlohmann::json::parse(out);
  bool found_external = false, found_inline = false;
  for (const auto& r : rows) {
    if (r["key"] == "state_dict/fc1.weight") {
      found_external = true;
      EXPECT_EQ(r["shape"], "[64, 10]");
      EXPECT_EQ(r["bytes"], 64 * 10 * 4 + 128);  // the .npy entry: 128-byte header + data
      EXPECT_EQ(r["storage"], "external state_dict/fc1.weight.npy");
    }
    if (r["key"] == "state_dict/fc1.bias") {
      found_inline = true;
      EXPECT_EQ(r["storage"], "inline array_list_meta");
      EXPECT_EQ(r["bytes"], 64 * 4);
    }
  }
  EXPECT_TRUE(found_external);
  EXPECT_TRUE(found_inline);
  ASSERT_EQ(zanj_run("ls " + dir.file("m.zanj"), &out), 0);
  EXPECT_THAT(out, HasSubstr("KEY"));
  EXPECT_THAT(out, HasSubstr("state_dict/fc2.bias"));
}

TEST(CliTest, ShowGivesTensorStatisticsAndSubtrees) {
  TempDir dir;
  zanj::Node tree = zanj::Node::dict();
  tree["t"] = torch::tensor({1.0, 2.0, std::nan(""), std::numeric_limits<double>::infinity(), 3.0});
  tree["cfg"]["a/b"] = nlohmann::json(5);  // a key with a slash
  zanj::save(tree, dir.file("t.zanj"));
  std::string out;
  ASSERT_EQ(zanj_run("show --json " + dir.file("t.zanj") + " t", &out), 0);
  const auto s = zanj::parse_json(out, "", "");
  EXPECT_EQ(s["nan_count"], 1);
  EXPECT_EQ(s["inf_count"], 1);
  EXPECT_EQ(s["min"], 1.0);
  EXPECT_EQ(s["max"], 3.0);
  EXPECT_EQ(s["mean"], 2.0);
  EXPECT_EQ(s["first_values"].size(), 5u);
  ASSERT_EQ(zanj_run("show " + dir.file("t.zanj") + " cfg/a/b", &out), 0);
  EXPECT_EQ(out, "5\n");
  EXPECT_EQ(zanj_run("show " + dir.file("t.zanj") + " nope"), 2);
}

TEST(CliTest, MetaSummarizesConfigVersionsAndRecords) {
  TempDir dir;
  saved_model(dir.file("m.zanj"));
  std::string out;
  ASSERT_EQ(zanj_run("meta " + dir.file("m.zanj"), &out), 0);
  const auto m = zanj::parse_json(out, "", "");
  EXPECT_EQ(m["class"], "TrainNet");
  EXPECT_EQ(m["config"]["hidden"], 64);
  EXPECT_EQ(m["versions"]["configured_model"]["format_version"], zanj::kFormatVersion);
  EXPECT_EQ(m["training_records"]["loss"]["count"], 2);
  EXPECT_EQ(m["training_records"]["loss"]["last"], 0.25);
}

TEST(CliTest, VerifyPassesSoundFilesAndReportsCorruption) {
  TempDir dir;
  saved_model(dir.file("m.zanj"));
  std::string out;
  EXPECT_EQ(zanj_run("verify " + dir.file("m.zanj"), &out), 0);
  EXPECT_THAT(out, HasSubstr("OK"));
  // Flip one bit inside the stored .npy data: CRC mismatch.
  std::string bytes = zanj_test::read_bytes(dir.file("m.zanj"));
  const auto pos = bytes.find("\x93NUMPY");
  ASSERT_NE(pos, std::string::npos);
  bytes[pos + 200] ^= 0x10;
  zanj_test::write_bytes(dir.file("bad.zanj"), bytes);
  EXPECT_EQ(zanj_run("verify " + dir.file("bad.zanj"), &out), 1);
  EXPECT_THAT(out, HasSubstr("state_dict/fc1.weight.npy"));
  EXPECT_THAT(out, HasSubstr("CRC-32 mismatch"));
}

// An entry nothing references is data no reader uses: `ls` reads the file with a warning,
// `verify` reports the entry and `convert` (lossless or refused) refuses it, naming it.
TEST(CliTest, AnEntryNothingReferencesIsReportedAndNotConverted) {
  TempDir dir;
  saved_model(dir.file("m.zanj"));
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 -c \"import zipfile,sys; "
                           "zipfile.ZipFile(sys.argv[1], 'a').writestr('stray.bin', b'x' * 9)\" " +
                           dir.file("m.zanj")),
            0);
  std::string out;
  EXPECT_EQ(zanj_run("ls " + dir.file("m.zanj")), 0);
  EXPECT_EQ(zanj_run("verify " + dir.file("m.zanj"), &out), 1);
  EXPECT_THAT(out, HasSubstr("stray.bin"));
  EXPECT_EQ(zanj_test::run(zanj_cmd() + " convert " + dir.file("m.zanj") + " " +
                               dir.file("out.zanj") + " 2>&1",
                           &out),
            2);
  EXPECT_THAT(out, HasSubstr("stray.bin"));
  EXPECT_THAT(out, HasSubstr("not referenced"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.zanj")));
}

// safetensors has no checksum: verify says what it checked and what it could not.
TEST(CliTest, VerifySaysSafetensorsIsCheckedForStructureOnly) {
  TempDir dir;
  saved_model(dir.file("m.zanj"));
  ASSERT_EQ(zanj_run("convert " + dir.file("m.zanj") + " " + dir.file("m.safetensors") +
                     " --weights-only"),
            0);
  std::string out;
  EXPECT_EQ(zanj_run("verify " + dir.file("m.safetensors"), &out), 0);
  EXPECT_THAT(out, HasSubstr("structure only"));
  EXPECT_THAT(out, HasSubstr("no checksum"));
}

TEST(CliTest, DiffExactIgnoresMetadataButNotValues) {
  TempDir dir;
  saved_model(dir.file("a.zanj"));
  saved_model(dir.file("b.zanj"));  // same values, different timestamp
  EXPECT_EQ(zanj_run("diff --exact " + dir.file("a.zanj") + " " + dir.file("b.zanj")), 0);
  auto m = saved_model(dir.file("c.zanj"));
  {
    torch::NoGradGuard g;
    m->fc2->bias[0] += 0.5;
  }
  m->save(dir.file("c.zanj"));
  std::string out;
  EXPECT_EQ(zanj_run("diff --exact " + dir.file("a.zanj") + " " + dir.file("c.zanj"), &out), 1);
  EXPECT_THAT(out, HasSubstr("state_dict/fc2.bias"));
  EXPECT_THAT(out, HasSubstr("max abs diff 0.5"));
  saved_model(dir.file("d.zanj"), 32);
  EXPECT_EQ(zanj_run("diff --json " + dir.file("a.zanj") + " " + dir.file("d.zanj"), &out), 0);
  EXPECT_THAT(out, HasSubstr("zanj_model_config/hidden"));
}

TEST(CliTest, ExtractWritesAStandaloneNpy) {
  TempDir dir;
  auto m = saved_model(dir.file("m.zanj"));
  ASSERT_EQ(
      zanj_run("extract " + dir.file("m.zanj") + " state_dict/fc1.weight -o " + dir.file("w.npy")),
      0);
  EXPECT_TRUE(
      BitIdentical(zanj::decode_npy(zanj_test::read_bytes(dir.file("w.npy"))), m->fc1->weight));
}

TEST(CliTest, ConvertsToAndFromLibtorchArchives) {
  TempDir dir;
  auto m = saved_model(dir.file("m.zanj"));
  ASSERT_EQ(zanj_run("export-pt " + dir.file("m.zanj") + " " + dir.file("m.pt")), 0);
  // libtorch's own loader fills a module with the same names (TrainNet's dropout holds no
  // tensors, and torch::load wants every submodule of the module in the archive).
  struct Plain : torch::nn::Module {
    explicit Plain(const TrainNetConfig& c)
        : fc1(register_module("fc1", torch::nn::Linear(c.in, c.hidden))),
          fc2(register_module("fc2", torch::nn::Linear(c.hidden, c.out))) {}
    torch::nn::Linear fc1, fc2;
  };
  auto fresh = std::make_shared<Plain>(m->config());
  torch::load(fresh, dir.file("m.pt"));
  const auto a = zanj::state_dict(*m);
  const auto b = zanj::state_dict(*fresh);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(BitIdentical(a[i].second, b[i].second)) << a[i].first;
  // And back: a file written by torch::save imports with the same tensors.
  torch::save(fresh, dir.file("saved_by_torch.pt"));
  ASSERT_EQ(zanj_run("import-pt " + dir.file("saved_by_torch.pt") + " " + dir.file("back.zanj")),
            0);
  const auto back = zanj::read(dir.file("back.zanj"));
  EXPECT_TRUE(BitIdentical(back.at("state_dict").at("fc1.weight").tensor(), m->fc1->weight));
  EXPECT_EQ(zanj_run("import-pt " + dir.file("m.zanj") + " " + dir.file("x.zanj")),
            2);  // not a .pt
}

TEST(CliTest, ReadsPythonFiles) {
  std::string out;
  EXPECT_EQ(zanj_run("verify " + zanj_test::data_dir() + "/python/tree_modes_stored.zanj", &out),
            0);
  EXPECT_EQ(zanj_run("ls " + zanj_test::data_dir() + "/python/mynn_hidden64_fortran.zanj", &out),
            0);
  EXPECT_THAT(out, HasSubstr("training_records/loss_per_step"));
  EXPECT_THAT(out, HasSubstr("external training_records/loss_per_step.jsonl"));
}

}  // namespace
