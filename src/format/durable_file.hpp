// SPDX-License-Identifier: MIT
// A plain file written crash-safely: a locked temporary beside it, fsync, rename, directory
// fsync (the path ArchiveWriter takes for zips, for files that are not zips).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace zanj::detail {

class DurableFile {
 public:
  /// Creates the temporary `.<name>.<pid>-<random>.tmp` next to `path` (parents created) and
  /// locks it until it is renamed.  @throws IoError.
  explicit DurableFile(std::string path);
  ~DurableFile();  ///< Removes the temporary unless commit() succeeded.
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  /// Appends `bytes`.  @throws IoError (disk full, ...).
  void write(std::string_view bytes);
  /// fsync, rename over the path, fsync the directory.  @throws IoError; the path is untouched.
  void commit();

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Removes the hidden temporaries `.<prefix>...tmp` (for each of `prefixes`) in `directory` that
/// no live writer owns: writers (DurableFile, ArchiveWriter) hold an exclusive flock on their
/// temporary until it is renamed, so one whose lock can be taken was left by a killed save.
/// Returns the names removed; never throws.
std::vector<std::string> remove_stale_temporaries(const std::string& directory,
                                                  const std::vector<std::string>& prefixes);

}  // namespace zanj::detail
