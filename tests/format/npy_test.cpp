// SPDX-License-Identifier: MIT
#include <configured_model/errors.hpp>
#include <configured_model/json_text.hpp>
#include <configured_model/npy.hpp>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::BitIdentical;

using zanj_test::sample;

const std::map<std::string, torch::ScalarType> kDtypes = {
    {"torch.bool", torch::kBool},      {"torch.uint8", torch::kUInt8},
    {"torch.int8", torch::kInt8},      {"torch.int16", torch::kInt16},
    {"torch.int32", torch::kInt32},    {"torch.int64", torch::kInt64},
    {"torch.float16", torch::kHalf},   {"torch.float32", torch::kFloat32},
    {"torch.float64", torch::kFloat64}};

// Builds expected tensor from a manifest row (values flat in C order).
torch::Tensor expected_from(const nlohmann::ordered_json& row) {
  const auto dtype = row["dtype"].get<std::string>();
  std::vector<int64_t> shape = row["shape"].get<std::vector<int64_t>>();
  const auto& values = row["values"];
  const bool complex = dtype.find("complex") != std::string::npos;
  std::vector<double> re, im;
  for (const auto& v : values) {
    if (complex) {
      re.push_back(v[0].get<double>());
      im.push_back(v[1].get<double>());
    } else {
      re.push_back(v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>());
    }
  }
  const bool integral = dtype.find("int") != std::string::npos;
  if (integral) {
    // int64 extremes are not exact in double: read integers as integers.
    std::vector<int64_t> ints;
    for (const auto& v : values) ints.push_back(v.get<int64_t>());
    auto t = torch::tensor(ints, torch::kInt64).reshape(shape);
    return t.to(kDtypes.at(dtype));
  }
  auto r = torch::tensor(re, torch::kFloat64).reshape(shape);
  if (complex) {
    auto c = torch::complex(r, torch::tensor(im, torch::kFloat64).reshape(shape));
    return dtype == "torch.complex64" ? c.to(torch::kComplexFloat) : c;
  }
  // Integers up to 2^53 are exact in double, so the round trip through double is exact.
  return r.to(kDtypes.at(dtype));
}

TEST(NpyTest, DecodesEveryNumpyGoldenFile) {
  const std::string dir = zanj_test::data_dir() + "/npy/";
  const auto manifest =
      zanj::parse_json(zanj_test::read_bytes(dir + "manifest.json"), "manifest.json", "");
  ASSERT_GT(manifest.size(), 100u);
  for (const auto& row : manifest) {
    const auto file = row["file"].get<std::string>();
    SCOPED_TRACE(file);
    const auto t = zanj::decode_npy(zanj_test::read_bytes(dir + file), file);
    const auto want = expected_from(row);
    EXPECT_EQ(t.scalar_type(), want.scalar_type());
    EXPECT_EQ(t.sizes(), want.sizes());
    EXPECT_TRUE(t.is_contiguous());
    // Every golden value (including inf and -0.0) is exact in its dtype: compare bytes.
    EXPECT_TRUE(BitIdentical(t, want));
  }
}

TEST(NpyTest, RoundTripsEveryDtypeAndShapeBitForBit) {
  torch::manual_seed(1);
  const std::vector<std::vector<int64_t>> shapes = {{},     {0},    {1},       {7},
                                                    {3, 5}, {0, 4}, {2, 0, 3}, {2, 3, 4, 5}};
  for (auto dtype : zanj_test::all_dtypes()) {
    for (const auto& shape : shapes) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " " + c10::str(shape));
      const auto t = sample(dtype, shape);
      const std::string bytes = zanj::encode_npy(t);
      const auto h = zanj::parse_npy_header(bytes);
      EXPECT_EQ(h.data_offset % zanj::kNpyAlignment, 0u);
      EXPECT_EQ(h.major_version, 1);
      EXPECT_FALSE(h.fortran_order);
      auto back = zanj::decode_npy(bytes);
      if (dtype == torch::kBFloat16) {
        EXPECT_EQ(back.scalar_type(), torch::kFloat32);  // documented: exact <f4 payload
        back = back.to(torch::kBFloat16);
      }
      EXPECT_TRUE(BitIdentical(back, t));
    }
  }
}

TEST(NpyTest, RoundTripsLargeAndNonContiguousTensors) {
  const auto big = torch::randn({1024, 1024});
  EXPECT_TRUE(BitIdentical(zanj::decode_npy(zanj::encode_npy(big)), big));
  const auto transposed = torch::arange(12, torch::kInt64).reshape({3, 4}).t();
  EXPECT_TRUE(
      BitIdentical(zanj::decode_npy(zanj::encode_npy(transposed)), transposed.contiguous()));
}

