// SPDX-License-Identifier: MIT
// The speed-oriented paths: aligned layout, in-place and mapped model reads, lazy reads, CRCs.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <iostream>

#include "../examples/mlp/my_nn.hpp"
#include "test_util.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::shared_ptr<TrainNet> saved_net(const std::string& path, TrainNetConfig c = {}) {
  torch::manual_seed(7);
  auto net = std::make_shared<TrainNet>(c);
  net->training_records()["loss"] = {0.5, 0.25};
  net->save(path);
  EXPECT_TRUE(zanj_test::SoundZip(path));
  return net;
}

bool same(const torch::nn::Module& a, const torch::nn::Module& b) {
  return zanj::state_digest(zanj::state_dict(a)) == zanj::state_digest(zanj::state_dict(b));
}

// A flipped bit in the middle of fc1.weight's data.
void corrupt_fc1(const std::string& path) {
  const auto archive = zanj::ArchiveReader::open(path);
  const auto offset = archive.data_offset("state_dict/fc1.weight.npy") + 128 + 100;
  std::string bytes = zanj_test::read_bytes(path);
  bytes[offset] ^= 0x10;
  zanj_test::write_bytes(path, bytes);
}

TEST(LayoutTest, StoredTensorDataStartsAt64ByteOffsets) {
  TempDir dir;
  saved_net(dir.file("m.zanj"));
  const auto archive = zanj::ArchiveReader::open(dir.file("m.zanj"));
  int npy = 0;
  for (const auto& e : archive.entries()) {
    EXPECT_EQ(e.method, 0) << e.name;
    EXPECT_EQ(archive.data_offset(e.name) % zanj::kArchiveAlignment, 0u) << e.name;
    if (e.name.size() > 4 && e.name.substr(e.name.size() - 4) == ".npy") {
      const auto header = zanj::parse_npy_header(archive.read(e.name), e.name);
      EXPECT_EQ(header.data_offset % zanj::kNpyAlignment, 0u) << e.name;
      ++npy;
    }
  }
  EXPECT_EQ(npy, 1);  // only fc1.weight (32 x 8) reaches the 256-element threshold
}

TEST(ModelReadTest, CopyReadGoesStraightIntoTheParameters) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  const auto again = TrainNet::read(dir.file("m.zanj"));
  EXPECT_TRUE(same(*net, *again));
  EXPECT_EQ(again->training_records()["loss"][1], 0.25);
}

TEST(ModelReadTest, LoadIntoAnExistingModelKeepsItsStorage) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  torch::manual_seed(99);
  TrainNet other(TrainNetConfig{});
  ASSERT_FALSE(same(*net, other));
  const void* before = other.fc1->weight.data_ptr();
  other.load(dir.file("m.zanj"));
  EXPECT_TRUE(same(*net, other));
  EXPECT_EQ(other.fc1->weight.data_ptr(), before);
  EXPECT_EQ(other.training_records()["loss"][0], 0.5);
}

TEST(ModelReadTest, LoadRefusesAnotherConfigUnlessNonStrict) {
  TempDir dir;
  saved_net(dir.file("m.zanj"));
  TrainNetConfig c;
  c.dropout = 0.1;  // same shapes, other config
  TrainNet other(c);
  try {
    other.load(dir.file("m.zanj"));
    FAIL();
  } catch (const zanj::StateMismatchError& e) {
    EXPECT_THAT(e.what(), HasSubstr("zanj_model_config"));
    EXPECT_THAT(e.what(), HasSubstr("\"dropout\":0.3"));
  }
  zanj::ReadOptions lenient;
  lenient.strict = false;
  EXPECT_NO_THROW(other.load(dir.file("m.zanj"), lenient));
}

TEST(ModelReadTest, MmapReadAliasesTheFileAndTrainingCopiesPages) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  const auto net = saved_net(path);
  const std::string file_before = zanj_test::read_bytes(path);
  zanj::ReadOptions opts;
  opts.mmap = true;
  auto mapped = TrainNet::read(path, opts);
  EXPECT_TRUE(same(*net, *mapped));
  // The weight's data is the file's bytes: its address is 64-aligned like its file offset.
  const auto archive = zanj::ArchiveReader::open(path);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mapped->fc1->weight.data_ptr()) % 64, 0u);
  EXPECT_EQ(archive.data_offset("state_dict/fc1.weight.npy") % 64, 0u);
  // Training writes to the mapped parameters: pages are copied privately, the file stays.
  torch::optim::SGD sgd(mapped->parameters(), 0.1);
  for (int i = 0; i < 3; ++i) {
    sgd.zero_grad();
    mapped->forward(torch::ones({4, 8})).sum().backward();
    sgd.step();
  }
  EXPECT_FALSE(same(*net, *mapped));
  EXPECT_EQ(zanj_test::read_bytes(path), file_before);
  // The mapping outlives the reader and the model's other owners.
  auto weight = mapped->fc1->weight;
  mapped.reset();
  EXPECT_TRUE(torch::isfinite(weight).all().item<bool>());
}

TEST(ModelReadTest, MmapFallsBackToCopiesForDeflatedFiles) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  torch::manual_seed(7);
  TrainNet net(TrainNetConfig{});
  zanj::SaveOptions s;
  s.compression = zanj::Compression::kDeflate;
  net.save(path, s);
  zanj::ReadOptions opts;
  opts.mmap = true;
  EXPECT_TRUE(same(net, *TrainNet::read(path, opts)));
}

