// SPDX-License-Identifier: MIT
// The errors a user meets reading models, each saying what happened and what to do.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <filesystem>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

TEST(UserErrorsTest, ACudaDeviceThisProcessLacksIsAUsageErrorNamingIt) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has CUDA";
  TempDir dir;
  std::make_shared<TrainNet>(TrainNetConfig{})->save(dir.file("m.zanj"));
  zanj::ReadOptions options;
  options.device = torch::Device("cuda:0");
  EXPECT_THAT([&] { TrainNet::read(dir.file("m.zanj"), options); },
              zanj_test::Throws<zanj::UsageError>("m.zanj: ReadOptions::device",
                                                  "cuda:0 was asked for", "0 CUDA device(s)"));
}

TEST(UserErrorsTest, ATruncatedFileSaysTruncated) {
  TempDir dir;
  std::make_shared<TrainNet>(TrainNetConfig{})->save(dir.file("m.zanj"));
  std::filesystem::resize_file(dir.file("m.zanj"),
                               std::filesystem::file_size(dir.file("m.zanj")) / 2);
  EXPECT_THAT([&] { TrainNet::read(dir.file("m.zanj")); },
              zanj_test::Throws<zanj::FormatError>("m.zanj", "truncated"));
}

TEST(UserErrorsTest, WeightFilesGivenToReadSayHowToLoadThem) {
  TempDir dir;
  zanj::Node sd = zanj::Node::dict();
  sd["fc1.weight"] = torch::zeros({2, 2});
  zanj::save_torch(sd, dir.file("w.pt"));
  EXPECT_THAT([&] { TrainNet::read(dir.file("w.pt")); },
              zanj_test::Throws<zanj::FormatError>("w.pt", "a PyTorch torch.save file",
                                                   "zanj::load_weights", "zanj convert"));
  zanj::save_safetensors({{"fc1.weight", torch::zeros({2, 2})}}, dir.file("w.safetensors"));
  EXPECT_THAT([&] { TrainNet::read(dir.file("w.safetensors")); },
              zanj_test::Throws<zanj::FormatError>("w.safetensors", "a safetensors file",
                                                   "zanj::load_weights"));
}

struct OtherConfig {
  int64_t n = 1;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(OtherConfig, n)
class OtherImpl : public zanj::ConfiguredModel<OtherImpl, OtherConfig> {
 public:
  explicit OtherImpl(OtherConfig c) : ConfiguredModel(std::move(c)) {}
};

TEST(UserErrorsTest, AnotherClassNamesTheReaderIncludingTorchModuleImpls) {
  TempDir dir;
  std::make_shared<OtherImpl>(OtherConfig{})->save(dir.file("o.zanj"));
  EXPECT_THAT([&] { TrainNet::read(dir.file("o.zanj")); },
              zanj_test::Throws<zanj::StateMismatchError>("expected 'TrainNet', found 'Other'",
                                                          "Other::read()",
                                                          "OtherImpl::read() behind TORCH_MODULE"));
}

}  // namespace
