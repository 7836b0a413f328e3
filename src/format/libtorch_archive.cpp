// SPDX-License-Identifier: MIT
// libtorch's own archives (torch::save of a module or an OutputArchive) <-> named tensors,
// through libtorch's serializer.
#include <torch/serialize.h>
#include <torch/torch.h>

#include <map>
#include <memory>

#include "configured_model/errors.hpp"
#include "configured_model/torch_file.hpp"

namespace zanj {
namespace {

void read_level(torch::serialize::InputArchive& archive, const std::string& prefix,
                StateDict& out) {
  for (const auto& key : archive.keys()) {
    torch::Tensor t;
    if (archive.try_read(key, t) || archive.try_read(key, t, /*is_buffer=*/true)) {
      out.emplace_back(prefix + key, t.detach().clone());
      continue;
    }
    torch::serialize::InputArchive child;
    if (archive.try_read(key, child)) read_level(child, prefix + key + ".", out);
  }
}

// A node of the nested archive being written: tensors here, children by name.
struct Level {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::map<std::string, std::unique_ptr<Level>> children;
  std::vector<std::string> order;  // children in first-seen order
};

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos;
}

void write_level(Level& level, torch::serialize::OutputArchive& archive) {
  // torch::load(module) wants a sub-archive for every child module, also those without
  // tensors. Numbered children (Sequential, ModuleList) reveal them as gaps: net.0 and net.2
  // mean net.1 exists. Fill those with empty archives.
  std::size_t max_index = 0;
  bool numbered = false;
  for (const auto& name : level.order) {
    if (is_index(name))
      max_index = std::max<std::size_t>(max_index, std::stoul(name)), numbered = true;
  }
  if (numbered) {
    for (std::size_t i = 0; i <= max_index; ++i) {
      auto& child = level.children[std::to_string(i)];
      if (!child) {
        child = std::make_unique<Level>();
        level.order.push_back(std::to_string(i));
      }
    }
  }
  for (const auto& [name, t] : level.tensors) archive.write(name, t);
  for (const auto& name : level.order) {
    torch::serialize::OutputArchive child;
    write_level(*level.children.at(name), child);
    archive.write(name, child);
  }
}

}  // namespace

StateDict read_libtorch(const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw FormatError(path + ": not a libtorch archive: " + e.what_without_backtrace());
  }
  StateDict out;
  read_level(archive, "", out);
  return out;
}

void save_libtorch(const StateDict& tensors, const std::string& path) {
  Level root;
  for (const auto& [name, t] : tensors) {
    Level* level = &root;
    std::string rest = name;
    for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
      const std::string part = rest.substr(0, dot);
      auto& child = level->children[part];
      if (!child) {
        child = std::make_unique<Level>();
        level->order.push_back(part);
      }
      level = child.get();
      rest = rest.substr(dot + 1);
    }
    level->tensors.emplace_back(rest, t.detach().to(torch::kCPU));
  }
  torch::serialize::OutputArchive archive;
  write_level(root, archive);
  try {
    archive.save_to(path);
  } catch (const c10::Error& e) {
    throw IoError(path + ": cannot write: " + e.what_without_backtrace());
  }
}

}  // namespace zanj
