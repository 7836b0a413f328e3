// SPDX-License-Identifier: MIT
#include <cmath>
#include <configured_model/errors.hpp>
#include <configured_model/json_text.hpp>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using ojson = nlohmann::ordered_json;

TEST(JsonTextTest, FormatsDoublesLikePythonRepr) {
  // Expected strings are Python 3.11's repr(float(x)).
  EXPECT_EQ(zanj::format_double(1.0), "1.0");
  EXPECT_EQ(zanj::format_double(-0.0), "-0.0");
  EXPECT_EQ(zanj::format_double(100.0), "100.0");
  EXPECT_EQ(zanj::format_double(1e-05), "1e-05");
  EXPECT_EQ(zanj::format_double(0.0001), "0.0001");
  EXPECT_EQ(zanj::format_double(1e16), "1e+16");
  EXPECT_EQ(zanj::format_double(1.5e16), "1.5e+16");
  EXPECT_EQ(zanj::format_double(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(zanj::format_double(0.1), "0.1");
  EXPECT_EQ(zanj::format_double(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(zanj::format_double(static_cast<double>(1.0f / 3.0f)), "0.3333333432674408");
  EXPECT_EQ(zanj::format_double(5e-324), "5e-324");
  EXPECT_EQ(zanj::format_double(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(zanj::format_double(NAN), "NaN");
  EXPECT_EQ(zanj::format_double(-INFINITY), "-Infinity");
}

TEST(JsonTextTest, DumpsLikePythonJsonDumpsWithTabIndent) {
  ojson j = ojson::object();
  j["a"] = 1;
  j["b"] = ojson::array({1.5, "h\u00e9llo \u2603", nullptr, true});
  j["c"] = ojson::object();
  j["d"] = ojson::array();
  j["e"] = NAN;
  // json.dumps({"a": 1, "b": [1.5, "h\xe9llo \u2603", None, True], "c": {}, "d": [],
  //             "e": float("nan")}, indent="\t")
  EXPECT_EQ(
      zanj::dump_json(j),
      "{\n\t\"a\": 1,\n\t\"b\": [\n\t\t1.5,\n\t\t\"h\\u00e9llo \\u2603\",\n\t\tnull,\n\t\ttrue\n"
      "\t],\n\t\"c\": {},\n\t\"d\": [],\n\t\"e\": NaN\n}");
  EXPECT_EQ(zanj::dump_json(j, zanj::JsonStyle::kLine),
            "{\"a\": 1, \"b\": [1.5, \"h\\u00e9llo \\u2603\", null, true], \"c\": {}, \"d\": [], "
            "\"e\": NaN}");
}

TEST(JsonTextTest, ParsesPythonNonFiniteTokensOutsideStringsOnly) {
  const auto j = zanj::parse_json(
      R"({"a": NaN, "b": [Infinity, -Infinity, 1], "s": "NaN Infinity", "t": "x\"NaN"})", "f", "e");
  EXPECT_TRUE(std::isnan(j["a"].get<double>()));
  EXPECT_EQ(j["b"][0].get<double>(), INFINITY);
  EXPECT_EQ(j["b"][1].get<double>(), -INFINITY);
  EXPECT_EQ(j["b"][2].get<int>(), 1);
  EXPECT_EQ(j["s"], "NaN Infinity");
  EXPECT_EQ(j["t"], "x\"NaN");
}

TEST(JsonTextTest, RoundTripsNonFiniteValues) {
  ojson j = ojson::array({NAN, INFINITY, -INFINITY, 0.1, -0.0});
  const auto back = zanj::parse_json(zanj::dump_json(j), "f", "e");
  EXPECT_TRUE(std::isnan(back[0].get<double>()));
  EXPECT_EQ(back[1].get<double>(), INFINITY);
  EXPECT_EQ(back[2].get<double>(), -INFINITY);
  EXPECT_EQ(back[3].get<double>(), 0.1);
  EXPECT_TRUE(std::signbit(back[4].get<double>()));
}

TEST(JsonTextTest, ErrorsNameFileAndEntry) {
  EXPECT_THAT([&] { zanj::parse_json("{\"a\": [1, 2", "run.zanj", "__zanj__.json"); },
              zanj_test::Throws<zanj::FormatError>("run.zanj: __zanj__.json: malformed JSON"));
}

TEST(JsonTextTest, RefusesNestingBeyondTheLimit) {
  const std::string deep = std::string(600, '[') + std::string(600, ']');
  EXPECT_THROW(zanj::parse_json(deep, "f", "e"), zanj::FormatError);
  zanj::JsonLimits limits;
  limits.max_depth = 1000;
  EXPECT_NO_THROW(zanj::parse_json(deep, "f", "e", limits));
}

TEST(JsonTextTest, RefusesTheReservedSentinel) {
  EXPECT_THROW(zanj::parse_json(R"(["\u0000zanj:NaN"])", "f", "e"), zanj::FormatError);
}

TEST(JsonTextTest, DuplicateKeysAreRefusedNamingTheKey) {
  EXPECT_THAT([] { zanj::parse_json(R"({"a": 1, "b": {"c": 2, "c": 3}})", "f.zanj", "e.json"); },
              zanj_test::Throws<zanj::FormatError>("f.zanj", "e.json",
                                                   "duplicate key \"c\" in a JSON object"));
  // The same key in different objects, or twice in a list of objects, is fine.
  const auto ok = zanj::parse_json(R"({"a": {"x": 1}, "b": {"x": 2}, "l": [{"x": 1}, {"x": 2}]})",
                                   "f.zanj", "e.json");
  EXPECT_EQ(ok["b"]["x"], 2);
  EXPECT_EQ(ok["l"][1]["x"], 2);
}

}  // namespace
