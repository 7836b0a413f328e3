// SPDX-License-Identifier: MIT
#include <sys/resource.h>
#include <sys/wait.h>

#include <configured_model/archive.hpp>
#include <configured_model/checksum.hpp>
#include <configured_model/errors.hpp>
#include <csignal>

#include "test_support.hpp"

namespace {

using ::testing::HasSubstr;
using zanj_test::TempDir;

TEST(ArchiveTest, RoundTripsStoredAndDeflatedEntries) {
  TempDir dir;
  const std::string path = dir.file("a.zanj");
  const std::string big(100000, 'x');
  {
    zanj::ArchiveWriter w(path);
    w.add("stored.bin", big, zanj::Compression::kStored);
    w.add("deflated.bin", big, zanj::Compression::kDeflate);
    w.add("dir/empty", "", zanj::Compression::kStored);
    w.commit();
  }
  const auto r = zanj::ArchiveReader::open(path);
  ASSERT_EQ(r.entries().size(), 3u);
  EXPECT_EQ(r.find("stored.bin")->method, 0);
  EXPECT_EQ(r.find("deflated.bin")->method, 8);
  EXPECT_LT(r.find("deflated.bin")->compressed_size, 1000u);
  EXPECT_EQ(r.read("stored.bin"), big);
  EXPECT_EQ(r.read("deflated.bin"), big);
  EXPECT_EQ(r.read("dir/empty"), "");
}

TEST(ArchiveTest, ErrorNamesMissingEntry) {
  TempDir dir;
  zanj::ArchiveWriter w(dir.file("a.zanj"));
  w.add("x", "1", zanj::Compression::kStored);
  w.commit();
  const auto r = zanj::ArchiveReader::open(dir.file("a.zanj"));
  EXPECT_THAT(
      [&] { r.read("state_dict/fc1.weight.npy"); },
      zanj_test::Throws<zanj::FormatError>("a.zanj: state_dict/fc1.weight.npy: no such entry"));
}

TEST(ArchiveTest, RefusesAddingAnEntryTwice) {
  TempDir dir;
  zanj::ArchiveWriter w(dir.file("a.zanj"));
  w.add("x", "1", zanj::Compression::kStored);
  EXPECT_THROW(w.add("x", "2", zanj::Compression::kStored), zanj::FormatError);
}

TEST(ArchiveTest, MissingFileIsAnIoError) {
  EXPECT_THROW(zanj::ArchiveReader::open("/nonexistent/dir/x.zanj"), zanj::IoError);
}

TEST(ArchiveTest, NotAZipIsAFormatError) {
  TempDir dir;
  zanj_test::write_bytes(dir.file("x.zanj"), "this is not a zip file at all, just text");
  EXPECT_THROW(zanj::ArchiveReader::open(dir.file("x.zanj")), zanj::FormatError);
  EXPECT_THROW(zanj::ArchiveReader::from_bytes("", "mem"), zanj::FormatError);
}

TEST(ArchiveTest, DetectsCorruptDataByCrc) {
  TempDir dir;
  const std::string path = dir.file("a.zanj");
  {
    zanj::ArchiveWriter w(path);
    w.add("data.bin", std::string(4096, 'a'), zanj::Compression::kStored);
    w.commit();
  }
  std::string bytes = zanj_test::read_bytes(path);
  const auto pos = bytes.find(std::string(64, 'a'));
  ASSERT_NE(pos, std::string::npos);
  bytes[pos + 100] ^= 0x01;
  const auto r = zanj::ArchiveReader::from_bytes(bytes, "flipped.zanj");
  EXPECT_THAT([&] { r.read("data.bin"); },
              zanj_test::Throws<zanj::FormatError>("flipped.zanj: data.bin: CRC-32 mismatch"));
}

TEST(ArchiveTest, Crc32CombineEqualsTheCrcOfTheConcatenation) {
  const std::string a = "configured_model", b(100003, 'z');
  const std::uint32_t whole = zanj::crc32(zanj::crc32(0, a.data(), a.size()), b.data(), b.size());
  EXPECT_EQ(zanj::crc32_combine(zanj::crc32(0, a.data(), a.size()),
                                zanj::crc32(0, b.data(), b.size()), b.size()),
            whole);
  EXPECT_EQ(zanj::crc32_combine(whole, 0, 0), whole);
}

// Large stored reads are split into parts read on several threads, each with its own CRC: the
// bytes and the CRC check must not depend on the number of threads or where the reads start.
TEST(ArchiveTest, LargeStoredReadsInPartsAreExactAndCrcChecked) {
  TempDir dir;
  std::string body((13 << 20) + 17, '\0');
  for (std::size_t i = 0; i < body.size(); ++i)
    body[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::string path = dir.file("big.zip");
  {
    zanj::ArchiveWriter w(path);
    w.add("big.bin", body, zanj::Compression::kStored);
    w.commit();
  }
  for (std::size_t threads : {0, 1, 2, 3}) {
    const auto r = zanj::ArchiveReader::open(path);
    zanj::EntryReader e = r.open_entry("big.bin", true, threads);
    std::string got(body.size(), '\0');
    e.read(got.data(), 5);  // the parallel read then starts at an odd offset
    e.read(&got[5], got.size() - 5);
    EXPECT_NO_THROW(e.finish()) << threads << " threads";
    EXPECT_TRUE(got == body) << threads << " threads";
  }
  const std::string good = zanj_test::read_bytes(path);
  const auto data_at = zanj::ArchiveReader::open(path).data_offset("big.bin");
  for (std::size_t flip : {std::size_t{7}, body.size() / 2 + 1, body.size() - 1}) {
    std::string bad = good;
    bad[data_at + flip] ^= 0x10;
    zanj_test::write_bytes(dir.file("bad.zip"), bad);
    const auto r = zanj::ArchiveReader::open(dir.file("bad.zip"));
    zanj::EntryReader e = r.open_entry("big.bin", true, 3);
    std::string got(body.size(), '\0');
    e.read(got.data(), got.size());
    try {
      e.finish();
      FAIL() << "flipped byte " << flip << " went unnoticed";
    } catch (const zanj::FormatError& err) {
      EXPECT_THAT(err.what(), HasSubstr("bad.zip: big.bin: CRC-32 mismatch"));
    }
  }
}

TEST(ArchiveTest, EveryTruncationIsRefusedAndTheWholeFileReads) {
  TempDir dir;
  const std::string path = dir.file("a.zanj");
  {
    zanj::ArchiveWriter w(path);
    w.add("a", std::string(300, 'a'), zanj::Compression::kDeflate);
    w.add("b", std::string(300, 'b'), zanj::Compression::kStored);
    w.commit();
  }
  const std::string bytes = zanj_test::read_bytes(path);
  // Whole, it reads back exactly.
  const auto whole = zanj::ArchiveReader::from_bytes(bytes, "t.zanj");
  ASSERT_EQ(whole.entries().size(), 2u);
  EXPECT_EQ(whole.read("a"), std::string(300, 'a'));
  EXPECT_EQ(whole.read("b"), std::string(300, 'b'));
  // Cut anywhere, it is refused as a FormatError naming the file (the end-of-central-directory
  // record is the last thing in the file, so no prefix is a complete archive).
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE(n);
    EXPECT_THAT(
        [&] {
          const auto r = zanj::ArchiveReader::from_bytes(bytes.substr(0, n), "t.zanj");
          for (const auto& e : r.entries()) r.read(e.name);
        },
        zanj_test::Throws<zanj::FormatError>("t.zanj"));
  }
}

TEST(ArchiveTest, RefusesDuplicateEntryNames) {
  // Two entries named "x" (Python's zipfile allows writing this).
  const std::string path = zanj_test::data_dir() + "/hostile/duplicate_names.zip";
  EXPECT_THAT([&] { zanj::ArchiveReader::open(path); },
              zanj_test::Throws<zanj::FormatError>("duplicate entry name"));
}

TEST(ArchiveTest, FailedCommitLeavesThePreviousFileAndNoTemporaries) {
  TempDir dir;
  const std::string path = dir.file("a.zanj");
  {
    zanj::ArchiveWriter w(path);
    w.add("v", "old", zanj::Compression::kStored);
    w.commit();
  }
  // A child process limited to 64 KiB files (RLIMIT_FSIZE -> EFBIG) tries to overwrite it.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{65536, 65536};
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      zanj::ArchiveWriter w(path);
      w.add("v", std::string(1 << 20, 'n'), zanj::Compression::kStored);
      w.commit();
    } catch (const zanj::IoError&) {
      _exit(3);
    } catch (...) {
      _exit(4);
    }
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "expected an IoError in the child";
  EXPECT_EQ(zanj::ArchiveReader::open(path).read("v"), "old");
  std::size_t files = 0;
  for (const auto& e : zanj_test::fs::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "a.zanj");
  }
  EXPECT_EQ(files, 1u);
}

