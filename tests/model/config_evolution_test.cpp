// SPDX-License-Identifier: MIT
// Configs that change between the code that saved a model and the code that reads it: added and
// removed fields (reported and logged), renamed ones (a version and an upgrade function), a
// version from the future, a required field the file lacks, std::optional fields.
#include <torch/torch.h>

#include <configured_model/configured_model.hpp>
#include <optional>

#include "test_support.hpp"

namespace evolving {

// Version 1, as an older release of the code declared it.
struct ConfigV1 {
  int64_t width = 4;
  std::string note = "v1";
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ConfigV1, width, note)

// Version 2: `width` renamed `hidden`, `note` dropped, `depth` added.
struct ConfigV2 {
  static constexpr int zanj_config_version = 2;
  static nlohmann::json zanj_upgrade_config(nlohmann::json stored, int from_version) {
    if (from_version < 2) {
      stored["hidden"] = stored.at("width");
      stored.erase("width");
    }
    return stored;
  }
  int64_t hidden = 8;
  int64_t depth = 1;
  std::optional<double> dropout;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ConfigV2, hidden, depth, dropout)

// A strict config (no defaults) with a field the V1 files lack.
struct Strict {
  int64_t width = 4;
  int64_t heads = 2;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Strict, width, heads)

template <class Config>
class Net : public zanj::ConfiguredModel<Net<Config>, Config> {
 public:
  explicit Net(Config c) : zanj::ConfiguredModel<Net<Config>, Config>(std::move(c)) {
    fc = this->register_module("fc", torch::nn::Linear(3, width(this->config())));
  }
  static std::string zanj_class_name() { return "Evolving"; }
  static int64_t width(const ConfigV1& c) { return c.width; }
  static int64_t width(const ConfigV2& c) { return c.hidden; }
  static int64_t width(const Strict& c) { return c.width; }
  torch::nn::Linear fc{nullptr};
};

}  // namespace evolving

namespace {

using evolving::ConfigV1;
using evolving::ConfigV2;
using evolving::Net;
using zanj_test::TempDir;

TEST(ConfigEvolutionTest, ARenamedFieldIsUpgradedAndDroppedAndAddedFieldsAreReported) {
  TempDir dir;
  auto old = std::make_shared<Net<ConfigV1>>(ConfigV1{5, "hello"});
  old->save(dir.file("v1.zanj"));
  zanj::ConfigReport report;
  zanj::ReadOptions options;
  options.config_report = &report;
  auto now = Net<ConfigV2>::read(dir.file("v1.zanj"), options);
  EXPECT_EQ(now->config().hidden, 5);  // width, renamed by the upgrade
  EXPECT_EQ(now->config().depth, 1);   // not stored: its default
  EXPECT_TRUE(zanj_test::BitIdentical(now->fc->weight, old->fc->weight));
  EXPECT_TRUE(report.upgraded);
  EXPECT_EQ(report.stored_version, 0);
  EXPECT_EQ(report.unknown_fields, std::vector<std::string>{"note"});
  EXPECT_EQ(report.defaulted_fields, (std::vector<std::string>{"depth", "dropout"}));
  // Saved again, the file records version 2 and reads without an upgrade.
  now->save(dir.file("v2.zanj"));
  EXPECT_EQ(zanj::read(dir.file("v2.zanj")).at("meta").at("config_version").scalar(), 2);
  zanj::ConfigReport again;
  options.config_report = &again;
  Net<ConfigV2>::read(dir.file("v2.zanj"), options);
  EXPECT_FALSE(again.upgraded);
  EXPECT_EQ(again.stored_version, 2);
  EXPECT_TRUE(again.unknown_fields.empty());
  EXPECT_TRUE(again.defaulted_fields.empty());
}

TEST(ConfigEvolutionTest, AConfigFromANewerVersionIsAVersionError) {
  TempDir dir;
  auto model = std::make_shared<Net<ConfigV2>>(ConfigV2{});
  auto tree = model->to_node();
  tree.at("meta") = nlohmann::json{{"config_version", 3}};
  zanj::save(tree, dir.file("v3.zanj"));
  EXPECT_THAT([&] { Net<ConfigV2>::read(dir.file("v3.zanj")); },
              zanj_test::Throws<zanj::VersionError>(
                  "v3.zanj: meta/config_version", "saved at version 3, newer than this code's 2"));
}

TEST(ConfigEvolutionTest, AMissingRequiredFieldNamesItAndTheMacro) {
  TempDir dir;
  std::make_shared<Net<ConfigV1>>(ConfigV1{})->save(dir.file("v1.zanj"));
  EXPECT_THAT(
      [&] { Net<evolving::Strict>::read(dir.file("v1.zanj")); },
      zanj_test::Throws<zanj::ConfigError>("v1.zanj: zanj_model_config", "field 'heads': missing",
                                           "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT"));
}

TEST(ConfigEvolutionTest, OptionalFieldsRoundTrip) {
  TempDir dir;
  ConfigV2 c;
  c.dropout = 0.25;
  std::make_shared<Net<ConfigV2>>(c)->save(dir.file("a.zanj"));
  EXPECT_EQ(Net<ConfigV2>::read(dir.file("a.zanj"))->config().dropout, 0.25);
  std::make_shared<Net<ConfigV2>>(ConfigV2{})->save(dir.file("b.zanj"));
  EXPECT_FALSE(Net<ConfigV2>::read(dir.file("b.zanj"))->config().dropout.has_value());
}

}  // namespace
