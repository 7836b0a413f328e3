// SPDX-License-Identifier: MIT
// The S3 client (see s3_client.hpp).
#include "s3_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"

namespace zanj::detail::s3 {
namespace {

std::atomic<std::uint64_t> g_requests{0}, g_received{0}, g_sent{0};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string home_file(const char* override_env, const char* relative) {
  std::string path = env(override_env);
  if (!path.empty()) return path;
  const std::string home = env("HOME");
  return home.empty() ? std::string() : home + "/" + relative;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// The keys of `section` in an INI file (~/.aws/credentials, ~/.aws/config).
std::map<std::string, std::string> ini_section(const std::string& path,
                                               const std::string& section) {
  std::map<std::string, std::string> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  std::string line, current;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      current = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const auto eq = line.find('=');
    if (current == section && eq != std::string::npos) {
      out[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
    }
  }
  return out;
}

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, '/' kept in paths.
std::string encode(std::string_view s, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Handles are reused, so are their connections.
class HandlePool {
 public:
  static HandlePool& instance() {
    static HandlePool pool;
    return pool;
  }
  CURL* take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        CURL* h = free_.back();
        free_.pop_back();
        curl_easy_reset(h);
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (!h) throw StorageError("s3: curl_easy_init failed", 0, "CurlInit");
    return h;
  }
  void give(CURL* h) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(h);
  }
  ~HandlePool() {
    for (CURL* h : free_) curl_easy_cleanup(h);
  }

 private:
  HandlePool() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  std::mutex mu_;
  std::vector<CURL*> free_;
};

struct Transfer {
  const Request* request = nullptr;
  Response* response = nullptr;
  std::size_t sent = 0, received = 0;
  bool overflow = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  if (t->request->sink && t->response->status / 100 == 2) {
    if (n > t->request->sink_bytes - t->received) {
      t->overflow = true;
      return 0;  // more than asked for: abort the transfer
    }
    std::memcpy(t->request->sink + t->received, data, n);
  } else {
    t->response->body.append(data, n);
  }
  t->received += n;
  return n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t n = size * count;
  std::string line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 100-continue or a redirect)
    t->response->headers.clear();
    const auto sp = line.find(' ');
    t->response->status = sp == std::string::npos ? 0 : std::atol(line.c_str() + sp + 1);
    return n;
  }
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    t->response->headers[name] = trim(line.substr(colon + 1));
  }
  return n;
}

std::size_t on_upload(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string_view body = t->request->body;
  const std::size_t n = std::min(size * count, body.size() - t->sent);
  std::memcpy(buffer, body.data() + t->sent, n);
  t->sent += n;
  return n;
}

bool retryable_status(long status) {
  return status == 500 || status == 502 || status == 503 || status == 504 || status == 429;
}

bool retryable_curl(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

}  // namespace

Stats stats() { return {g_requests.load(), g_received.load(), g_sent.load()}; }

