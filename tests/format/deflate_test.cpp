// SPDX-License-Identifier: MIT
// Deflated entries (Python ZANJ's default, and ours with Compression::kDeflate): bit-exact round
// trips of every dtype in every read mode, files Python's zipfile deflated, chunked parallel
// compression that does not depend on the thread count, and broken or hostile deflate data.
#include <configured_model/configured_model.hpp>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::TempDir;

zanj::Node every_dtype() {
  torch::manual_seed(5);
  zanj::Node::Dict d;
  for (auto dtype : zanj_test::all_dtypes()) {
    d.emplace_back(std::string(c10::toString(dtype)),
                   zanj::Node(zanj_test::sample(dtype, {64, 33})));
  }
  d.emplace_back("big", zanj::Node(torch::randn({3, 1 << 20})));  // 12 MiB: several chunks
  return zanj::Node(std::move(d));
}

// Every tensor of `path` read by copy, mapped and lazily, against `expected`.
void expect_reads_back(const std::string& path, const zanj::Node& expected) {
  for (int mode = 0; mode < 3; ++mode) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    zanj::ReadOptions options;
    options.mmap = mode == 1;
    if (mode == 2) {
      const auto lazy = zanj::LazyFile::open(path, options);
      for (const auto& [key, value] : expected.as_dict()) {
        EXPECT_TRUE(zanj_test::BitIdentical(lazy.tensor(key), value.tensor())) << key;
      }
      continue;
    }
    const zanj::Node got = zanj::read(path, options);
    for (const auto& [key, value] : expected.as_dict()) {
      EXPECT_TRUE(zanj_test::BitIdentical(got.at(key).tensor(), value.tensor())) << key;
    }
  }
}

TEST(DeflateTest, EveryDtypeRoundTripsThroughOurDeflatedEntries) {
  TempDir dir;
  const zanj::Node tree = every_dtype();
  for (int level = 0; level <= 3; ++level) {
    SCOPED_TRACE("level " + std::to_string(level));
    zanj::SaveOptions options;
    options.compression = zanj::Compression::kDeflate;
    options.deflate_level = level;
    const std::string path = dir.file("d" + std::to_string(level) + ".zanj");
    zanj::save(tree, path, options);
    const auto archive = zanj::ArchiveReader::open(path);
    for (const auto& e : archive.entries()) EXPECT_EQ(e.method, 8) << e.name;
    expect_reads_back(path, tree);
    EXPECT_TRUE(zanj_test::SoundZip(path));
  }
}

TEST(DeflateTest, PythonZipfileReadsOurDeflatedFiles) {
  if (!zanj_test::python_has("zipfile, numpy, io")) GTEST_SKIP() << "no python3 with numpy";
  TempDir dir;
  const std::string path = dir.file("d.zanj");
  zanj::SaveOptions options;
  options.compression = zanj::Compression::kDeflate;
  torch::manual_seed(3);
  const auto t = torch::randn({5, 1 << 20});
  zanj::Node::Dict d;
  d.emplace_back("w", zanj::Node(t));
  zanj::save(zanj::Node(std::move(d)), path, options);
  const std::string script =
      "import sys, zipfile, io, numpy\n"
      "z = zipfile.ZipFile(sys.argv[1])\n"
      "assert z.testzip() is None\n"
      "assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())\n"
      "a = numpy.load(io.BytesIO(z.read('w.npy')))\n"
      "print(a.shape, '%.6f' % float(a.astype('float64').sum()))\n";
  zanj_test::write_bytes(dir.file("check.py"), script);
  std::string out;
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + dir.file("check.py") + " " + path, &out), 0);
  char expected[64];
  std::snprintf(expected, sizeof expected, "%.6f", t.to(torch::kFloat64).sum().item<double>());
  EXPECT_EQ(out, "(5, 1048576) " + std::string(expected) + "\n");
}

