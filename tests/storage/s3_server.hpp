// SPDX-License-Identifier: MIT
// The S3 tests' server: moto_server on a free port of 127.0.0.1 with fault_proxy.py in front
// of it (injected 500s, dropped connections, a server that dies mid-upload, key checks),
// started once per test binary; a fresh bucket per test. Tests skip, saying why, only when no
// server starts.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "storage/s3/s3_client.hpp"
#include "test_support.hpp"

extern char** environ;

namespace zanj_test::s3_server {

inline constexpr const char* kSecret = "s3cr3t-never-in-logs-0123456789";
inline constexpr const char* kToken = "t0ken-never-in-logs-9876543210";

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A shell command in its own process group (killed with it), output to a log file.
inline pid_t spawn(const std::string& command) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  const std::string cmd = "exec " + command;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  if (posix_spawn(&pid, "/bin/sh", nullptr, &attr, const_cast<char**>(argv), environ) != 0) {
    pid = -1;
  }
  posix_spawnattr_destroy(&attr);
  return pid;
}

inline bool wait_for(int port, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (accepts(port)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace zanj_test::s3_server

using namespace zanj_test::s3_server;  // NOLINT(google-build-using-namespace)

class S3Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    logs_ = new TempDir;
    server_port_ = free_port();
    // Both die with the test binary's timeout at the latest (`timeout`), never hanging CI.
    server_ = spawn("timeout 600 moto_server -H 127.0.0.1 -p " + std::to_string(server_port_) +
                    " >" + logs_->file("moto.log") + " 2>&1");
    if (server_ < 0 || !wait_for(server_port_, 30)) {
      why_skipped_ = "moto_server did not start on 127.0.0.1 (is it on PATH?): S3 tests skipped";
      return;
    }
    proxy_port_ = free_port();
    proxy_ = spawn(std::string("timeout 600 /usr/bin/python3 ") + CONFIGURED_MODEL_FAULT_PROXY +
                   " --port " + std::to_string(proxy_port_) +
                   " --upstream http://127.0.0.1:" + std::to_string(server_port_) + " --ready " +
                   logs_->file("proxy.ready") + " >" + logs_->file("proxy.log") + " 2>&1");
    if (proxy_ < 0 || !wait_for(proxy_port_, 30)) {
      why_skipped_ = "the fault proxy did not start: S3 tests skipped";
    }
  }
  static void TearDownTestSuite() {
    for (pid_t p : {proxy_, server_}) {
      if (p > 0) {
        ::kill(-p, SIGTERM);
        ::waitpid(p, nullptr, 0);
      }
    }
    delete logs_;
  }

  void SetUp() override {
    if (!why_skipped_.empty()) GTEST_SKIP() << why_skipped_;
    ::setenv("AWS_ENDPOINT_URL", endpoint().c_str(), 1);
    ::setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", kSecret, 1);
    ::setenv("AWS_SESSION_TOKEN", kToken, 1);
    ::setenv("AWS_REGION", "us-east-1", 1);
    ::setenv("ZANJ_S3_MAX_ATTEMPTS", "4", 1);
    ::setenv("ZANJ_S3_TIMEOUT_SECONDS", "10", 1);
    fault("reset=1");
    bucket_ = "bucket-" + std::to_string(++buckets_);
    zanj::detail::s3::Request r;
    r.method = "PUT";
    r.uri = {bucket_, ""};
    client().send(r);
  }

  static std::string endpoint() { return "http://127.0.0.1:" + std::to_string(proxy_port_); }
  using TempDir = zanj_test::TempDir;
  static zanj::detail::s3::Client client() {
    return zanj::detail::s3::Client(zanj::detail::s3::Config::from_environment());
  }
  std::string uri(const std::string& key) const { return "s3://" + bucket_ + "/" + key; }

  static void fault(const std::string& query) {
    std::string out;
    ASSERT_EQ(zanj_test::run("curl -s 'http://127.0.0.1:" + std::to_string(proxy_port_) +
                                 "/__fault__?" + query + "'",
                             &out),
              0);
    ASSERT_EQ(out, "ok");
  }

  // Every key in the bucket.
  std::vector<std::string> keys() const {
    zanj::detail::s3::Request r;
    r.uri = {bucket_, ""};
    r.query = {{"list-type", "2"}};
    return zanj::detail::s3::xml_values(client().send(r).body, "Key");
  }

  static std::uint64_t requests() { return zanj::detail::s3::stats().requests; }

  static inline TempDir* logs_ = nullptr;
  static inline pid_t server_ = -1, proxy_ = -1;
  static inline int server_port_ = 0, proxy_port_ = 0;
  static inline std::string why_skipped_;
  static inline int buckets_ = 0;
  std::string bucket_;
};
