// SPDX-License-Identifier: MIT
// Objects in an S3-compatible store as files (see storage.hpp). Reads are HTTP range GETs: the
// open fetches the tail (where a zip keeps its central directory) and learns the size from it;
// prefetch() fetches a range whose small reads follow (a zip's leading JSON entries, an entry
// with its local header); other reads go straight into the caller's memory. Writes are
// multipart uploads: parts of at least 5 MiB uploaded kUploadStreams at a time while later
// bytes arrive, completed by commit(), aborted when the writer is destroyed without it: nothing
// is visible under the key before the upload completes. An object that fits one part is one PUT.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "../storage.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"
#include "s3_client.hpp"

namespace zanj::detail {
namespace {

using s3::Client;
using s3::Config;
using s3::Request;
using s3::Uri;

// The first request of an open: the last this many bytes (a zip's central directory, for
// checkpoints of up to ~10,000 tensors).
constexpr std::uint64_t kTailBytes = 1 << 20;
// Prefetched ranges kept in memory, at most (the oldest go first; the tail stays).
constexpr std::uint64_t kCacheBytes = 64 << 20;
// Parts: S3 wants 5 MiB to 5 GiB each, at most 10,000. The size (Config::part_bytes, 8 MiB
// by default: docs/storage.md has the measurement) doubles every 1,000 parts, so objects up to
// ~8 TB fit (S3's own limit is 5 TB) while small ones waste no memory.
constexpr std::uint64_t kMaxPartBytes = 5ull << 30;
constexpr std::size_t kMaxParts = 10000;
constexpr std::size_t kUploadStreams = 4;
// A zip local header with its name and extra fields is at most this long.
constexpr std::uint64_t kMaxHeldBytes = 30 + 65535 + 65535;

std::uint64_t part_bytes(std::uint64_t base, std::size_t part_number) {
  return std::min(kMaxPartBytes, base << std::min<std::size_t>(20, (part_number - 1) / 1000));
}

Client client() { return Client(Config::from_environment()); }

// "bytes 0-99/1234" -> 1234.
std::uint64_t total_of(const std::string& content_range, const std::string& where) {
  const auto slash = content_range.rfind('/');
  if (slash == std::string::npos || slash + 1 >= content_range.size()) {
    throw StorageError(where + ": unreadable Content-Range '" + content_range + "'", 206,
                       "BadContentRange");
  }
  return std::stoull(content_range.substr(slash + 1));
}

class S3File final : public RandomAccessFile {
 public:
  explicit S3File(const std::string& uri) : uri_(Uri::parse(uri)), client_(client()) {
    Request r;
    r.uri = uri_;
    r.headers.push_back("Range: bytes=-" + std::to_string(kTailBytes));
    auto response = client_.send(r, /*allow_404=*/true);
    if (response.status == 404) {
      throw StorageError(uri + ": no such file (" + first_code(response.body, "NoSuchKey") + ")",
                         404, first_code(response.body, "NoSuchKey"));
    }
    if (response.status == 206) {
      size_ = total_of(response.headers["content-range"], uri);
    } else {
      size_ = response.body.size();  // the whole object (a store that ignores short ranges)
    }
    if (response.body.size() > size_) {
      throw StorageError(uri + ": the tail is longer than the object", response.status,
                         "LongerThanAsked");
    }
    tail_at_ = size_ - response.body.size();
    tail_ = std::move(response.body);
  }

  std::uint64_t size() const override { return size_; }
  bool remote() const override { return true; }

  void read_at(std::uint64_t offset, void* dst, std::size_t n) const override {
    if (n == 0) return;
    if (offset >= tail_at_ && offset - tail_at_ + n <= tail_.size()) {
      std::memcpy(dst, tail_.data() + (offset - tail_at_), n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [at, bytes] : cache_) {
        if (offset >= at && offset - at + n <= bytes.size()) {
          std::memcpy(dst, bytes.data() + (offset - at), n);
          return;
        }
      }
    }
    fetch(offset, static_cast<char*>(dst), n);
  }