TEST(DeflateTest, FilesPythonDeflatedReadBackBitExact) {
  if (!zanj_test::python_has("zipfile")) GTEST_SKIP() << "no python3";
  TempDir dir;
  const zanj::Node tree = every_dtype();
  zanj::save(tree, dir.file("stored.zanj"));
  // Python's zipfile at zlib's default level, as Python ZANJ writes.
  const std::string script =
      "import sys, zipfile\n"
      "src = zipfile.ZipFile(sys.argv[1])\n"
      "with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as dst:\n"
      "    for i in src.infolist(): dst.writestr(i.filename, src.read(i.filename))\n";
  zanj_test::write_bytes(dir.file("repack.py"), script);
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + dir.file("repack.py") + " " +
                           dir.file("stored.zanj") + " " + dir.file("py.zanj")),
            0);
  expect_reads_back(dir.file("py.zanj"), tree);
  for (std::size_t threads : {1, 2, 5}) {
    zanj::ReadOptions options;
    options.threads = threads;
    const zanj::Node got = zanj::read(dir.file("py.zanj"), options);
    EXPECT_TRUE(zanj_test::BitIdentical(got.at("big").tensor(), tree.at("big").tensor()));
  }
  const zanj::VerifyReport report = zanj::verify(dir.file("py.zanj"));
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.tensors, tree.as_dict().size());
}

// Chunks are a fixed size, so the compressed bytes do not depend on the number of threads.
// 11 chunks: more than the writer's reused output buffers (two per thread) with 2 or 3 threads.
TEST(DeflateTest, CompressedBytesDoNotDependOnThreads) {
  TempDir dir;
  std::string body((21 << 20) + 5, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * i) >> 11);
  std::vector<std::string> data;
  for (std::size_t threads : {1, 2, 3, 7}) {
    zanj::ArchiveWriterOptions options;
    options.threads = threads;
    const std::string path = dir.file("t" + std::to_string(threads) + ".zip");
    zanj::ArchiveWriter w(path, options);
    w.add("e", {"head", body}, zanj::Compression::kDeflate);
    w.commit();
    const auto r = zanj::ArchiveReader::open(path);
    const auto& e = *r.find("e");
    EXPECT_EQ(r.read("e"), "head" + body);
    data.push_back(zanj_test::read_bytes(path).substr(r.data_offset("e"), e.compressed_size));
  }
  EXPECT_EQ(data[0], data[1]);
  EXPECT_EQ(data[0], data[2]);
  EXPECT_EQ(data[0], data[3]);
}

TEST(DeflateTest, OutOfRangeLevelIsAUsageError) {
  TempDir dir;
  zanj::SaveOptions options;
  options.compression = zanj::Compression::kDeflate;
  options.deflate_level = 7;
  EXPECT_THROW(zanj::save(every_dtype(), dir.file("x.zanj"), options), zanj::UsageError);
  EXPECT_FALSE(zanj_test::fs::exists(dir.file("x.zanj")));
}

// ---- broken and hostile deflate data -------------------------------------------------------

// A one-entry deflated archive and the offset of its central directory record.
struct OneEntry {
  std::string bytes;
  std::size_t record = 0;  // central directory record of "e"
  std::string body;

  static OneEntry make(std::string body) {
    TempDir dir;
    zanj::ArchiveWriter w(dir.file("e.zip"));
    w.add("e", body, zanj::Compression::kDeflate);
    w.commit();
    OneEntry o;
    o.bytes = zanj_test::read_bytes(dir.file("e.zip"));
    o.record = o.bytes.find(std::string("PK\x01\x02", 4));
    o.body = std::move(body);
    return o;
  }
  // Sets a field of the central record (CRC 16, sizes 20 and 24) and the same field of the
  // local header (at offset 0, two bytes earlier), so that the two agree and the data checks
  // are what catches the lie.
  void set_u32(std::size_t at, std::uint32_t v) {
    for (int k = 0; k < 4; ++k) {
      bytes[record + at + k] = static_cast<char>(v >> (8 * k));
      bytes[at - 2 + k] = static_cast<char>(v >> (8 * k));
    }
  }
  std::uint32_t u32(std::size_t at) const {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k)
      v |= std::uint32_t{static_cast<unsigned char>(bytes[record + at + k])} << (8 * k);
    return v;
  }
  std::string error(const zanj::ArchiveLimits& limits = {}) const {
    try {
      const auto r = zanj::ArchiveReader::from_bytes(bytes, "hostile.zip", limits);
      auto e = r.open_entry("e");
      std::string out(static_cast<std::size_t>(e.remaining()), '\0');
      e.read(out.data(), out.size());
      e.finish();
      return out == body ? "" : "wrong bytes";
    } catch (const zanj::FormatError& e) {
      return e.what();
    }
  }
};

