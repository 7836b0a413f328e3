// SPDX-License-Identifier: MIT
// Reading a model: straight into its parameters, into an existing model, mapped, with CRCs.
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>

#include <atomic>
#include <configured_model/configured_model.hpp>
#include <iostream>

#include "saved_net.hpp"
#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::corrupt_fc1;
using zanj_test::saved_net;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

// Counts the bytes torch's CPU allocator hands out while it is installed (the default one
// does the work).
class CountingAllocator final : public c10::Allocator {
 public:
  CountingAllocator() : inner_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this, 255); }
  ~CountingAllocator() override { c10::SetCPUAllocator(inner_, 255); }
  c10::DataPtr allocate(std::size_t n) const override {
    bytes_ += n;
    return inner_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
  std::size_t bytes() const { return bytes_; }

 private:
  c10::Allocator* inner_;
  mutable std::atomic<std::size_t> bytes_{0};
};

std::size_t parameter_bytes(const torch::nn::Module& m) {
  std::size_t n = 0;
  for (const auto& p : m.parameters()) n += static_cast<std::size_t>(p.nbytes());
  for (const auto& b : m.buffers()) n += static_cast<std::size_t>(b.nbytes());
  return n;
}

TEST(ModelReadTest, CopyReadGoesStraightIntoTheParameters) {
  TempDir dir;
  // ~4 MB of parameters, so that they dominate whatever else a read allocates.
  const auto net = saved_net(dir.file("m.zanj"), TrainNetConfig{512, 1024, 512, 0.1});
  const std::size_t params = parameter_bytes(*net);
  std::shared_ptr<TrainNet> again;
  std::size_t allocated = 0;
  {
    CountingAllocator counting;
    again = TrainNet::read(dir.file("m.zanj"));
    allocated = counting.bytes();
  }
  EXPECT_TRUE(zanj_test::SameState(*net, *again));
  EXPECT_EQ(again->training_records()["loss"][1], 0.25);
  // The model's own parameters are allocated once, when it is built; reading into them adds no
  // tensor-sized staging buffer (that would at least double the count).
  EXPECT_GE(allocated, params);
  EXPECT_LT(allocated, params + params / 4) << "a read staged tensors before copying them";
}

TEST(ModelReadTest, LoadIntoAnExistingModelKeepsItsStorage) {
  TempDir dir;
  const auto net = saved_net(dir.file("m.zanj"));
  torch::manual_seed(99);
  TrainNet other(TrainNetConfig{});
  ASSERT_FALSE(zanj_test::SameState(*net, other));
  const void* before = other.fc1->weight.data_ptr();
  other.load(dir.file("m.zanj"));
  EXPECT_TRUE(zanj_test::SameState(*net, other));
  EXPECT_EQ(other.fc1->weight.data_ptr(), before);
  EXPECT_EQ(other.training_records()["loss"][0], 0.5);
}

TEST(ModelReadTest, LoadRefusesAnotherConfigUnlessNonStrict) {
  TempDir dir;
  saved_net(dir.file("m.zanj"));
  TrainNetConfig c;
  c.dropout = 0.1;  // same shapes, other config
  TrainNet other(c);
  EXPECT_THAT([&] { other.load(dir.file("m.zanj")); },
              zanj_test::Throws<zanj::StateMismatchError>("zanj_model_config", "\"dropout\":0.3"));
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
  EXPECT_TRUE(zanj_test::SameState(*net, *mapped));
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
  EXPECT_FALSE(zanj_test::SameState(*net, *mapped));
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
  EXPECT_TRUE(zanj_test::SameState(net, *TrainNet::read(path, opts)));
}

TEST(CrcTest, CopyReadsDetectAFlippedBitUnlessTurnedOff) {
  TempDir dir;
  const std::string path = dir.file("m.zanj");
  saved_net(path);
  corrupt_fc1(path);
  EXPECT_THAT([&] { TrainNet::read(path); },
              zanj_test::Throws<zanj::FormatError>("state_dict/fc1.weight.npy: CRC-32 mismatch"));
  zanj::ReadOptions fast;
  fast.check_crc = false;
  EXPECT_NO_THROW(TrainNet::read(path, fast));
  // Mapped reads do not check; verify() does.
  fast.mmap = true;
  EXPECT_NO_THROW(TrainNet::read(path, fast));
  EXPECT_FALSE(zanj::verify(path).ok);
}

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
    EXPECT_TRUE(zanj_test::SameState(*net, *TrainNet::read(dir.file("long.zanj"), o)))
        << "mmap " << mmap;
  }
  EXPECT_TRUE(zanj_test::BitIdentical(
      zanj::LazyFile::open(dir.file("long.zanj")).tensor("state_dict/fc1.weight"),
      net->fc1->weight));
}

}  // namespace

namespace {

TEST(AdoptNodeTest, TheModelTakesTheTreesTensorsWhereFromNodeCopies) {
  zanj_test::TempDir dir;
  auto model = std::make_shared<zanj_test::TrainNet>(zanj_test::TrainNetConfig{});
  model->save(dir.file("m.zanj"));
  const zanj::Node tree = zanj::read(dir.file("m.zanj"));
  const auto& stored = tree.at("state_dict").at("fc1.weight").tensor();
  auto adopted = zanj_test::TrainNet::adopt_node(tree, "m.zanj");
  auto copied = zanj_test::TrainNet::from_node(tree, "m.zanj");
  EXPECT_EQ(adopted->fc1->weight.data_ptr(), stored.data_ptr());
  EXPECT_NE(copied->fc1->weight.data_ptr(), stored.data_ptr());
  EXPECT_TRUE(zanj_test::SameState(*adopted, *model));
  EXPECT_TRUE(zanj_test::SameState(*copied, *model));
}

}  // namespace
