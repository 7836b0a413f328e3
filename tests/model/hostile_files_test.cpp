// SPDX-License-Identifier: MIT
// Hostile and broken files, table-driven: each row builds a file and names the exact error type.
// Whatever the damage, reading ends in a zanj::Error, never a crash or another exception.
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"
#include "train_net.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::TempDir;

enum class Expect { kFormat, kConfig, kStateMismatch, kVersion, kNone };

const char* name(Expect e) {
  switch (e) {
    case Expect::kFormat:
      return "FormatError";
    case Expect::kConfig:
      return "ConfigError";
    case Expect::kStateMismatch:
      return "StateMismatchError";
    case Expect::kVersion:
      return "VersionError";
    case Expect::kNone:
      return "no error";
  }
  return "?";
}

// Which zanj::Error a read of `bytes` as a TrainNet ends in.
Expect classify(const std::string& bytes, std::string* message = nullptr,
                const zanj::ReadOptions& options = {}) {
  try {
    const auto archive =
        zanj::ArchiveReader::from_bytes(bytes, "hostile.zanj", options.archive_limits);
    const auto root = zanj::read(archive, options);
    zanj_test::TrainNet::from_node(root, "hostile.zanj", options);
    return Expect::kNone;
  } catch (const zanj::FormatError& e) {
    if (message) *message = e.what();
    return Expect::kFormat;
  } catch (const zanj::ConfigError& e) {
    if (message) *message = e.what();
    return Expect::kConfig;
  } catch (const zanj::StateMismatchError& e) {
    if (message) *message = e.what();
    return Expect::kStateMismatch;
  } catch (const zanj::VersionError& e) {
    if (message) *message = e.what();
    return Expect::kVersion;
  }
  // Any other exception escapes and fails the test.
}

// A small valid checkpoint (one external .npy) and its pieces, to edit.
struct Checkpoint {
  std::string bytes;
  nlohmann::ordered_json tree, meta;
  std::map<std::string, std::string> externals;

  static Checkpoint make() {
    TempDir dir;
    torch::manual_seed(11);
    const zanj_test::TrainNetConfig c{10, 32, 2, 0.3};  // fc1.weight (320 elements) goes external
    zanj_test::TrainNet(c).save(dir.file("m.zanj"));
    Checkpoint cp;
    cp.bytes = zanj_test::read_bytes(dir.file("m.zanj"));
    const auto a = zanj::ArchiveReader::from_bytes(cp.bytes, "m");
    cp.tree = zanj::parse_json(a.read("__zanj__.json"), "", "");
    cp.meta = zanj::parse_json(a.read("__zanj_meta__.json"), "", "");
    for (const auto& e : a.entries()) {
      if (e.name.find(".npy") != std::string::npos) cp.externals[e.name] = a.read(e.name);
    }
    return cp;
  }

  // Rebuilds a zip from the (edited) parts.
  std::string build(const std::vector<std::pair<std::string, std::string>>& extra = {}) const {
    TempDir dir;
    zanj::ArchiveWriter w(dir.file("x.zanj"));
    w.add("__zanj_meta__.json", zanj::dump_json(meta), zanj::Compression::kStored);
    w.add("__zanj__.json", zanj::dump_json(tree), zanj::Compression::kStored);
    for (const auto& [n, b] : externals) w.add(n, b, zanj::Compression::kStored);
    for (const auto& [n, b] : extra) w.add(n, b, zanj::Compression::kStored);
    w.commit();
    return zanj_test::read_bytes(dir.file("x.zanj"));
  }
};

const std::string kW = "state_dict/fc1.weight.npy";

struct Row {
  std::string what;
  std::function<std::string(Checkpoint&)> make;
  Expect expect;
  std::string message;  // substring of the error, naming the entry or key
};

// The same data under another header.
std::string with_npy_header(const std::string& npy, const std::string& dict) {
  return zanj_test::npy_with_header(dict, npy.substr(zanj::parse_npy_header(npy).data_offset));
}

