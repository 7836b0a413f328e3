// SPDX-License-Identifier: MIT
// Node: equality is bit-exact for tensors and exact for JSON, and first_difference says where.
#include <torch/torch.h>

#include <cmath>
#include <configured_model/errors.hpp>
#include <configured_model/file.hpp>
#include <configured_model/node.hpp>
#include <limits>

#include "test_support.hpp"

namespace {

zanj::Node sample_tree() {
  zanj::Node tree = zanj::Node::dict();
  tree["w"] = torch::arange(6, torch::kFloat32).reshape({2, 3});
  tree["meta"] = nlohmann::json{{"epoch", 3}, {"lr", 0.1}};
  tree["list"] = nlohmann::json::array({1, "two", nullptr});
  return tree;
}

TEST(NodeTest, EqualTreesCompareEqualAndDeepCopiesToo) {
  const zanj::Node a = sample_tree();
  zanj::Node b = sample_tree();
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a != b);
  EXPECT_EQ(zanj::first_difference(a, b), std::nullopt);
}

TEST(NodeTest, TensorsCompareByDtypeShapeAndBits) {
  const zanj::Node a = sample_tree();
  zanj::Node b = sample_tree();
  b["w"] = torch::arange(6, torch::kFloat64).reshape({2, 3});
  EXPECT_EQ(zanj::first_difference(a, b), "/w: Float [2, 3] vs Double [2, 3]");
  b["w"] = torch::arange(6, torch::kFloat32).reshape({3, 2});
  EXPECT_EQ(zanj::first_difference(a, b), "/w: Float [2, 3] vs Float [3, 2]");
  b["w"] = torch::arange(6, torch::kFloat32).reshape({2, 3}).clone();
  b.at("w").tensor()[1][2] = 5.5f;
  EXPECT_EQ(zanj::first_difference(a, b), "/w: Float [2, 3], bytes differ");
  // Bits, not values: -0.0 differs from 0.0, and a NaN equals the same NaN.
  EXPECT_NE(zanj::Node(torch::tensor({0.0})), zanj::Node(torch::tensor({-0.0})));
  const auto nan = torch::tensor({std::numeric_limits<double>::quiet_NaN()});
  EXPECT_EQ(zanj::Node(nan), zanj::Node(nan.clone()));
  // Non-contiguous views compare by their values in order.
  const auto t = torch::arange(6, torch::kInt64).reshape({2, 3});
  EXPECT_EQ(zanj::Node(t.t()), zanj::Node(t.t().contiguous()));
}

TEST(NodeTest, JsonScalarsCompareAsWritten) {
  zanj::Node a = zanj::Node::dict(), b = zanj::Node::dict();
  a["x"] = nlohmann::json(1);
  b["x"] = nlohmann::json(1.0);
  EXPECT_EQ(zanj::first_difference(a, b), "/x: 1 vs 1.0");
  b["x"] = nlohmann::json("1");
  EXPECT_EQ(zanj::first_difference(a, b), "/x: 1 vs \"1\"");
}

TEST(NodeTest, StructureDifferencesNameThePath) {
  const zanj::Node a = sample_tree();
  zanj::Node b = sample_tree();
  b.at("list").push_back(zanj::Node(nlohmann::json(4)));
  EXPECT_EQ(zanj::first_difference(a, b), "/list: 3 items vs 4");
  b = sample_tree();
  b.at("meta")["extra"] = nlohmann::json(true);
  EXPECT_EQ(zanj::first_difference(a, b), "/meta: 2 keys vs 3");
  b = sample_tree();
  b.erase("w");
  b["w"] = torch::arange(6, torch::kFloat32).reshape({2, 3});  // same items, other order
  EXPECT_EQ(zanj::first_difference(a, b), "/: key \"w\" vs \"meta\"");
  b = sample_tree();
  b["w"] = nlohmann::json(0);
  EXPECT_EQ(zanj::first_difference(a, b), "/w: Float [2, 3] vs 0");
}

TEST(NodeTest, IntKeyedDictsAreMarkedCheckedAndCompared) {
  for (const char* k : {"0", "7", "-3", "9223372036854775807", "-9223372036854775808"}) {
    EXPECT_TRUE(zanj::is_int_key(k)) << k;
  }
  for (const char* k : {"", "-", "-0", "01", "+1", "1.0", " 1", "9223372036854775808",
                        "-9223372036854775809", "12345678901234567890", "x"}) {
    EXPECT_FALSE(zanj::is_int_key(k)) << k;
  }
  zanj::Node state = zanj::Node::dict();
  state["0"] = nlohmann::json(1);
  state["12"] = nlohmann::json(2);
  zanj::Node texted = state;
  state.set_key_type(zanj::Node::KeyType::kInt);
  EXPECT_EQ(state.key_type(), zanj::Node::KeyType::kInt);
  EXPECT_NE(state, texted);
  EXPECT_EQ(zanj::first_difference(state, texted), "/: int keys vs str keys");
  zanj::Node copy = state;
  EXPECT_EQ(copy, state);
  zanj::Node named = zanj::Node::dict();
  named["lr"] = nlohmann::json(0.1);
  EXPECT_THROW(named.set_key_type(zanj::Node::KeyType::kInt), zanj::UsageError);
  EXPECT_EQ(named.key_type(), zanj::Node::KeyType::kString);
  EXPECT_THROW(zanj::Node(nlohmann::json(1)).set_key_type(zanj::Node::KeyType::kInt),
               zanj::UsageError);

  // Through .zanj: the keys stay text in __zanj__.json (as Python ZANJ writes an int-keyed
  // dict), the mark comes back from __zanj_meta__.json.
  zanj_test::TempDir dir;
  zanj::Node root = zanj::Node::dict();
  root["optimizer"] = zanj::Node::dict();
  root["optimizer"]["state"] = state;
  root["list"] = zanj::Node::list();
  root["list"].push_back(state);
  zanj::save(root, dir.file("k.zanj"));
  EXPECT_EQ(zanj::read(dir.file("k.zanj")), root);
}

}  // namespace
