// SPDX-License-Identifier: MIT
#include "test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <configured_model/verify.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

namespace zanj_test {

TempDir::TempDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("configured_model_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(path_, ec);
}

ScopedCwd::ScopedCwd(const fs::path& dir) : previous_(fs::current_path()) { fs::current_path(dir); }

ScopedCwd::~ScopedCwd() {
  std::error_code ec;
  fs::current_path(previous_, ec);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

::testing::AssertionResult BitIdentical(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure()
           << "dtype " << a.scalar_type() << " vs " << b.scalar_type();
  }
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shape " << a.sizes() << " vs " << b.sizes();
  }
  if (zanj::Node(a) != zanj::Node(b)) return ::testing::AssertionFailure() << "bytes differ";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameTree(const zanj::Node& a, const zanj::Node& b) {
  if (const auto where = zanj::first_difference(a, b)) {
    return ::testing::AssertionFailure() << "trees differ at " << *where;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult SameState(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) {
    return ::testing::AssertionFailure() << "different numbers of parameters or buffers";
  }
  for (const auto& p : pa) {
    if (!pb.contains(p.key())) return ::testing::AssertionFailure() << "no " << p.key();
    if (!BitIdentical(p.value(), pb[p.key()])) return ::testing::AssertionFailure() << p.key();
  }
  for (const auto& p : ba) {
    if (!bb.contains(p.key())) return ::testing::AssertionFailure() << "no " << p.key();
    if (!BitIdentical(p.value(), bb[p.key()])) return ::testing::AssertionFailure() << p.key();
  }
  return ::testing::AssertionSuccess();
}

const std::vector<torch::ScalarType>& all_dtypes() {
  static const std::vector<torch::ScalarType> kAll = {
      torch::kBool,    torch::kUInt8,   torch::kInt8,         torch::kInt16,
      torch::kInt32,   torch::kInt64,   torch::kHalf,         torch::kBFloat16,
      torch::kFloat32, torch::kFloat64, torch::kComplexFloat, torch::kComplexDouble};
  return kAll;
}

torch::Tensor sample(torch::ScalarType dtype, at::IntArrayRef shape) {
  auto t = torch::randn(shape, torch::kFloat64) * 1000;
  if (dtype == torch::kBool) return t > 0;
  if (at::isComplexType(dtype)) return torch::complex(t, -t).to(dtype);
  return t.to(dtype);
}

std::string npy_with_header(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(h.size() & 0xff));
  out.push_back(static_cast<char>(h.size() >> 8));
  return out + h + data;
}

std::string data_dir() { return CONFIGURED_MODEL_TEST_DATA; }
std::string scripts_dir() { return CONFIGURED_MODEL_SCRIPTS; }

::testing::AssertionResult SoundZip(const std::string& path) {
  const zanj::VerifyReport report = zanj::verify(path);
  if (report.ok) return ::testing::AssertionSuccess();
  auto failure = ::testing::AssertionFailure() << path << ":";
  for (const auto& p : report.problems) failure << "\n  " << p;
  return failure;
}

bool python_has(const std::string& modules) {
  const std::string cmd = "/usr/bin/python3 -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

int run(const std::string& cmd, std::string* out) {
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