  void prefetch(std::uint64_t offset, std::uint64_t n) const override {
    if (n == 0 || offset >= size_) return;
    n = std::min(n, size_ - offset);
    if (offset >= tail_at_ && offset - tail_at_ + n <= tail_.size()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [at, bytes] : cache_) {
        if (offset >= at && offset - at + n <= bytes.size()) return;
      }
    }
    std::string bytes(static_cast<std::size_t>(n), '\0');
    fetch(offset, bytes.data(), bytes.size());
    std::lock_guard<std::mutex> lock(mu_);
    cached_bytes_ += bytes.size();
    cache_.emplace_back(offset, std::move(bytes));
    while (cached_bytes_ > kCacheBytes && cache_.size() > 1) {
      cached_bytes_ -= cache_.front().second.size();
      cache_.pop_front();
    }
  }

 private:
  static std::string first_code(const std::string& body, const char* fallback) {
    const auto codes = s3::xml_values(body, "Code");
    return codes.empty() ? fallback : codes.front();
  }

  void fetch(std::uint64_t offset, char* dst, std::size_t n) const {
    Request r;
    r.uri = uri_;
    r.headers.push_back("Range: bytes=" + std::to_string(offset) + "-" +
                        std::to_string(offset + n - 1));
    r.sink = dst;
    r.sink_bytes = n;
    client_.send(r);
  }

  Uri uri_;
  Client client_;
  std::uint64_t size_ = 0;
  std::uint64_t tail_at_ = 0;
  std::string tail_;
  mutable std::mutex mu_;
  mutable std::deque<std::pair<std::uint64_t, std::string>> cache_;
  mutable std::uint64_t cached_bytes_ = 0;
};

// A multipart upload (or one PUT when everything fits one part).
class S3Upload final : public WritableFile {
 public:
  explicit S3Upload(const std::string& uri) : uri_(Uri::parse(uri)), client_(client()) {
    if (uri_.key.empty() || uri_.key.back() == '/') {
      throw UsageError(uri + ": names no object (the key is empty or ends in '/')");
    }
  }

  ~S3Upload() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      if (!committed_) queue_.clear();  // abandoned: no part more
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    if (!committed_ && !upload_id_.empty()) abort_upload();
  }
  S3Upload(const S3Upload&) = delete;
  S3Upload& operator=(const S3Upload&) = delete;

