// SPDX-License-Identifier: MIT
// LazyFile and the stored layout lazy and mapped reads rely on: 64-byte-aligned data, one
// entry read at a time, mapped tensors that outlive the file object.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <iostream>

#include "saved_net.hpp"
#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::corrupt_fc1;
using zanj_test::saved_net;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

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
