// SPDX-License-Identifier: MIT
// The resume matrix: the mlp example trained straight equals the same run stopped and resumed in
// a new process, bit for bit, across optimizers, param-group layouts, dtypes, where the
// checkpoint falls in an epoch, and whether the DataLoader is built before or after resuming.
// ResumeMatrixTest runs a representative slice; ResumeFullMatrixTest (labels slow, matrix; not
// in CI) runs every cell.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using zanj_test::TempDir;

struct Cell {
  std::string optimizer;  // sgd adam adamw rmsprop adagrad lbfgs
  std::string layout;     // one, two (param groups), frozen (first layer not optimized)
  std::string dtype;      // float32 float64 bfloat16
  std::string position;   // mid (mid-epoch), end (the last batch of an epoch)
  std::string loader;     // after, before (built relative to resuming)
};

std::string name_of(const Cell& c) {
  return c.optimizer + "_" + c.layout + "_" + c.dtype + "_" + c.position + "_" + c.loader;
}

// 200 samples in batches of 32: 7 steps an epoch (the last one of 8 samples).
constexpr int kStraight = 20;
int stop_at(const Cell& c) { return c.position == "mid" ? 10 : 14; }

std::string flags(const Cell& c) {
  std::string f = " --optimizer " + c.optimizer + " --dtype " + c.dtype +
                  " --dataset-size 200 --batch-size 32 --save-every 5";
  if (c.layout == "two") f += " --param-groups 2";
  if (c.layout == "frozen") f += " --freeze-first-layer";
  return f;
}

// Runs the example, returns its final_state_digest line ("" when it failed).
std::string digest(const std::string& args) {
  std::string out;
  const int rc = zanj_test::run(std::string(CONFIGURED_MODEL_MLP_EXAMPLE) + args, &out);
  EXPECT_EQ(rc, 0) << args << "\n" << out;
  std::smatch m;
  return std::regex_search(out, m, std::regex("final_state_digest=[0-9a-f]+")) ? m.str() : "";
}

void check(const Cell& c) {
  TempDir dir;
  const std::string f = flags(c);
  const std::string straight =
      digest(" --ckpt-dir " + dir.file("straight") + " --steps " + std::to_string(kStraight) + f);
  const std::string first =
      digest(" --ckpt-dir " + dir.file("split") + " --steps " + std::to_string(stop_at(c)) + f);
  const std::string resumed =
      digest(" --ckpt-dir " + dir.file("split") + " --steps " + std::to_string(kStraight) +
             " --resume" + (c.loader == "before" ? " --build-loader-first" : "") + f);
  ASSERT_FALSE(straight.empty());
  EXPECT_NE(first, straight) << "the first part already ends where the whole run does";
  EXPECT_EQ(resumed, straight);
}

class ResumeMatrixTest : public ::testing::TestWithParam<Cell> {};
TEST_P(ResumeMatrixTest, ResumedEqualsStraight) { check(GetParam()); }

// Every optimizer once, every layout, dtype, position and loader order at least twice.
INSTANTIATE_TEST_SUITE_P(Slice, ResumeMatrixTest,
                         ::testing::Values(Cell{"sgd", "one", "float32", "mid", "after"},
                                           Cell{"adam", "two", "float64", "end", "after"},
                                           Cell{"adamw", "frozen", "bfloat16", "mid", "before"},
                                           Cell{"rmsprop", "two", "float32", "end", "before"},
                                           Cell{"adagrad", "frozen", "float64", "mid", "after"},
                                           Cell{"lbfgs", "one", "bfloat16", "end", "after"},
                                           Cell{"lbfgs", "frozen", "float32", "mid", "before"}),
                         [](const ::testing::TestParamInfo<Cell>& p) { return name_of(p.param); });

std::vector<Cell> every_cell() {
  std::vector<Cell> out;
  for (const char* o : {"sgd", "adam", "adamw", "rmsprop", "adagrad", "lbfgs"})
    for (const char* l : {"one", "two", "frozen"})
      for (const char* d : {"float32", "float64", "bfloat16"})
        for (const char* p : {"mid", "end"})
          for (const char* b : {"after", "before"}) {
            if (std::string(o) == "lbfgs" && std::string(l) == "two") continue;  // one group only
            out.push_back({o, l, d, p, b});
          }
  return out;
}

class ResumeFullMatrixTest : public ::testing::TestWithParam<Cell> {};
TEST_P(ResumeFullMatrixTest, ResumedEqualsStraight) { check(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Every, ResumeFullMatrixTest, ::testing::ValuesIn(every_cell()),
                         [](const ::testing::TestParamInfo<Cell>& p) { return name_of(p.param); });

}  // namespace
