// SPDX-License-Identifier: MIT
#pragma once

#include <c10/util/ArrayRef.h>

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "configured_model/export.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Root of every exception this library throws. Messages follow one recipe:
/// `<file>: <entry or key>: <what went wrong> (expected X, found Y)`.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Opening, reading, writing, renaming or syncing a file failed (carries the OS or libzip reason).
class IoError : public Error {
 public:
  using Error::Error;
};

/// An object store (`s3://`) refused a request for good (after retries, where retrying made
/// sense): the bucket or key does not exist, the credentials are wrong or lack the right, the
/// store kept failing. The message names the URI, the HTTP status and the store's error code;
/// never a credential.
class StorageError : public IoError {
 public:
  StorageError(const std::string& what, long http_status, std::string code)
      : IoError(what), http_status_(http_status), code_(std::move(code)) {}
  /// The HTTP status of the last response (0: no response, the connection failed).
  long http_status() const { return http_status_; }
  /// The store's error code ("NoSuchBucket", "NoSuchKey", "AccessDenied",
  /// "InvalidAccessKeyId", "SignatureDoesNotMatch", ...), or a curl error name.
  const std::string& code() const { return code_; }

 private:
  long http_status_;
  std::string code_;
};

/// The bytes are not what the format says: not a zip, bad `.npy` header, truncated or lying entry,
/// malformed JSON, unknown dtype, a `$ref` to a missing entry.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A file asks for what a weights-only load never does: a pickle naming a global outside the
/// allow-list (`os.system`, `builtins.eval`, ...) or building an arbitrary object. Nothing the
/// file names was run.
class UnsafeContentError : public FormatError {
 public:
  using FormatError::FormatError;
};

/// Reading a file would take more than a configured limit allows (ReadOptions::memory_budget,
/// the pickle, JSON or archive limits): a small file that expands to gigabytes, a view that would
/// be materialised far beyond its storage. The message names the file, the entry and the limit.
/// Nothing past the limit was allocated.
class LimitError : public FormatError {
 public:
  using FormatError::FormatError;
};

/// A model config could not be converted from or to JSON (missing field, wrong JSON type), or a
/// name in it (activation, loss) is not registered.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// The file was written by a newer format version than this library understands.
class VersionError : public Error {
 public:
  using Error::Error;
};

/// The stored state does not fit the object it is loaded into: wrong class tag, missing or
/// unexpected tensor keys, shape or dtype mismatch.
class StateMismatchError : public Error {
 public:
  using Error::Error;
};

/// An argument or option is out of its range (a deflate level of 7, a thread count that makes no
/// sense); nothing was read or written.
class UsageError : public Error {
 public:
  using Error::Error;
};

namespace detail {

/// Builds `<file>: <entry>: <what>`, leaving out empty parts.
std::string message(std::string_view file, std::string_view entry, std::string_view what);

/// A shape as messages write it: "[2, 3]" ("[]" for a scalar).
std::string shape_text(c10::IntArrayRef shape);

[[noreturn]] void throw_io_error(std::string_view file, std::string_view entry,
                                 std::string_view what);
[[noreturn]] void throw_format_error(std::string_view file, std::string_view entry,
                                     std::string_view what);

}  // namespace detail
}  // namespace zanj

CONFIGURED_MODEL_API_END
