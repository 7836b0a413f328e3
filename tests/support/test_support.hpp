// SPDX-License-Identifier: MIT
// What the tests share (the zanj_test_support library): temporary directories, file bytes,
// tensor and tree comparisons, fixture paths, child processes, and error matchers.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <configured_model/node.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace zanj_test {

namespace fs = std::filesystem;

/// A fresh directory under the system temp dir, removed (with everything in it) when it dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// Makes `dir` the working directory until destroyed (for README snippets that use bare names).
class ScopedCwd {
 public:
  explicit ScopedCwd(const fs::path& dir);
  ~ScopedCwd();
  ScopedCwd(const ScopedCwd&) = delete;
  ScopedCwd& operator=(const ScopedCwd&) = delete;

 private:
  fs::path previous_;
};

std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

/// Same dtype, shape and bytes (so NaN payloads and -0.0 count).
::testing::AssertionResult BitIdentical(const torch::Tensor& a, const torch::Tensor& b);
/// Equal trees (zanj::Node's operator==); on failure, the path where they first differ.
::testing::AssertionResult SameTree(const zanj::Node& a, const zanj::Node& b);
/// Every parameter and buffer bit-identical, by name.
::testing::AssertionResult SameState(const torch::nn::Module& a, const torch::nn::Module& b);

/// Every dtype torch 1.13 has that the format covers.
const std::vector<torch::ScalarType>& all_dtypes();
/// Random values of `dtype` and `shape` (large magnitudes, so integer dtypes get varied values).
torch::Tensor sample(torch::ScalarType dtype, at::IntArrayRef shape);
/// A .npy v1 file with the given header dict and `data` after it (padded as numpy pads).
std::string npy_with_header(const std::string& dict, const std::string& data = "");

/// tests/data, scripts/, and the helper executables' paths (set by the build).
std::string data_dir();
std::string scripts_dir();

/// Whether a file we wrote is a sound zip by our rules (zanj::verify: every local header
/// against the central directory, every entry read and CRC-checked).
::testing::AssertionResult SoundZip(const std::string& path);

/// Whether /usr/bin/python3 can import the given modules.
bool python_has(const std::string& modules);

/// Runs a shell command, returning its exit status (-1 if it did not exit) and its stdout.
int run(const std::string& cmd, std::string* out = nullptr);

/// Matches an exception of type E whose what() contains every one of `fragments`:
///   EXPECT_THAT([&] { zanj::read(path); }, Throws<zanj::FormatError>("a.zanj", "CRC-32"));
template <class E, class... Fragments>
auto Throws(const Fragments&... fragments) {
  return ::testing::ThrowsMessage<E>(::testing::AllOf(::testing::HasSubstr(fragments)...));
}

}  // namespace zanj_test
