// SPDX-License-Identifier: MIT
#include "configured_model/metadata.hpp"

#include <sys/utsname.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "../format/json_object.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/version.hpp"

#ifndef CONFIGURED_MODEL_COMPILER
#define CONFIGURED_MODEL_COMPILER "unknown"
#endif

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

const char* mode_name(ArrayMode m) {
  switch (m) {
    case ArrayMode::kHexMeta:
      return "array_hex_meta";
    case ArrayMode::kB64Meta:
      return "array_b64_meta";
    case ArrayMode::kListMeta:
      break;
  }
  return "array_list_meta";
}

void note(ErrorMode mode, const std::string& file, const std::string& what) {
  if (mode == ErrorMode::kExcept) detail::throw_format_error(file, kMetaEntry, what);
  if (mode == ErrorMode::kWarn) logger()->warn("{}", detail::message(file, kMetaEntry, what));
}

}  // namespace

nlohmann::ordered_json sysinfo() {
  ojson torch_info;
  torch_info["version"] = TORCH_VERSION;
  torch_info["cuda_available"] = torch::cuda::is_available();
  const auto count = torch::cuda::device_count();
  torch_info["cuda_device_count"] = count;
  ojson devices = ojson::array();
  for (std::size_t i = 0; i < count; ++i) devices.push_back({{"device", i}});
  torch_info["cuda_devices"] = devices;

  ojson os;
  struct utsname u {};
  if (uname(&u) == 0) {
    os = {{"sysname", u.sysname}, {"release", u.release}, {"machine", u.machine}};
  }
  return {
      {"libtorch", torch_info},
      {"compiler", CONFIGURED_MODEL_COMPILER},
      {"os", os},
      {"cpu", {{"model", cpu_model()}, {"logical_cores", std::thread::hardware_concurrency()}}}};
}

nlohmann::ordered_json make_metadata(const SaveOptions& options,
                                     const std::vector<ExternalEntry>& externals,
                                     const nlohmann::ordered_json& int_key_dicts) {
  ojson cfg = {{"error_mode", "ErrorMode.Except"},
               {"array_mode", mode_name(options.array_mode)},
               {"external_array_threshold", options.external_array_threshold},
               {"external_list_threshold", options.external_list_threshold},
               {"compress", options.compression == Compression::kDeflate ? 8 : 0},
               {"serialization_handlers", ojson::object()},
               {"load_handlers", ojson::object()}};
  // Python sorts externals_info by the length of the path (stable).
  std::vector<const ExternalEntry*> order;
  for (const auto& e : externals) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const ExternalEntry* a, const ExternalEntry* b) {
    return a->info["path"].size() < b->info["path"].size();
  });
  ojson info = ojson::object();
  for (const auto* e : order) detail::append_member(info, e->name, e->info);  // names are distinct
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ojson ours = {{"library_version", kLibraryVersion}, {"format_version", kFormatVersion}};
  if (int_key_dicts.is_array() && !int_key_dicts.empty()) ours["int_key_dicts"] = int_key_dicts;
  if (!options.user_metadata.is_null()) ours["user_metadata"] = options.user_metadata;
  return {{"zanj_cfg", cfg},
          {"sysinfo", sysinfo()},
          {"configured_model", ours},
          {"externals_info", info},
          {"timestamp", now}};
}

void check_metadata(const nlohmann::ordered_json& meta, const std::string& file,
                    const ReadOptions& options) {
  if (!meta.is_object()) {
    detail::throw_format_error(file, kMetaEntry, "expected a JSON object");
  }
  auto cm = meta.find("configured_model");
  if (cm == meta.end()) return;  // written by Python ZANJ or another tool: nothing to compare
  if (!cm->is_object()) {
    detail::throw_format_error(file, kMetaEntry, "'configured_model' must be an object");
  }
  auto fv = cm->find("format_version");
  if (fv != cm->end()) {
    if (!fv->is_number_integer()) {
      detail::throw_format_error(file, kMetaEntry, "'format_version' must be an integer");
    }
    const auto version = fv->get<std::int64_t>();
    if (version > kFormatVersion) {
      throw VersionError(detail::message(file, kMetaEntry,
                                         "format version " + std::to_string(version) +
                                             " is newer than this library understands "
                                             "(expected <= " +
                                             std::to_string(kFormatVersion) +
                                             "). Upgrade configured_model."));
    }
  }
  auto lv = cm->find("library_version");
  if (lv != cm->end() && lv->is_string() && *lv != kLibraryVersion) {
    note(options.error_mode == ErrorMode::kExcept ? ErrorMode::kWarn : options.error_mode, file,
         "written by configured_model " + lv->get<std::string>() + ", reading with " +
             kLibraryVersion);
  }
  const auto tv = meta.value("/sysinfo/libtorch/version"_json_pointer, std::string());
  if (!tv.empty() && tv != TORCH_VERSION) {
    note(options.error_mode == ErrorMode::kExcept ? ErrorMode::kWarn : options.error_mode, file,
         "written with libtorch " + tv + ", reading with " + TORCH_VERSION);
  }
}

}  // namespace zanj