TEST(CrcTest, CopyReadsDetectAFlippedBitUnlessTurnedOff) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  saved_net(path);
  corrupt_fc1(path);
  try {
    TrainNet::read(path);
    FAIL();
  } catch (const zanj::FormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr("state_dict/fc1.weight.npy: CRC-32 mismatch"));
  }
  zanj::ReadOptions fast;
  fast.check_crc = false;
  EXPECT_NO_THROW(TrainNet::read(path, fast));
  // Mapped reads do not check; verify() does.
  fast.mmap = true;
  EXPECT_NO_THROW(TrainNet::read(path, fast));
  EXPECT_FALSE(zanj::verify(path).ok);
}

TEST(LazyFileTest, ListsTensorsAndReadsOneByKey) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  const auto file = zanj::LazyFile::open(dir.file("m.zanj"));
  std::vector<std::string> keys;
  for (const auto& t : file.tensors()) keys.push_back(t.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"state_dict/fc1.weight", "state_dict/fc1.bias",
                                            "state_dict/fc2.weight", "state_dict/fc2.bias"}));
  const zanj::TensorInfo* w = file.find("state_dict/fc1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{32, 8}));
  EXPECT_EQ(w->dtype, torch::kFloat);
  EXPECT_EQ(w->bytes, 32u * 8 * 4);
  EXPECT_EQ(w->entry, "state_dict/fc1.weight.npy");
  EXPECT_TRUE(zanj_test::BitIdentical(file.tensor("state_dict/fc1.weight"), net->fc1->weight));
  // Inline tensors (fc2.bias has 4 elements) are listed too, without an entry.
  EXPECT_EQ(file.find("state_dict/fc2.bias")->entry, "");
  EXPECT_TRUE(zanj_test::BitIdentical(file.tensor("state_dict/fc2.bias"), net->fc2->bias));
  EXPECT_THROW(file.tensor("state_dict/nope"), zanj::FormatError);
}

TEST(LazyFileTest, OneCorruptTensorDoesNotSpoilTheOthers) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  corrupt_fc1(dir.file("m.zanj"));
  const auto file = zanj::LazyFile::open(dir.file("m.zanj"));
  EXPECT_THROW(file.tensor("state_dict/fc1.weight"), zanj::FormatError);
  EXPECT_TRUE(zanj_test::BitIdentical(file.tensor("state_dict/fc2.weight"), net->fc2->weight));
}

TEST(LazyFileTest, MappedTensorsOutliveTheFileObject) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  zanj::ReadOptions opts;
  opts.mmap = true;
  torch::Tensor w;
  {
    const auto file = zanj::LazyFile::open(dir.file("m.zanj"), opts);
    w = file.tensor("state_dict/fc1.weight");
  }
  EXPECT_TRUE(zanj_test::BitIdentical(w, net->fc1->weight));
}

}  // namespace

// The README's "Fast reads and big files" snippet, as written there.
TEST(ReadmeTest, FastReadsSnippet) {
  TempDir dir;
  const std::string run = dir.file("run.zanj");
  auto model = std::make_shared<mlp::MyNN>(mlp::MyNNConfig{});
  model->save(run);
  // --- snippet ---
  model->load(run);  // into the model you have: straight into its parameters

  zanj::ReadOptions mapped;
  mapped.mmap = true;  // parameters alias a copy-on-write mapping of the file
  auto m = mlp::MyNN::read(run, mapped);

  auto file = zanj::LazyFile::open(run);  // reads the JSON only
  for (const auto& t : file.tensors()) std::cout << t.key << " " << t.bytes << "\n";
  torch::Tensor w = file.tensor("state_dict/net.0.weight");  // reads that entry only
  // --- end ---
  EXPECT_TRUE(same(*model, *m));
  EXPECT_TRUE(zanj_test::BitIdentical(w, zanj::state_dict(*model).front().second));
  ASSERT_EQ(file.tensors().size(), 4u);
  EXPECT_EQ(file.tensors()[0].bytes, 800u);
}

namespace {

TEST(ModelReadTest, NpyHeadersLongerThanTheFirstReadAreReadInFull) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  const auto net = saved_net(path);
  // Rewrite fc1.weight with a 6 KB header (numpy pads with spaces; any length is legal).
  const std::string entry = "state_dict/fc1.weight.npy";
  {
    const auto in = zanj::ArchiveReader::open(path);
    const std::string original = in.read(entry);
    const auto header = zanj::parse_npy_header(original);
    const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 8), }";
    const std::string data = original.substr(header.data_offset);
    const std::string rewritten = zanj_test::npy_with_header(dict + std::string(6000, ' '), data);
    ASSERT_GT(zanj::parse_npy_header(rewritten).data_offset, 4096u);
    zanj::ArchiveWriter out(dir.file("long.zanj"));
    for (const auto& e : in.entries()) {
      out.add(e.name, e.name == entry ? rewritten : in.read(e.name), zanj::Compression::kStored);
    }
    out.commit();
  }
  for (bool mmap : {false, true}) {
    zanj::ReadOptions o;
    o.mmap = mmap;
    EXPECT_TRUE(same(*net, *TrainNet::read(dir.file("long.zanj"), o))) << "mmap " << mmap;
  }
  EXPECT_TRUE(zanj_test::BitIdentical(
      zanj::LazyFile::open(dir.file("long.zanj")).tensor("state_dict/fc1.weight"),
      net->fc1->weight));
}

}  // namespace