  void append(const char* data, std::size_t n) override {
    rethrow_failure();
    while (n > 0) {
      const std::uint64_t room =
          part_bytes(client_.config().part_bytes, next_part_) - current_.size();
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(room, n));
      current_.append(data, k);
      data += k;
      n -= k;
      size_ += k;
      if (current_.size() == part_bytes(client_.config().part_bytes, next_part_)) finish_part();
    }
  }

  void hold(std::uint64_t offset) override {
    held_from_ = offset;
    holding_ = true;
  }

  void patch(std::uint64_t offset, std::string_view bytes) override {
    for (std::size_t i = 0; i < bytes.size();) {
      const std::uint64_t at = offset + i;
      std::string* part = nullptr;
      std::uint64_t start = 0;
      if (at >= current_start_ && at < current_start_ + current_.size()) {
        part = &current_;
        start = current_start_;
      } else {
        for (auto& h : held_) {
          if (at >= h.start && at < h.start + h.bytes.size()) {
            part = &h.bytes;
            start = h.start;
          }
        }
      }
      if (!part) {
        throw UsageError(uri_.str() + ": patch at byte " + std::to_string(at) +
                         " of a part already uploaded (hold() it first)");
      }
      const std::size_t k = static_cast<std::size_t>(
          std::min<std::uint64_t>(bytes.size() - i, start + part->size() - at));
      std::memcpy(part->data() + (at - start), bytes.data() + i, k);
      i += k;
    }
  }

  void release() override {
    holding_ = false;
    for (auto& h : held_) submit(h.number, std::move(h.bytes));
    held_.clear();
  }

  std::uint64_t size() const override { return size_; }

  void commit() override {
    rethrow_failure();
    if (upload_id_.empty() && held_.empty()) {  // one part: one PUT
      put(uri_, current_);
      committed_ = true;
      return;
    }
    if (!current_.empty() || next_part_ == 1) finish_part();
    release();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return (queue_.empty() && busy_ == 0) || failure_; });
    }
    rethrow_failure();
    std::string xml = "<CompleteMultipartUpload>";
    for (const auto& [number, etag] : etags_) {
      xml += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + etag +
             "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    Request r;
    r.method = "POST";
    r.uri = uri_;
    r.query = {{"uploadId", upload_id_}};
    r.headers.push_back("Content-Type: application/xml");
    r.body = xml;
    client_.send(r);
    committed_ = true;
  }

 private:
  struct Part {
    std::size_t number;
    std::uint64_t start;
    std::string bytes;
  };

  void put(const Uri& uri, std::string_view bytes) const {
    Request r;
    r.method = "PUT";
    r.uri = uri;
    r.body = bytes;
    client_.send(r);
  }

  void finish_part() {
    if (next_part_ > kMaxParts) {
      throw StorageError(uri_.str() + ": more than " + std::to_string(kMaxParts) +
                             " parts (the object outgrew S3's limit)",
                         0, "TooManyParts");
    }
    Part p{next_part_++, current_start_, std::move(current_)};
    current_start_ += p.bytes.size();
    current_ = std::string();
    current_.reserve(static_cast<std::size_t>(part_bytes(client_.config().part_bytes, next_part_)));
    if (holding_ && p.start < held_from_ + kMaxHeldBytes && p.start + p.bytes.size() > held_from_) {
      held_.push_back(std::move(p));  // patched later
      return;
    }
    submit(p.number, std::move(p.bytes));
  }

  void start_upload() {
    Request r;
    r.method = "POST";
    r.uri = uri_;
    r.query = {{"uploads", ""}};
    const auto response = client_.send(r);
    const auto ids = s3::xml_values(response.body, "UploadId");
    if (ids.empty()) {
      throw StorageError(uri_.str() +
                             ": the store answered CreateMultipartUpload without an "
                             "UploadId",
                         response.status, "NoUploadId");
    }
    upload_id_ = ids.front();
    for (std::size_t i = 0; i < kUploadStreams; ++i) workers_.emplace_back([this] { work(); });
  }

  // Queues a part; waits while kUploadStreams parts wait already (memory stays bounded).
  void submit(std::size_t number, std::string bytes) {
    if (upload_id_.empty()) start_upload();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return queue_.size() < kUploadStreams || failure_; });
    if (failure_) std::rethrow_exception(failure_);
    queue_.push_back({number, 0, std::move(bytes)});
    cv_.notify_all();
  }

  void work() {
    for (;;) {
      Part p;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;
        p = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
        cv_.notify_all();
      }
      std::exception_ptr error;
      std::string etag;
      try {
        Request r;
        r.method = "PUT";
        r.uri = uri_;
        r.query = {{"partNumber", std::to_string(p.number)}, {"uploadId", upload_id_}};
        r.body = p.bytes;
        auto response = client_.send(r);
        etag = response.headers["etag"];
        if (etag.empty()) {
          throw StorageError(
              uri_.str() + ": part " + std::to_string(p.number) + " uploaded without an ETag",
              response.status, "NoETag");
        }
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      --busy_;
      if (error && !failure_) failure_ = error;
      if (!error) etags_[p.number] = etag;
      cv_.notify_all();
    }
  }

  void rethrow_failure() {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_) std::rethrow_exception(failure_);
  }

  void abort_upload() const noexcept {
    try {
      Request r;
      r.method = "DELETE";
      r.uri = uri_;
      r.query = {{"uploadId", upload_id_}};
      client_.send(r, /*allow_404=*/true);
    } catch (const std::exception& e) {
      logger()->warn(
          "{}: could not abort the unfinished upload (a lifecycle rule for "
          "incomplete multipart uploads removes its parts): {}",
          uri_.str(), e.what());
    }
  }

  Uri uri_;
  Client client_;
  std::string upload_id_;
  std::string current_;
  std::uint64_t current_start_ = 0;
  std::size_t next_part_ = 1;
  std::uint64_t size_ = 0;
  bool holding_ = false;
  std::uint64_t held_from_ = 0;
  std::list<Part> held_;
  bool committed_ = false;
  // Shared with the workers.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Part> queue_;
  std::size_t busy_ = 0;
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::map<std::size_t, std::string> etags_;
  std::vector<std::thread> workers_;
};

