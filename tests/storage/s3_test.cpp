// SPDX-License-Identifier: MIT
// s3:// against a real S3-compatible server on 127.0.0.1 (s3_server.hpp): round trips, request
// counts, retries, uploads that fail midway, typed errors, credentials kept out of logs, Python
// reading what we wrote, the manager and the CLI on a bucket.
#include <spdlog/sinks/ostream_sink.h>

#include <configured_model/checkpoint_manager.hpp>
#include <configured_model/errors.hpp>
#include <configured_model/file.hpp>
#include <configured_model/lazy_file.hpp>
#include <configured_model/logging.hpp>
#include <configured_model/safetensors.hpp>
#include <configured_model/verify.hpp>
#include <configured_model/weights.hpp>
#include <sstream>

#include "s3_server.hpp"
#include "storage/storage.hpp"

namespace {

using zanj_test::BitIdentical;
using zanj_test::SameTree;
using zanj_test::TempDir;
namespace s3 = zanj::detail::s3;

// A tree with tensors of several dtypes, one large enough for a multipart upload (> 8 MiB).
zanj::Node sample_tree(std::int64_t big_elements = 3 << 20) {
  zanj::Node tree = zanj::Node::dict();
  tree["big"] = torch::randn({big_elements});
  tree["ints"] = torch::arange(1000, torch::kInt64);
  tree["half"] = torch::randn({17, 3}).to(torch::kBFloat16);
  tree["config"] = nlohmann::json{{"lr", 0.1}, {"name", "run"}};
  return tree;
}

TEST_F(S3Test, SaveAndReadRoundTripBitExactThroughAMultipartUpload) {
  const zanj::Node tree = sample_tree();
  zanj::save(tree, uri("runs/a.zanj"));
  EXPECT_EQ(keys(), std::vector<std::string>{"runs/a.zanj"});
  EXPECT_TRUE(SameTree(zanj::read(uri("runs/a.zanj")), tree));
  // The object is a sound zip by the same checks verify makes on a local file.
  const auto report = zanj::verify(uri("runs/a.zanj"));
  EXPECT_TRUE(report.ok) << (report.problems.empty() ? "" : report.problems.front());
}

TEST_F(S3Test, OpeningCostsTwoRequestsAndALazyTensorOneOfItsOwnBytes) {
  zanj::Node tree = zanj::Node::dict();
  for (int i = 0; i < 4; ++i) tree["t" + std::to_string(i)] = torch::randn({1 << 18});  // 1 MiB
  zanj::save(tree, uri("lazy.zanj"));
  const auto before_open = requests();
  const auto bytes_before_open = s3::stats().bytes_received;
  const auto lazy = zanj::LazyFile::open(uri("lazy.zanj"));
  EXPECT_EQ(requests() - before_open, 2u);  // the tail, then the leading JSON entries
  EXPECT_LT(s3::stats().bytes_received - bytes_before_open, (1u << 20) + (64u << 10));
  const auto before_tensor = requests();
  const auto bytes_before = s3::stats().bytes_received;
  const at::Tensor t2 = lazy.tensor("t2");
  EXPECT_EQ(requests() - before_tensor, 1u);
  // Its bytes: the data, its .npy header and local header (a few hundred bytes).
  const auto fetched = s3::stats().bytes_received - bytes_before;
  EXPECT_GE(fetched, static_cast<std::uint64_t>(t2.nbytes()));
  EXPECT_LT(fetched, static_cast<std::uint64_t>(t2.nbytes()) + 512);
  EXPECT_TRUE(BitIdentical(t2, tree["t2"].tensor()));
}

TEST_F(S3Test, InjectedServerErrorsAndDroppedConnectionsAreRetried) {
  const zanj::Node tree = sample_tree();
  fault("error=3");
  zanj::save(tree, uri("retried.zanj"));
  fault("drop=3");
  EXPECT_TRUE(SameTree(zanj::read(uri("retried.zanj")), tree));
  // Past the attempts: a typed error naming the URI and the store's code.
  fault("error=100");
  try {
    zanj::read(uri("retried.zanj"));
    ADD_FAILURE() << "read through a failing store succeeded";
  } catch (const zanj::StorageError& e) {
    EXPECT_EQ(e.http_status(), 500);
    EXPECT_EQ(e.code(), "InternalError");
    EXPECT_THAT(e.what(), ::testing::HasSubstr(uri("retried.zanj")));
  }
}

TEST_F(S3Test, AServerDyingMidUploadLeavesNoObjectAndThePreviousOneReads) {
  const zanj::Node v1 = sample_tree(1000);
  zanj::save(v1, uri("ckpt.zanj"));
  fault("down_after=1");  // one part goes through, then the server is gone
  EXPECT_THROW(zanj::save(sample_tree(6 << 20), uri("ckpt.zanj")), zanj::StorageError);
  fault("up=1");  // back: the key holds what it held, and nothing else is visible
  EXPECT_EQ(keys(), std::vector<std::string>{"ckpt.zanj"});
  EXPECT_TRUE(SameTree(zanj::read(uri("ckpt.zanj")), v1));
  // A new object under a fresh key, same story.
  fault("down_after=1");
  EXPECT_THROW(zanj::save(sample_tree(6 << 20), uri("new.zanj")), zanj::StorageError);
  fault("up=1");
  EXPECT_EQ(keys(), std::vector<std::string>{"ckpt.zanj"});
}

TEST_F(S3Test, WrongCredentialsAndAMissingBucketAreTypedErrorsNamingTheURI) {
  EXPECT_THAT(
      [&] { zanj::read("s3://no-such-bucket-here/x.zanj"); },
      zanj_test::Throws<zanj::StorageError>("s3://no-such-bucket-here/x.zanj", "NoSuchBucket"));
  EXPECT_THAT([&] { zanj::read(uri("missing.zanj")); },
              zanj_test::Throws<zanj::StorageError>(uri("missing.zanj"), "no such file"));
  fault("key=AKIDRIGHT");
  try {
    zanj::save(sample_tree(10), uri("denied.zanj"));
    ADD_FAILURE() << "a save with the wrong key succeeded";
  } catch (const zanj::StorageError& e) {
    EXPECT_EQ(e.http_status(), 403);
    EXPECT_EQ(e.code(), "InvalidAccessKeyId");
    EXPECT_THAT(e.what(), ::testing::HasSubstr(uri("denied.zanj")));
    EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr(kSecret)));
  }
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDRIGHT", 1);
  zanj::save(sample_tree(10), uri("allowed.zanj"));
  EXPECT_EQ(keys(), std::vector<std::string>{"allowed.zanj"});
}

