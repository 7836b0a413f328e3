// SPDX-License-Identifier: MIT
// A run stopped and resumed in a new process ends bit-identical to the straight run, for every
// optimizer (model, optimizer state, scheduler, counters, RNG, records).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <configured_model/configured_model.hpp>
#include <thread>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;
using zanj_test::TempDir;
using zanj_test::TrainNet;
using zanj_test::TrainNetConfig;

std::string helper() { return CONFIGURED_MODEL_TRAINING_HELPER; }

class ResumeExactnessTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeExactnessTest, StoppingAndResumingInANewProcessIsBitIdentical) {
  TempDir dir;
  const std::string opt = GetParam();
  const std::string straight = dir.file("straight.zanj");
  const std::string half = dir.file("half.zanj");
  const std::string resumed = dir.file("resumed.zanj");
  ASSERT_EQ(zanj_test::run(helper() + " train " + opt + " 10 " + straight), 0);
  ASSERT_EQ(zanj_test::run(helper() + " train " + opt + " 10 unused --stop-at 5 " + half), 0);
  ASSERT_EQ(zanj_test::run(helper() + " resume " + half + " 10 " + resumed), 0);
  const auto a = zanj::read(straight);
  const auto b = zanj::read(resumed);
  // Model, losses, optimizer state, scheduler, counters, RNG state: all of it.
  EXPECT_TRUE(zanj_test::SameTree(a, b));
  EXPECT_EQ(a.at("training_state").at("optimizer").at("type").scalar(), opt);
  EXPECT_EQ(a.at("training_state").at("counters").at("step").scalar(), 10);
  EXPECT_EQ(a.at("training_records").at("loss").size(), 10u);
  EXPECT_EQ(a.at("training_state").at("scheduler").at("state").at("step_count").scalar(), 10);
  // And the file stays readable the way Python ZANJ reads it.
  if (zanj_test::python_has("numpy")) {
    EXPECT_EQ(zanj_test::run("/usr/bin/python3 " + zanj_test::scripts_dir() +
                             "/check_checkpoint.py " + straight + " 2>&1"),
              0);
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ResumeExactnessTest,
                         ::testing::Values("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

}  // namespace