TEST(ArchiveTest, UnwritableDestinationIsAnIoError) {
  // The parent "directory" is a regular file: works even as root, unlike permission bits.
  TempDir dir;
  zanj_test::write_bytes(dir.file("not_a_dir"), "x");
  EXPECT_THAT(
      [&] {
        zanj::ArchiveWriter w(dir.file("not_a_dir/a.zanj"));
        w.commit();
      },
      zanj_test::Throws<zanj::IoError>("not_a_dir/a.zanj"));
}

TEST(ArchiveTest, AbandonedWriterLeavesNothingBehind) {
  TempDir dir;
  {
    zanj::ArchiveWriter w(dir.file("a.zanj"));
    w.add("v", "x", zanj::Compression::kStored);
  }
  EXPECT_TRUE(zanj_test::fs::is_empty(dir.path()));
}

}  // namespace

namespace {

// Entries of several pieces, stored and deflated, read back by libzip and (when there) by
// Python's zipfile, which also checks every CRC.
void write_and_check(const std::string& path, const zanj::ArchiveWriterOptions& options) {
  std::string big(3 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  {
    zanj::ArchiveWriter w(path, options);
    w.add("a.npy", {"head", big}, zanj::Compression::kStored);
    w.add("b/deflated.bin", {big, "tail"}, zanj::Compression::kDeflate);
    w.add("c.json", "{}", zanj::Compression::kStored);
    w.commit();
  }
  zanj::ArchiveLimits strict;
  strict.check_consistency = true;  // libzip compares every local header with the directory
  const auto r = zanj::ArchiveReader::open(path, strict);
  EXPECT_EQ(r.read("a.npy"), "head" + big);
  EXPECT_EQ(r.read("b/deflated.bin"), big + "tail");
  EXPECT_EQ(r.read("c.json"), "{}");
  for (const auto& e : r.entries()) {
    if (e.method == 0) {
      EXPECT_EQ(r.data_offset(e.name) % zanj::kArchiveAlignment, 0u) << e.name;
    }
  }
  if (zanj_test::python_has("zipfile")) {
    std::string out;
    const std::string script =
        "import sys, zipfile\n"
        "z = zipfile.ZipFile(sys.argv[1])\n"
        "assert z.testzip() is None\n"
        "print(len(z.read('a.npy')), len(z.read('b/deflated.bin')), z.read('c.json').decode())\n";
    zanj_test::write_bytes(path + ".py", script);
    ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + path + ".py " + path, &out), 0);
    EXPECT_EQ(out, std::to_string(big.size() + 4) + " " + std::to_string(big.size() + 4) + " {}\n");
  }
}