TEST_F(S3Test, CredentialsNeverAppearInAnyLogLine) {
  std::ostringstream log;
  auto previous = zanj::logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  auto logger = std::make_shared<spdlog::logger>("s3-test", sink);
  logger->set_level(spdlog::level::trace);
  zanj::set_logger(logger);
  std::string errors;
  try {
    fault("error=2");
    zanj::save(sample_tree(), uri("logged.zanj"));
    fault("drop=2");
    (void)zanj::read(uri("logged.zanj"));
    fault("key=AKIDOTHER");
    zanj::read(uri("logged.zanj"));
  } catch (const zanj::Error& e) {
    errors = e.what();
  }
  zanj::set_logger(previous);
  EXPECT_FALSE(errors.empty());
  EXPECT_THAT(log.str(), ::testing::HasSubstr("retried"));  // the log was on
  for (const std::string& text : {log.str(), errors}) {
    EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr(kSecret)));
    EXPECT_THAT(text, ::testing::Not(::testing::HasSubstr(kToken)));
  }
}

TEST_F(S3Test, PythonZipfileReadsAnObjectDownloadedFromTheStore) {
  const zanj::Node tree = sample_tree(5000);
  zanj::save(tree, uri("py.zanj"));
  TempDir dir;
  const auto bytes = zanj::detail::storage_for(uri("py.zanj")).read_if_exists(uri("py.zanj"));
  ASSERT_TRUE(bytes);
  zanj_test::write_bytes(dir.file("py.zanj"), *bytes);
  std::string out;
  EXPECT_EQ(
      zanj_test::run("/usr/bin/python3 -c \"import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]);"
                     " print(z.testzip(), sorted(z.namelist())[:2])\" " +
                         dir.file("py.zanj"),
                     &out),
      0);
  EXPECT_EQ(out, "None ['__zanj__.json', '__zanj_meta__.json']\n");
}

