// SPDX-License-Identifier: MIT
// Helpers shared by the tests: temporary directories, file bytes, tensor comparisons.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <configured_model/verify.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace zanj_test {

namespace fs = std::filesystem;

/// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("configured_model_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Same dtype, shape and bytes (so NaN payloads and -0.0 count).
inline ::testing::AssertionResult BitIdentical(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure()
           << "dtype " << a.scalar_type() << " vs " << b.scalar_type();
  }
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  }
  auto ca = a.contiguous().cpu();
  auto cb = b.contiguous().cpu();
  const auto n = static_cast<std::size_t>(ca.numel()) * ca.element_size();
  if (n && std::memcmp(ca.data_ptr(), cb.data_ptr(), n) != 0) {
    return ::testing::AssertionFailure() << "bytes differ";
  }
  return ::testing::AssertionSuccess();
}

/// Every dtype torch 1.13 has that the format covers.
inline const std::vector<torch::ScalarType>& all_dtypes() {
  static const std::vector<torch::ScalarType> kAll = {
      torch::kBool,    torch::kUInt8,   torch::kInt8,         torch::kInt16,
      torch::kInt32,   torch::kInt64,   torch::kHalf,         torch::kBFloat16,
      torch::kFloat32, torch::kFloat64, torch::kComplexFloat, torch::kComplexDouble};
  return kAll;
}

/// Random values of `dtype` and `shape` (large magnitudes, so integer dtypes get varied values).
inline torch::Tensor sample(torch::ScalarType dtype, at::IntArrayRef shape) {
  auto t = torch::randn(shape, torch::kFloat64) * 1000;
  if (dtype == torch::kBool) return t > 0;
  if (at::isComplexType(dtype)) return torch::complex(t, -t).to(dtype);
  return t.to(dtype);
}

/// A .npy v1 file with the given header dict and `data` after it (padded as numpy pads).
inline std::string npy_with_header(const std::string& dict, const std::string& data = "") {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(h.size() & 0xff));
  out.push_back(static_cast<char>(h.size() >> 8));
  return out + h + data;
}

inline std::string data_dir() { return CONFIGURED_MODEL_TEST_DATA; }
inline std::string scripts_dir() { return CONFIGURED_MODEL_SCRIPTS; }

/// Whether a file we wrote is a sound zip by libzip's rules (every local header against the
/// central directory, every entry read and CRC-checked) and ours (zanj::verify).
inline ::testing::AssertionResult SoundZip(const std::string& path) {
  const zanj::VerifyReport report = zanj::verify(path);
  if (report.ok) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << path << ":";
  for (const auto& p : report.problems) failure << "\n  " << p;
  return failure;
}

/// Whether /usr/bin/python3 can import the given modules.
inline bool python_has(const std::string& modules) {
  const std::string cmd = "/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

/// Runs a command, returning its exit status and capturing stdout.
inline int run(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
  const int status = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace zanj_test