Config Config::from_environment() {
  Config c;
  const std::string profile = env("AWS_PROFILE").empty() ? "default" : env("AWS_PROFILE");
  const auto creds =
      ini_section(home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"), profile);
  const auto conf = ini_section(home_file("AWS_CONFIG_FILE", ".aws/config"),
                                profile == "default" ? "default" : "profile " + profile);
  auto pick = [](std::initializer_list<std::string> candidates) {
    for (const auto& v : candidates) {
      if (!v.empty()) return v;
    }
    return std::string();
  };
  auto get = [](const std::map<std::string, std::string>& m, const char* key) {
    const auto it = m.find(key);
    return it == m.end() ? std::string() : it->second;
  };
  if (!env("AWS_ACCESS_KEY_ID").empty()) {
    c.access_key = env("AWS_ACCESS_KEY_ID");
    c.secret_key = env("AWS_SECRET_ACCESS_KEY");
    c.session_token = env("AWS_SESSION_TOKEN");
  } else {
    c.access_key = get(creds, "aws_access_key_id");
    c.secret_key = get(creds, "aws_secret_access_key");
    c.session_token = get(creds, "aws_session_token");
  }
  const std::string region =
      pick({env("AWS_REGION"), env("AWS_DEFAULT_REGION"), get(conf, "region")});
  if (!region.empty()) c.region = region;
  c.endpoint =
      pick({env("AWS_ENDPOINT_URL_S3"), env("AWS_ENDPOINT_URL"), get(conf, "endpoint_url")});
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  c.path_style = !c.endpoint.empty();
  if (!env("ZANJ_S3_MAX_ATTEMPTS").empty()) {
    c.max_attempts = std::max(1, std::atoi(env("ZANJ_S3_MAX_ATTEMPTS").c_str()));
  }
  if (!env("ZANJ_S3_PART_BYTES").empty()) {
    // S3 refuses parts under 5 MiB (but the last).
    c.part_bytes = std::max<std::uint64_t>(5 << 20, std::stoull(env("ZANJ_S3_PART_BYTES")));
  }
  if (!env("ZANJ_S3_TIMEOUT_SECONDS").empty()) {
    c.timeout_seconds = std::max(1L, std::atol(env("ZANJ_S3_TIMEOUT_SECONDS").c_str()));
  }
  return c;
}

Uri Uri::parse(const std::string& uri) {
  constexpr std::string_view scheme = "s3://";
  if (uri.compare(0, scheme.size(), scheme) != 0) {
    throw UsageError(uri + ": not an s3:// URI");
  }
  const std::string rest = uri.substr(scheme.size());
  const auto slash = rest.find('/');
  Uri u;
  u.bucket = rest.substr(0, slash);
  u.key = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
  if (u.bucket.empty() || u.bucket.size() > 63 ||
      u.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos) {
    throw UsageError(uri +
                     ": not an s3://bucket/key URI (bucket names are 3-63 characters of "
                     "a-z, 0-9, '.' and '-')");
  }
  return u;
}

Client::Client(Config config) : config_(std::move(config)) {}

Response Client::send(const Request& request, bool allow_404) const {
  const Config& c = config_;
  std::string url;
  if (c.path_style) {
    url = c.endpoint + "/" + request.uri.bucket + "/" + encode(request.uri.key, true);
  } else {
    const std::string host =
        c.endpoint.empty() ? "https://" + request.uri.bucket + ".s3." + c.region + ".amazonaws.com"
                           : c.endpoint;
    url = host + "/" + encode(request.uri.key, true);
  }
  auto query = request.query;
  std::sort(query.begin(), query.end());  // SigV4's canonical order
  for (std::size_t i = 0; i < query.size(); ++i) {
    url += (i ? "&" : "?") + encode(query[i].first, false) + "=" + encode(query[i].second, false);
  }
  const std::string sigv4 = "aws:amz:" + c.region + ":s3";
  const std::string where = request.uri.str();

  std::mt19937 jitter(std::random_device{}());
  std::string last_problem, last_code;
  long last_status = 0;
  for (int attempt = 1; attempt <= c.max_attempts; ++attempt) {
    if (attempt > 1) {
      const int base_ms = 50 << std::min(attempt - 2, 6);
      std::this_thread::sleep_for(std::chrono::milliseconds(
          base_ms + std::uniform_int_distribution<int>(0, base_ms)(jitter)));
      logger()->debug("{}: {} retried ({}; attempt {} of {})", where, request.method, last_problem,
                      attempt, c.max_attempts);
    }
    Response response;
    Transfer t;
    t.request = &request;
    t.response = &response;
    CURL* h = HandlePool::instance().take();
    struct Give {
      CURL* h;
      ~Give() { HandlePool::instance().give(h); }
    } give{h};
    curl_slist* headers = nullptr;
    struct FreeList {
      curl_slist** l;
      ~FreeList() { curl_slist_free_all(*l); }
    } free_list{&headers};
    headers = curl_slist_append(headers, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    headers = curl_slist_append(headers, "Expect:");
    if (!c.session_token.empty()) {
      headers = curl_slist_append(headers, ("x-amz-security-token: " + c.session_token).c_str());
    }
    for (const auto& hd : request.headers) headers = curl_slist_append(headers, hd.c_str());
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c.timeout_seconds);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    if (!c.access_key.empty()) {
      curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
      curl_easy_setopt(h, CURLOPT_USERNAME, c.access_key.c_str());
      curl_easy_setopt(h, CURLOPT_PASSWORD, c.secret_key.c_str());
    }
    if (request.method == "PUT") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    } else if (request.method == "POST") {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
    } else if (request.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
    g_requests.fetch_add(1, std::memory_order_relaxed);
    const CURLcode rc = curl_easy_perform(h);
    g_received.fetch_add(t.received, std::memory_order_relaxed);
    g_sent.fetch_add(t.sent, std::memory_order_relaxed);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.overflow)) {
      last_problem = std::string("connection failed: ") + curl_easy_strerror(rc);
      last_code = curl_easy_strerror(rc);
      last_status = 0;
      if (retryable_curl(rc)) continue;
      break;
    }
    if (t.overflow) {
      throw StorageError(where + ": the store sent more than the " +
                             std::to_string(request.sink_bytes) + " bytes asked for",
                         response.status, "LongerThanAsked");
    }
    last_status = response.status;
    const auto codes = xml_values(response.body, "Code");
    last_code = codes.empty() ? "" : codes.front();
    const auto messages = xml_values(response.body, "Message");
    last_problem = "HTTP " + std::to_string(response.status) +
                   (last_code.empty() ? "" : " " + last_code) +
                   (messages.empty() ? "" : ": " + messages.front());
    if (response.status == 404 && allow_404) return response;
    if (response.status >= 200 && response.status < 300) {
      // CompleteMultipartUpload may answer 200 with an error in the body.
      if (request.method == "POST" && response.body.find("<Error>") != std::string::npos) {
        if (last_code == "InternalError" || last_code == "SlowDown") continue;
        break;
      }
      if (request.sink && t.received != request.sink_bytes) {
        last_problem = "the store sent " + std::to_string(t.received) + " of the " +
                       std::to_string(request.sink_bytes) + " bytes asked for";
        last_code = "ShortRead";
        continue;
      }
      return response;
    }
    if (retryable_status(response.status) || last_code == "RequestTimeout") continue;
    break;
  }
  if (last_code.empty()) last_code = "HTTP" + std::to_string(last_status);
  throw StorageError(where + ": " + request.method + " failed: " + last_problem, last_status,
                     last_code);
}

std::vector<std::string> xml_values(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  const std::string open = "<" + std::string(tag) + ">", close = "</" + std::string(tag) + ">";
  for (std::size_t at = xml.find(open); at != std::string_view::npos; at = xml.find(open, at)) {
    const std::size_t begin = at + open.size();
    const std::size_t end = xml.find(close, begin);
    if (end == std::string_view::npos) break;
    std::string v;
    const std::string_view raw = xml.substr(begin, end - begin);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '&') {
        v += raw[i];
        continue;
      }
      static const std::pair<std::string_view, char> entities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool known = false;
      for (const auto& [name, ch] : entities) {
        if (raw.substr(i, name.size()) == name) {
          v += ch;
          i += name.size() - 1;
          known = true;
          break;
        }
      }
      if (!known) v += '&';
    }
    out.push_back(std::move(v));
    at = end + close.size();
  }
  return out;
}

}  // namespace zanj::detail::s3
