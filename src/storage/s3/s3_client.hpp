// SPDX-License-Identifier: MIT
// A small S3 client over libcurl: requests signed with AWS Signature V4 by libcurl itself
// (CURLOPT_AWS_SIGV4), connections reused from a pool of handles, retries with exponential
// backoff on connection failures, timeouts, 5xx and throttling; every other refusal is a
// StorageError naming the URI, the status and the store's error code, never a credential.
// Private: reached only through the storage seam (s3_storage.cpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace zanj::detail::s3 {

/// Where and as whom requests go, from the standard places: AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or AWS_DEFAULT_REGION),
/// AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), else the profile AWS_PROFILE (default "default")
/// of ~/.aws/credentials and ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE).
struct Config {
  std::string endpoint;  ///< "http://127.0.0.1:5000"; empty: AWS (https, virtual-hosted)
  std::string region = "us-east-1";
  std::string access_key, secret_key, session_token;  ///< empty access key: unsigned requests
  bool path_style = false;    ///< bucket in the path (a custom endpoint) or in the host (AWS)
  int max_attempts = 5;       ///< ZANJ_S3_MAX_ATTEMPTS
  long timeout_seconds = 60;  ///< a request making no progress this long fails (retried)
  std::uint64_t part_bytes = 8 << 20;  ///< multipart part size (ZANJ_S3_PART_BYTES, >= 5 MiB)
  static Config from_environment();
};

/// "s3://bucket/key/with/slashes" split; the key may be empty (a bucket's root).
struct Uri {
  std::string bucket, key;
  static Uri parse(const std::string& uri);
  std::string str() const { return "s3://" + bucket + "/" + key; }
};

struct Request {
  std::string method = "GET";  ///< GET, PUT, POST, DELETE, HEAD
  Uri uri;
  std::vector<std::pair<std::string, std::string>> query;  ///< sorted by the client
  std::vector<std::string> headers;                        ///< "Name: value"
  std::string_view body;                                   ///< PUT and POST bodies
  char* sink = nullptr;  ///< a GET's body goes here when set (exactly sink_bytes expected)
  std::size_t sink_bytes = 0;
};

struct Response {
  long status = 0;
  std::string body;                            ///< unless the request had a sink
  std::map<std::string, std::string> headers;  ///< names in lower case
};

/// Requests made and bytes moved since the process started (for tests and the benchmark).
struct Stats {
  std::uint64_t requests = 0, bytes_received = 0, bytes_sent = 0;
};
Stats stats();

class Client {
 public:
  explicit Client(Config config);
  /// Sends the request, retrying what may succeed on a second try.
  /// @throws StorageError for a final failure (any status >= 300 but 404 when `allow_404`).
  Response send(const Request& request, bool allow_404 = false) const;
  const Config& config() const { return config_; }

 private:
  Config config_;
};

/// The text of every <tag>...</tag> in an S3 XML response, entities decoded.
std::vector<std::string> xml_values(std::string_view xml, std::string_view tag);

}  // namespace zanj::detail::s3