TEST_F(S3Test, TheManagerKeepsTheLastCheckpointsAndItsIndexInTheBucket) {
  zanj::CheckpointPolicy policy;
  policy.keep_last = 2;
  const std::string dir = uri("run1");
  {
    zanj::CheckpointManager manager(dir, policy);
    for (int step = 1; step <= 4; ++step) {
      zanj::Node tree = zanj::Node::dict();
      tree["w"] = torch::full({4}, static_cast<double>(step));
      manager.save(step, tree, {{"loss", 1.0 / step}});
    }
  }
  EXPECT_EQ(keys(), (std::vector<std::string>{"run1/checkpoints.json", "run1/ckpt-00000003.zanj",
                                              "run1/ckpt-00000004.zanj"}));
  zanj::CheckpointManager again(dir, policy);
  const auto latest = again.latest();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->step, 4);
  EXPECT_EQ(latest->metrics, nlohmann::json({{"loss", 0.25}}));
  EXPECT_TRUE(BitIdentical(zanj::read(latest->path)["w"].tensor(), torch::full({4}, 4.0)));
}

TEST_F(S3Test, TheCliListsVerifiesAndRefusesADamagedObject) {
  if (std::string(CONFIGURED_MODEL_ZANJ_CLI).empty()) GTEST_SKIP() << "built without the zanj tool";
  const std::string cli = CONFIGURED_MODEL_ZANJ_CLI;
  zanj::save(sample_tree(5000), uri("cli.zanj"));
  std::string out;
  EXPECT_EQ(zanj_test::run(cli + " ls " + uri("cli.zanj"), &out), 0);
  EXPECT_THAT(out, ::testing::HasSubstr("big"));
  EXPECT_EQ(zanj_test::run(cli + " verify " + uri("cli.zanj"), &out), 0);
  // One flipped byte in the tensor data: verify says damaged (exit 1), reading refuses.
  std::string bytes = *zanj::detail::storage_for(uri("cli.zanj")).read_if_exists(uri("cli.zanj"));
  bytes[bytes.size() / 2] ^= 0x20;
  zanj::detail::storage_for(uri("bad.zanj")).write_atomically(uri("bad.zanj"), bytes);
  EXPECT_EQ(zanj_test::run(cli + " verify " + uri("bad.zanj") + " 2>&1", &out), 1);
  EXPECT_THROW(zanj::read(uri("bad.zanj")), zanj::FormatError);
}

TEST_F(S3Test, SafetensorsAndTorchFilesGoThroughTheBucketToo) {
  const zanj::StateDict tensors = {{"a.weight", torch::randn({64, 3})},
                                   {"a.bias", torch::arange(7, torch::kInt32)},
                                   {"b", torch::randn({5}).to(torch::kBFloat16)}};
  zanj::save_safetensors(tensors, uri("w.safetensors"));
  const auto st = zanj::SafetensorsFile::open(uri("w.safetensors"));
  for (const auto& [key, t] : tensors) EXPECT_TRUE(BitIdentical(st.read_tensor(key), t)) << key;
  // A .zanj converted to torch.save's format in the bucket, read back the same.
  zanj::Node tree = zanj::Node::dict();
  for (const auto& [key, t] : tensors) tree[key] = t;
  zanj::save_weights(tree, uri("w.pt"), zanj::WeightsFormat::kTorch);
  const zanj::Node back = zanj::read_weights(uri("w.pt"));
  for (const auto& [key, t] : tensors) EXPECT_TRUE(BitIdentical(back.at(key).tensor(), t)) << key;
}

}  // namespace