TEST(HostileFilesTest, EveryRowEndsInItsErrorType) {
  const std::vector<Row> rows = {
      {"valid file", [](Checkpoint& c) { return c.build(); }, Expect::kNone, ""},
      {"npy header lies about the shape",
       [](Checkpoint& c) {
         c.externals[kW] = with_npy_header(
             c.externals[kW], "{'descr': '<f4', 'fortran_order': False, 'shape': (32, 11), }");
         return c.build();
       },
       Expect::kFormat, kW + ": header says shape (32, 11)"},
      {"npy object dtype",
       [](Checkpoint& c) {
         c.externals[kW] = with_npy_header(
             c.externals[kW], "{'descr': '|O', 'fortran_order': False, 'shape': (32, 10), }");
         return c.build();
       },
       Expect::kFormat, "need pickle"},
      {"npy big-endian is read correctly",
       [](Checkpoint& c) {
         auto t = zanj::decode_npy(c.externals[kW]);
         std::string be = with_npy_header(
             c.externals[kW], "{'descr': '>f4', 'fortran_order': False, 'shape': (32, 10), }");
         const auto off = zanj::parse_npy_header(be).data_offset;
         for (std::size_t i = off; i + 4 <= be.size(); i += 4)
           std::reverse(be.begin() + static_cast<long>(i), be.begin() + static_cast<long>(i) + 4);
         c.externals[kW] = be;
         return c.build();
       },
       Expect::kNone, ""},
      {"$ref to a missing entry",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc1.weight"]["$ref"] = "state_dict/gone.npy";
         return c.build();
       },
       Expect::kFormat, "state_dict/fc1.weight: '$ref' names entry state_dict/gone.npy"},
      {"$ref to an absolute path",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc1.weight"]["$ref"] = "/etc/passwd";
         return c.build();
       },
       Expect::kFormat, "'$ref' names entry /etc/passwd, which the archive does not contain"},
      {"$ref climbing out with ../",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc1.weight"]["$ref"] = "../../" + kW;
         return c.build();
       },
       Expect::kFormat, "which the archive does not contain"},
      {"external listed but absent",
       [](Checkpoint& c) {
         c.externals.erase(kW);
         return c.build();
       },
       Expect::kFormat, kW + ": listed in externals_info but absent"},
      {"entry present but not listed (reverse): read with a warning",
       [](Checkpoint& c) {
         c.meta["externals_info"] = nlohmann::ordered_json::object();
         return c.build();
       },
       Expect::kNone, ""},
      {"two entries with one name",
       [](Checkpoint&) {
         // Python's zipfile writes this (with a warning); our writer refuses to.
         return zanj_test::read_bytes(zanj_test::data_dir() + "/hostile/duplicate_names.zip");
       },
       Expect::kFormat, "duplicate entry name"},
      {"unknown tag at the root",
       [](Checkpoint& c) {
         c.tree["__muutils_format__"] = "SomethingElse";
         return c.build();
       },
       Expect::kStateMismatch, "model class mismatch (expected 'TrainNet', found 'SomethingElse')"},
      {"unknown tag inside stays a dict: state_dict entry is not a tensor",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc1.bias"]["__muutils_format__"] = "mystery.Type";
         return c.build();
       },
       Expect::kFormat, "state_dict/fc1.bias: expected a tensor"},
      {"config field of the wrong JSON type",
       [](Checkpoint& c) {
         c.tree["zanj_model_config"]["in"] = "ten";
         return c.build();
       },
       Expect::kConfig, "field 'in': expected integer, found string"},
      {"config field missing",
       [](Checkpoint& c) {
         c.tree["zanj_model_config"].erase("dropout");
         return c.build();
       },
       Expect::kConfig, "field 'dropout': missing"},
      {"state_dict tensor of the wrong shape",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc2.bias"]["data"] = {1.0, 2.0, 3.0};
         c.tree["state_dict"]["fc2.bias"]["shape"] = {3};
         return c.build();
       },
       Expect::kStateMismatch, "shape mismatch: fc2.bias (expected [2], found [3])"},
      {"state_dict tensor in another floating dtype: the model is built in it",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc2.bias"]["dtype"] = "float64";
         return c.build();
       },
       Expect::kNone, ""},
      {"state_dict tensor of a non-floating dtype where the model has a float",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc2.bias"]["dtype"] = "int64";
         c.tree["state_dict"]["fc2.bias"]["data"] = {1, 2};
         return c.build();
       },
       Expect::kStateMismatch, "dtype mismatch: fc2.bias (expected Float, found Long)"},
      {"NaN tokens where numbers are legal",
       [](Checkpoint& c) {
         c.tree["state_dict"]["fc2.bias"]["data"] = {NAN, -INFINITY};
         return c.build();
       },
       Expect::kNone, ""},
      {"NaN where an integer is required",
       [](Checkpoint& c) {
         c.tree["zanj_model_config"]["hidden"] = NAN;
         return c.build();
       },
       Expect::kConfig, "field 'hidden'"},
      {"a format version from the future",
       [](Checkpoint& c) {
         c.meta["configured_model"]["format_version"] = 1000;
         return c.build();
       },
       Expect::kVersion, "format version 1000 is newer"},
      {"a 50 MB JSON string is read (under the 256 MiB limit)",
       [](Checkpoint& c) {
         c.tree["training_records"] = std::string(50u << 20, 'x');
         return c.build();
       },
       Expect::kNone, ""},
      {"not a zip at all", [](Checkpoint&) { return std::string(1000, 'z'); }, Expect::kFormat,
       "not a valid zip archive"},
      {"empty file", [](Checkpoint&) { return std::string(); }, Expect::kFormat,
       "shorter than the 22-byte end record"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.what);
    Checkpoint cp = Checkpoint::make();
    std::string message;
    const Expect got = classify(row.make(cp), &message);
    EXPECT_EQ(name(got), std::string(name(row.expect))) << message;
    if (!row.message.empty()) {
      EXPECT_THAT(message, HasSubstr(row.message));
    }
    if (got != Expect::kNone) {
      EXPECT_THAT(message, HasSubstr("hostile.zanj"));
    }
  }
}

