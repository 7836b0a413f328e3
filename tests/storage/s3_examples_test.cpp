// SPDX-License-Identifier: MIT
// Both examples with their checkpoints in a bucket (s3_server.hpp): a run stopped and resumed
// from the bucket ends where the straight run ends.
#include <configured_model/checkpoint_manager.hpp>
#include <configured_model/distributed.hpp>

#include "s3_server.hpp"

namespace {

class S3ExamplesTest : public S3Test {};

// The last line of a run: "final_state_digest=<hex>".
std::string digest_of(const std::string& output) {
  const auto at = output.rfind("final_state_digest=");
  return at == std::string::npos ? std::string() : output.substr(at);
}

TEST_F(S3ExamplesTest, TheExamplesResumeFromABucketExactlyAsAStraightRun) {
  const std::string mlp = CONFIGURED_MODEL_MLP_EXAMPLE, ddp = CONFIGURED_MODEL_DDP_EXAMPLE;
  if (mlp.empty()) GTEST_SKIP() << "built without the examples";
  // A straight run to 40 steps and one stopped at 20 then resumed to 40, in a bucket: the same
  // final digest.
  auto straight_vs_resumed = [&](const std::string& example, const std::string& prefix,
                                 const std::string& first_flags) {
    const std::string run = example + " --ckpt-dir " + uri(prefix);
    std::string straight, first, resumed;
    ASSERT_EQ(zanj_test::run(run + "/straight --steps 40 --save-every 20 2>/dev/null", &straight),
              0);
    ASSERT_EQ(
        zanj_test::run(run + "/split --steps 20 --save-every 20 " + first_flags + " 2>/dev/null",
                       &first),
        0);
    ASSERT_EQ(
        zanj_test::run(run + "/split --steps 40 --save-every 20 --resume 2>/dev/null", &resumed),
        0);
    EXPECT_FALSE(digest_of(straight).empty());
    EXPECT_EQ(digest_of(resumed), digest_of(straight)) << example;
    EXPECT_NE(digest_of(first), digest_of(straight)) << example;
  };
  straight_vs_resumed(mlp, "mlp", "--async");
  if (ddp.empty()) return;
  // Every rank uploads its own file; rank 0 commits the index last.
  straight_vs_resumed(ddp + " --world-size 2", "ddp", "");
  const auto listed = zanj::list_checkpoints(uri("ddp/split"));
  ASSERT_FALSE(listed.empty());
  EXPECT_EQ(listed.back().path, uri("ddp/split/ckpt-00000040"));
  EXPECT_TRUE(zanj::is_distributed_checkpoint(listed.back().path));
}

}  // namespace