std::string noise(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

TEST(DeflateHostileTest, TruncatedStreamIsRefused) {
  OneEntry o = OneEntry::make(noise(300000) + std::string(300000, 'a'));
  ASSERT_EQ(o.error(), "");
  o.set_u32(20, o.u32(20) / 2);  // compressed size halved: the stream is cut
  EXPECT_THAT(o.error(),
              HasSubstr("hostile.zip: e: compressed data ends inside the deflate stream"));
}

TEST(DeflateHostileTest, StreamLongerOrShorterThanDeclaredIsRefused) {
  OneEntry o = OneEntry::make(noise(5000));
  o.set_u32(24, 4000);  // declared smaller than what the stream holds
  EXPECT_THAT(o.error(), HasSubstr("deflate stream holds more than the central directory's 4000"));
  o.set_u32(24, 6000);  // declared larger
  EXPECT_THAT(o.error(), HasSubstr("deflate stream ends early"));
}

TEST(DeflateHostileTest, CrcMismatchIsRefused) {
  OneEntry o = OneEntry::make(noise(5000));
  o.set_u32(16, o.u32(16) ^ 0x10);
  EXPECT_THAT(o.error(), HasSubstr("hostile.zip: e: CRC-32 mismatch"));
}

TEST(DeflateHostileTest, BitFlipsInCompressedDataNeverGoUnnoticed) {
  const OneEntry o = OneEntry::make(noise(20000) + std::string(20000, 'z'));
  const auto r = zanj::ArchiveReader::from_bytes(o.bytes, "x");
  const std::size_t at = static_cast<std::size_t>(r.data_offset("e"));
  const std::size_t n = r.find("e")->compressed_size;
  for (std::size_t i = 0; i < 200; ++i) {
    OneEntry b = o;
    const std::size_t pos = at + (i * 7919) % n;
    b.bytes[pos] = static_cast<char>(b.bytes[pos] ^ (1 << (i % 8)));
    EXPECT_NE(b.error(), "") << "flip at " << pos;
  }
}

TEST(DeflateHostileTest, BombsAreRefusedBeforeInflating) {
  // 64 MiB of zeros deflate ~1000:1; the limit is checked against the central directory.
  OneEntry o = OneEntry::make(std::string(64 << 20, '\0'));
  zanj::ArchiveLimits limits;
  limits.max_compression_ratio = 100;
  EXPECT_THAT(o.error(limits), HasSubstr("exceeds the limit of 100:1"));
  // A declared size far beyond the stream: refused by the entry size limit, not allocated.
  o.set_u32(24, 0xFFFFFFF0u);
  limits.max_entry_bytes = 1 << 30;
  limits.max_compression_ratio = 1u << 31;
  EXPECT_THAT(o.error(limits), HasSubstr("exceeds the limit of 1073741824"));
}

// A whole deflated checkpoint cut at every length: always a typed error, in every read mode.
TEST(DeflateHostileTest, TruncatedDeflatedCheckpointsNeverCrash) {
  TempDir dir;
  zanj::SaveOptions options;
  options.compression = zanj::Compression::kDeflate;
  torch::manual_seed(1);
  zanj::Node::Dict d;
  d.emplace_back("w", zanj::Node(torch::randn({20, 20})));
  zanj::save(zanj::Node(std::move(d)), dir.file("c.zanj"), options);
  const std::string bytes = zanj_test::read_bytes(dir.file("c.zanj"));
  for (std::size_t n = 0; n < bytes.size(); n += 3) {
    for (int mode = 0; mode < 3; ++mode) {
      zanj::ReadOptions ro;
      ro.mmap = mode == 1;
      try {
        auto archive = zanj::ArchiveReader::from_bytes(bytes.substr(0, n), "cut.zanj");
        if (mode == 2) {
          zanj::LazyFile::open(std::move(archive), ro).tensor("w");
        } else {
          zanj::read(archive, ro);
        }
        ADD_FAILURE() << "read " << n << " of " << bytes.size() << " bytes";
      } catch (const zanj::Error&) {
      }
    }
  }
}

}  // namespace