TEST(HostileFilesTest, AJsonSizeLimitRefusesHugeTrees) {
  Checkpoint cp = Checkpoint::make();
  cp.tree["training_records"] = std::string(50u << 20, 'x');
  zanj::ReadOptions options;
  options.json_limits.max_bytes = 16u << 20;
  std::string message;
  EXPECT_EQ(classify(cp.build(), &message, options), Expect::kFormat);
  EXPECT_THAT(message, HasSubstr("hostile.zanj: __zanj__.json: JSON text of"));
}

TEST(HostileFilesTest, TruncationAtEveryByteNeverCrashes) {
  const Checkpoint cp = Checkpoint::make();
  ASSERT_EQ(classify(cp.bytes), Expect::kNone);
  for (std::size_t n = 0; n < cp.bytes.size(); ++n) {
    std::string message;
    const Expect got = classify(cp.bytes.substr(0, n), &message);
    ASSERT_NE(got, Expect::kNone) << "truncated to " << n << " bytes and still read";
  }
}

TEST(HostileFilesTest, BitFlipsInTensorDataAreCaughtByCrc) {
  const Checkpoint cp = Checkpoint::make();
  const auto npy_at = cp.bytes.find("\x93NUMPY");
  ASSERT_NE(npy_at, std::string::npos);
  const std::size_t data_at = npy_at + zanj::parse_npy_header(cp.externals.at(kW)).data_offset;
  for (std::size_t i = 0; i < 64; ++i) {
    std::string b = cp.bytes;
    const std::size_t pos = data_at + i * 19;  // spread over the 1280 data bytes
    b[pos] = static_cast<char>(b[pos] ^ (1 << (i % 8)));
    std::string message;
    EXPECT_EQ(classify(b, &message), Expect::kFormat) << "flip at " << pos;
    EXPECT_THAT(message, HasSubstr(kW));
  }
}

TEST(HostileFilesTest, LyingCentralDirectorySizesAreRefusedBeforeAllocating) {
  // Declared uncompressed size of an entry raised to ~1 TB in the central directory.
  Checkpoint cp = Checkpoint::make();
  std::string b = cp.bytes;
  const std::string name = kW;
  const auto cd = b.rfind(name);  // the central directory record names it last
  ASSERT_NE(cd, std::string::npos);
  const std::size_t record = cd - 46;
  ASSERT_EQ(b.substr(record, 4), std::string("PK\x01\x02", 4));
  for (int k = 0; k < 4; ++k)
    b[record + 24 + static_cast<std::size_t>(k)] = static_cast<char>(0xfe);  // uncompressed size
  std::string message;
  EXPECT_EQ(classify(b, &message), Expect::kFormat);
}

}  // namespace

namespace {

// Every way of reading: copy (as classify does), mapped, and lazily one tensor at a time.
std::vector<std::string> errors_in_every_mode(const std::string& bytes) {
  std::vector<std::string> errors;
  for (int mode = 0; mode < 3; ++mode) {
    zanj::ReadOptions options;
    options.mmap = mode == 1;
    try {
      auto archive = zanj::ArchiveReader::from_bytes(bytes, "hostile.zanj");
      if (mode < 2) {
        zanj_test::TrainNet::from_node(zanj::read(archive, options), "hostile.zanj", options);
      } else {
        const auto lazy = zanj::LazyFile::open(std::move(archive), options);
        for (const auto& t : lazy.tensors()) lazy.tensor(t.key);
      }
      errors.emplace_back();
    } catch (const zanj::Error& e) {
      errors.emplace_back(e.what());
    }
  }
  return errors;
}

TEST(HostileFilesTest, LocalHeaderPointingPastTheEndIsRefusedInEveryMode) {
  const Checkpoint cp = Checkpoint::make();
  std::string b = cp.bytes;
  const auto name_at = b.find(std::string(kW) + std::string("FB", 2));  // name, then padding id
  const auto header = b.rfind(std::string("PK\x03\x04", 4), name_at);
  ASSERT_NE(header, std::string::npos);
  b[header + 28] = static_cast<char>(0xff);  // extra field length: 65535
  b[header + 29] = static_cast<char>(0xff);
  for (const auto& e : errors_in_every_mode(b)) {
    EXPECT_THAT(e, HasSubstr(std::string("hostile.zanj: ") + kW));
    EXPECT_THAT(e, HasSubstr("runs past the archive's end"));
  }
}

TEST(HostileFilesTest, LocalHeaderNamingAnotherEntryIsRefusedInEveryMode) {
  const Checkpoint cp = Checkpoint::make();
  std::string b = cp.bytes;
  const auto name_at = b.find(std::string(kW) + std::string("FB", 2));
  ASSERT_NE(name_at, std::string::npos);
  b[name_at] = static_cast<char>(b[name_at] ^ 0x20);  // the local copy of the name differs
  for (const auto& e : errors_in_every_mode(b)) {
    EXPECT_THAT(e, HasSubstr("local header names another entry"));
  }
}

}  // namespace