TEST(ArchiveWriterTest, PiecesStreamIntoAlignedEntriesThatLibzipAndPythonRead) {
  TempDir dir;
  write_and_check(dir.file("a.zip"), {});
}

TEST(ArchiveWriterTest, Zip64RecordsAreReadByLibzipAndPython) {
  TempDir dir;
  zanj::ArchiveWriterOptions options;
  options.force_zip64 = true;
  write_and_check(dir.file("a.zip"), options);
  // The end records really are zip64 ones.
  const std::string bytes = zanj_test::read_bytes(dir.file("a.zip"));
  EXPECT_NE(bytes.find(std::string("PK\x06\x06", 4)), std::string::npos);
  EXPECT_NE(bytes.find(std::string("PK\x06\x07", 4)), std::string::npos);
}

// Reads "HEAD" + body in two steps, stored and deflated; a changed CRC-32 in the central
// directory is caught by finish(), and asking for more than the entry holds is refused.
TEST(ArchiveReaderTest, EntryReaderStreamsStoredAndDeflatedEntriesAndChecksTheirCrc) {
  TempDir dir;
  const std::string path = dir.file("a.zip");
  std::string body(5 << 20, '\0');  // several deflate chunks
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 7919u) >> 9);
  {
    zanj::ArchiveWriter w(path);
    w.add("s", {"HEAD", body}, zanj::Compression::kStored);
    w.add("d", {"HEAD", body}, zanj::Compression::kDeflate);
    w.commit();
  }
  const auto r = zanj::ArchiveReader::open(path);
  for (const char* name : {"s", "d"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(r.read_head(name, 4), "HEAD");
    auto e = r.open_entry(name);
    std::string head(4, '\0'), dst(body.size(), '\0');
    e.read(head.data(), 4);
    EXPECT_EQ(e.remaining(), body.size());
    e.read(dst.data(), dst.size());
    e.finish();
    EXPECT_EQ(head, "HEAD");
    EXPECT_TRUE(dst == body);
    auto more = r.open_entry(name);
    more.skip(4);
    EXPECT_THROW(more.read(dst.data(), dst.size() + 1), zanj::FormatError);
    auto early = r.open_entry(name);
    early.skip(4);
    EXPECT_THROW(early.finish(), zanj::FormatError);  // not everything read
  }
  // The same files with the CRC-32 of each entry changed in the central directory.
  for (const char* name : {"s", "d"}) {
    std::string bytes = zanj_test::read_bytes(path);
    // The central directory records, in order: s, d.
    std::size_t record = bytes.find(std::string("PK\x01\x02", 4));
    if (std::string(name) == "d") record = bytes.find(std::string("PK\x01\x02", 4), record + 4);
    bytes[record + 16] = static_cast<char>(bytes[record + 16] ^ 1);
    // ... and in the local header (CRC at 14), so that the data's own check catches it.
    const auto local = static_cast<std::size_t>(
        static_cast<unsigned char>(bytes[record + 42]) |
        static_cast<unsigned char>(bytes[record + 43]) << 8 |
        static_cast<unsigned char>(bytes[record + 44]) << 16 |
        static_cast<std::size_t>(static_cast<unsigned char>(bytes[record + 45])) << 24);
    bytes[local + 14] = static_cast<char>(bytes[local + 14] ^ 1);
    const auto bad = zanj::ArchiveReader::from_bytes(bytes, "bad.zip");
    try {
      bad.read(name);
      ADD_FAILURE() << "CRC change not caught for " << name;
    } catch (const zanj::FormatError& e) {
      EXPECT_THAT(e.what(), HasSubstr("bad.zip: " + std::string(name) + ": CRC-32 mismatch"));
    }
  }
}

}  // namespace