TEST(NpyTest, KeepsNanPayloadsAndSignedZero) {
  auto t = torch::tensor({0.0, -0.0, std::nan("0x123"), -std::numeric_limits<double>::infinity()},
                         torch::kFloat64);
  EXPECT_TRUE(BitIdentical(zanj::decode_npy(zanj::encode_npy(t)), t));
}

TEST(NpyTest, WritesTheHeaderNumpyWrites) {
  const std::string bytes = zanj::encode_npy(torch::zeros({16, 20}));
  const std::string header = bytes.substr(10, 118);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_THAT(header, HasSubstr("{'descr': '<f4', 'fortran_order': False, 'shape': (16, 20), }"));
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(zanj::npy_header("<i8", {3}).find("(3,)") != std::string::npos, true);
}

std::string valid() { return zanj::encode_npy(torch::arange(6, torch::kFloat32)); }

std::string with_header(const std::string& dict) { return zanj_test::npy_with_header(dict); }

TEST(NpyTest, RejectsBadMagic) {
  std::string b = valid();
  b[1] = 'X';
  EXPECT_THROW(zanj::decode_npy(b, "f.zanj", "a.npy"), zanj::FormatError);
}

TEST(NpyTest, RejectsTruncationAtEveryLength) {
  const std::string b = valid();
  for (std::size_t n = 0; n < b.size(); ++n) {
    EXPECT_THROW(zanj::decode_npy(b.substr(0, n)), zanj::FormatError) << "length " << n;
  }
}

TEST(NpyTest, RejectsHeadersThatLie) {
  // More data than the shape says, less data, wrong version, object dtype, uint64.
  EXPECT_THROW(zanj::decode_npy(valid() + "xxxx"), zanj::FormatError);
  EXPECT_THAT(
      [&] {
        zanj::decode_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }") +
                             std::string(24, '\0'),
                         "f.zanj", "w.npy");
      },
      zanj_test::Throws<zanj::FormatError>("f.zanj: w.npy: ", "expected 28 data bytes, found 24"));
  std::string v4 = valid();
  v4[6] = 4;
  EXPECT_THROW(zanj::decode_npy(v4), zanj::FormatError);
  EXPECT_THAT(
      [&] {
        zanj::decode_npy(with_header("{'descr': '|O', 'fortran_order': False, 'shape': (0,), }"));
      },
      zanj_test::Throws<zanj::FormatError>("pickle"));
  EXPECT_THROW(
      zanj::decode_npy(with_header("{'descr': '<u8', 'fortran_order': False, 'shape': (0,), }")),
      zanj::FormatError);
  EXPECT_THROW(zanj::decode_npy(with_header("{'descr': '<f4', 'shape': (0,), }")),
               zanj::FormatError);
  EXPECT_THROW(zanj::decode_npy(with_header(
                   "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (0,), }")),
               zanj::FormatError);
  EXPECT_THROW(zanj::decode_npy(
                   with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), 'x': 1}")),
               zanj::FormatError);
  EXPECT_THROW(
      zanj::decode_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")),
      zanj::FormatError);
  EXPECT_THROW(zanj::decode_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                            "(4294967296, 4294967296, 4294967296), }")),
               zanj::FormatError);
}

TEST(NpyTest, RefusesHugeDimensionsBesideAZero) {
  // Found by fuzzing: the element count is 0, but torch cannot allocate the shape.
  EXPECT_THAT(
      [&] {
        zanj::decode_npy(with_header("{'descr': '|i2', 'fortran_order': True, 'shape': (0, "
                                     "800000000709951329, 6, 4), }"),
                         "f.zanj", "x.npy");
      },
      zanj_test::Throws<zanj::FormatError>(
          "f.zanj: x.npy: shape (0, 800000000709951329, 6, 4) overflows"));
  EXPECT_EQ(zanj::decode_npy(
                with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1000000), }"))
                .sizes(),
            at::IntArrayRef({0, 1000000}));
}

TEST(NpyTest, BoolBytesOtherThanZeroOrOneBecomeTrue) {
  std::string b = zanj::encode_npy(torch::tensor({false, true, false}));
  b[b.size() - 1] = 7;
  const auto t = zanj::decode_npy(b);
  EXPECT_TRUE(torch::equal(t, torch::tensor({false, true, true})));
}

}  // namespace