class S3Storage final : public Storage {
 public:
  std::unique_ptr<RandomAccessFile> open(const std::string& path) const override {
    return std::make_unique<S3File>(path);
  }
  std::unique_ptr<WritableFile> create(const std::string& path) const override {
    return std::make_unique<S3Upload>(path);
  }

  std::optional<std::string> read_if_exists(const std::string& path) const override {
    Request r;
    r.uri = Uri::parse(path);
    auto response = client().send(r, /*allow_404=*/true);
    if (response.status == 404) {
      const auto codes = s3::xml_values(response.body, "Code");
      if (!codes.empty() && codes.front() == "NoSuchBucket") {
        throw StorageError(path + ": GET failed: HTTP 404 NoSuchBucket", 404, "NoSuchBucket");
      }
      return std::nullopt;
    }
    return std::move(response.body);
  }

  std::vector<StorageEntry> list(const std::string& directory) const override {
    Uri u = Uri::parse(directory);
    std::string prefix = u.key;
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    std::vector<StorageEntry> out;
    const Client c = client();
    std::string token;
    for (;;) {
      Request r;
      r.uri = Uri{u.bucket, ""};
      r.query = {{"list-type", "2"}, {"prefix", prefix}, {"delimiter", "/"}};
      if (!token.empty()) r.query.push_back({"continuation-token", token});
      const auto response = c.send(r);
      for (const auto& key : s3::xml_values(response.body, "Key")) {
        if (key.size() > prefix.size()) out.push_back({key.substr(prefix.size()), false});
      }
      for (const auto& p : s3::xml_values(response.body, "Prefix")) {
        // <Prefix> appears once for the request itself, once per common prefix.
        if (p.size() > prefix.size() && p.back() == '/') {
          out.push_back({p.substr(prefix.size(), p.size() - prefix.size() - 1), true});
        }
      }
      const auto truncated = s3::xml_values(response.body, "IsTruncated");
      const auto next = s3::xml_values(response.body, "NextContinuationToken");
      if (truncated.empty() || truncated.front() != "true" || next.empty()) break;
      token = next.front();
    }
    return out;
  }

  bool is_file(const std::string& path) const override {
    Request r;
    r.method = "HEAD";
    r.uri = Uri::parse(path);
    if (r.uri.key.empty()) return false;
    return client().send(r, /*allow_404=*/true).status != 404;
  }

  void remove_all(const std::string& path) const override {
    const Uri u = Uri::parse(path);
    const Client c = client();
    auto remove = [&](const std::string& key) {
      Request r;
      r.method = "DELETE";
      r.uri = Uri{u.bucket, key};
      c.send(r, /*allow_404=*/true);
    };
    // Everything under "key/" (a distributed checkpoint), then the object itself.
    std::vector<std::string> keys;
    std::string token;
    const std::string prefix = u.key.empty() || u.key.back() == '/' ? u.key : u.key + "/";
    for (;;) {
      Request r;
      r.uri = Uri{u.bucket, ""};
      r.query = {{"list-type", "2"}, {"prefix", prefix}};
      if (!token.empty()) r.query.push_back({"continuation-token", token});
      const auto response = c.send(r);
      for (auto& key : s3::xml_values(response.body, "Key")) keys.push_back(std::move(key));
      const auto truncated = s3::xml_values(response.body, "IsTruncated");
      const auto next = s3::xml_values(response.body, "NextContinuationToken");
      if (truncated.empty() || truncated.front() != "true" || next.empty()) break;
      token = next.front();
    }
    for (const auto& key : keys) remove(key);
    if (!u.key.empty() && u.key.back() != '/') remove(u.key);
  }

  void create_directories(const std::string& directory) const override {
    (void)Uri::parse(directory);  // an object store has no directories; the URI must be sound
  }

  std::vector<std::string> remove_stale_temporaries(
      const std::string& /*directory*/,
      const std::vector<std::string>& /*prefixes*/) const override {
    // Nothing is visible before an upload completes; an interrupted upload's parts are the
    // store's to expire (a lifecycle rule, AbortIncompleteMultipartUpload).
    return {};
  }
};

}  // namespace

const Storage& s3_storage() {
  static const S3Storage storage;
  return storage;
}

}  // namespace zanj::detail