namespace {

// A two-entry archive, and the offsets of its central directory records and end record.
struct TwoEntries {
  std::string bytes;
  std::size_t first = 0, end = 0;
  static TwoEntries make() {
    TempDir dir;
    zanj::ArchiveWriter w(dir.file("a.zip"));
    w.add("a", "alpha", zanj::Compression::kStored);
    w.add("b", "beta", zanj::Compression::kDeflate);
    w.commit();
    TwoEntries t;
    t.bytes = zanj_test::read_bytes(dir.file("a.zip"));
    t.first = t.bytes.find(std::string("PK\x01\x02", 4));
    t.end = t.bytes.rfind(std::string("PK\x05\x06", 4));
    return t;
  }
  std::string error() const {
    try {
      zanj::ArchiveReader::from_bytes(bytes, "t.zip");
      return "";
    } catch (const zanj::FormatError& e) {
      return e.what();
    }
  }
};

// The central directory is parsed by us; each lie in it is a FormatError naming what is wrong.
TEST(ArchiveReaderTest, CentralDirectoryLiesAreRefused) {
  ASSERT_EQ(TwoEntries::make().error(), "");
  {
    TwoEntries t = TwoEntries::make();
    t.bytes[t.end + 8] = t.bytes[t.end + 10] = 100;  // 100 entries in a 2-record directory
    EXPECT_THAT(t.error(), HasSubstr("cannot hold 100 entries"));
  }
  {
    TwoEntries t = TwoEntries::make();
    t.bytes[t.first + 8] |= 1;  // the "encrypted" flag
    EXPECT_THAT(t.error(), HasSubstr("t.zip: a: encrypted entries are not supported"));
  }
  {
    TwoEntries t = TwoEntries::make();
    t.bytes[t.first + 34] = 1;  // starts on disk 1 of a split archive
    EXPECT_THAT(t.error(), HasSubstr("t.zip: a: entry on another disk"));
  }
  {
    TwoEntries t = TwoEntries::make();
    t.bytes[t.end + 4] = 2;  // this is disk 2
    EXPECT_THAT(t.error(), HasSubstr("split over several disks"));
  }
  {
    TwoEntries t = TwoEntries::make();
    for (int k = 0; k < 4; ++k) t.bytes[t.first + 42 + k] = static_cast<char>(0x7f);
    EXPECT_THAT(t.error(), HasSubstr("t.zip: a: local header offset"));
  }
}

// Python's zipfile with zip64 records and a comment: our parse and libzip's agree.
TEST(ArchiveReaderTest, PythonZip64FilesParseAsLibzipReadsThem) {
  if (!zanj_test::python_has("zipfile")) GTEST_SKIP() << "no python3";
  TempDir dir;
  const std::string script =
      "import sys, zipfile\n"
      "with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n"
      "    z.comment = b'a comment'\n"
      "    for i in range(300):\n"
      "        with z.open('e%d' % i, 'w', force_zip64=True) as f: f.write(b'x' * i)\n";
  zanj_test::write_bytes(dir.file("mk.py"), script);
  ASSERT_EQ(zanj_test::run("/usr/bin/python3 " + dir.file("mk.py") + " " + dir.file("p.zip")), 0);
  zanj::ArchiveLimits both;
  both.check_consistency = true;  // libzip reads it too and must agree entry by entry
  const auto r = zanj::ArchiveReader::open(dir.file("p.zip"), both);
  ASSERT_EQ(r.entries().size(), 300u);
  for (int i = 0; i < 300; i += 37) {
    EXPECT_EQ(r.read("e" + std::to_string(i)), std::string(static_cast<std::size_t>(i), 'x'));
  }
}

}  // namespace
