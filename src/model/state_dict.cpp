// SPDX-License-Identifier: MIT
// Model <-> tree: state_dict order, strict loading, the ConfiguredModel layout.
#include "configured_model/state_dict.hpp"

#include <torch/torch.h>
#include <zlib.h>

#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "configured_model/errors.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/weights.hpp"

namespace zanj {
namespace {

using ojson = nlohmann::ordered_json;

void collect(const torch::nn::Module& m, const std::string& prefix, StateDict& out) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) {
    out.emplace_back(prefix + p.key(), p.value());
  }
  for (const auto& b : m.named_buffers(/*recurse=*/false)) {
    out.emplace_back(prefix + b.key(), b.value());
  }
  for (const auto& c : m.named_children()) {
    collect(*c.value(), prefix + c.key() + ".", out);
  }
}

using detail::shape_text;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

StateDict state_dict(const torch::nn::Module& module) {
  StateDict out;
  collect(module, "", out);
  return out;
}

void load_state_dict(torch::nn::Module& module, const Node& stored, const std::string& file,
                     const ReadOptions& options) {
  detail::load_state_dict(module, stored, file, options, false);
}

namespace detail {

TensorDestination state_dict_destination(const torch::nn::Module& module) {
  auto targets = std::make_shared<std::unordered_map<std::string, at::Tensor>>();
  for (auto& [name, tensor] : state_dict(module)) targets->emplace("state_dict/" + name, tensor);
  return [targets](const std::string& path) {
    auto it = targets->find(path);
    return it == targets->end() ? at::Tensor() : it->second;
  };
}

void load_state_dict(torch::nn::Module& module, const Node& stored, const std::string& file,
                     const ReadOptions& options, bool adopt, bool fresh) {
  if (!stored.is_dict()) {
    detail::throw_format_error(file, "state_dict", "expected a dict of tensors");
  }
  // With options.dtype, floating tensors are compared and copied as that dtype.
  std::unordered_map<std::string, at::Tensor> by_name;
  for (const auto& [key, value] : stored.as_dict()) {
    if (!value.is_tensor()) {
      detail::throw_format_error(file, "state_dict/" + key, "expected a tensor");
    }
    const at::Tensor& t = value.tensor();
    by_name.emplace(key, options.dtype && t.is_floating_point() ? t.to(*options.dtype) : t);
  }
  StateDict target = state_dict(module);
  std::vector<std::string> missing, unexpected, shapes, dtypes;
  std::unordered_set<std::string> known;
  for (const auto& [name, tensor] : target) {
    known.insert(name);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      missing.push_back(name);
      continue;
    }
    const at::Tensor& src = it->second;
    if (src.sizes() != tensor.sizes()) {
      shapes.push_back(name + " (expected " + shape_text(tensor.sizes()) + ", found " +
                       shape_text(src.sizes()) + ")");
    } else if (src.scalar_type() != tensor.scalar_type() && fresh && !options.dtype &&
               src.is_floating_point() && tensor.is_floating_point()) {
      torch::NoGradGuard no_grad;
      const_cast<at::Tensor&>(tensor).set_data(tensor.to(src.scalar_type()));
    } else if (src.scalar_type() != tensor.scalar_type()) {
      dtypes.push_back(name + " (expected " + std::string(c10::toString(tensor.scalar_type())) +
                       ", found " + c10::toString(src.scalar_type()) + ")");
    }
  }
  for (const auto& [key, value] : stored.as_dict()) {
    if (!known.count(key)) unexpected.push_back(key);
  }
  std::vector<std::string> problems;
  if (!shapes.empty()) problems.push_back("shape mismatch: " + join(shapes));
  if (!dtypes.empty()) {
    problems.push_back("dtype mismatch: " + join(dtypes) +
                       " (convert the model first, e.g. ->to(torch::kFloat64), or read with "
                       "ReadOptions::dtype)");
  }
  if (options.strict) {
    if (!missing.empty()) problems.push_back("missing keys: " + join(missing));
    if (!unexpected.empty()) problems.push_back("unexpected keys: " + join(unexpected));
  } else if (!missing.empty() || !unexpected.empty()) {
    logger()->warn("{}: state_dict: non-strict load: missing keys [{}], unexpected keys [{}]", file,
                   join(missing), join(unexpected));
  }
  if (!problems.empty()) {
    std::string what = "does not fit the model";
    for (const auto& p : problems) what += "; " + p;
    throw StateMismatchError(detail::message(file, "state_dict", what));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : target) {
    auto it = by_name.find(name);
    if (it == by_name.end()) continue;
    const at::Tensor& src = it->second;
    if (src.numel() > 0 && src.data_ptr() == tensor.data_ptr()) continue;  // read in place
    if (adopt && tensor.device() == src.device()) {
      tensor.set_data(src);  // the tree was read for this module alone: take its storage
    } else {
      tensor.copy_(src);
    }
  }
}

}  // namespace detail

std::string state_digest(const StateDict& tensors) {
  // Two independent 32-bit checksums from zlib (CRC-32 and Adler-32) over everything.
  uLong crc = crc32(0L, Z_NULL, 0);
  uLong adler = adler32(0L, Z_NULL, 0);
  auto feed = [&](const void* data, std::size_t n) {
    const auto* p = static_cast<const Bytef*>(data);
    while (n > 0) {
      const auto chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
      crc = crc32(crc, p, chunk);
      adler = adler32(adler, p, chunk);
      p += chunk;
      n -= chunk;
    }
  };
  for (const auto& [name, tensor] : tensors) {
    const std::string header =
        name + "|" + c10::toString(tensor.scalar_type()) + "|" + shape_text(tensor.sizes()) + "|";
    feed(header.data(), header.size());
    const auto t = tensor.detach().to(at::kCPU).contiguous();
    feed(t.data_ptr(), static_cast<std::size_t>(t.numel()) * t.element_size());
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%08lx%08lx", crc & 0xffffffffUL, adler & 0xffffffffUL);
  return out;
}

namespace detail {

namespace {

// The class tag check shared by model_parts() and model_header(); `tag` may be null.
void check_class_tag(const ojson* tag, const std::string& class_name, const std::string& file) {
  if (!tag || !tag->is_string()) {
    throw StateMismatchError(message(
        file, "__muutils_format__",
        "expected model class '" + class_name + "', found no class tag (not a saved model)"));
  }
  const auto& found = tag->get_ref<const std::string&>();
  if (found != class_name) {
    throw StateMismatchError(message(file, "__muutils_format__",
                                     "model class mismatch (expected '" + class_name +
                                         "', found '" + found + "'). Read it with " + found +
                                         "::read() (or " + found +
                                         "Impl::read() behind TORCH_MODULE)."));
  }
}

// `meta/config_version` (written for configs that declare zanj_config_version), else 0.
int config_version(const ojson* meta) {
  if (!meta || !meta->is_object()) return 0;
  auto it = meta->find("config_version");
  if (it == meta->end() || !it->is_number_integer()) return 0;
  const auto v = it->get<std::int64_t>();
  return v > 0 && v < (1 << 30) ? static_cast<int>(v) : 0;
}

void split_config_tag(ModelParts& parts) {
  if (!parts.config.is_object()) return;
  auto it = parts.config.find("__muutils_format__");
  if (it == parts.config.end()) return;
  if (it->is_string()) parts.config_tag = it->get<std::string>();
  parts.config.erase(it);
}

[[noreturn]] void not_a_model(const std::string& file, const std::string& class_name) {
  throw StateMismatchError(message(
      file, "__zanj__.json",
      "expected a model (a dict tagged '" + class_name + "'), found a tree that is not a dict"));
}

}  // namespace

ModelParts model_header(const nlohmann::ordered_json& tree, const std::string& class_name,
                        const std::string& file) {
  if (!tree.is_object()) not_a_model(file, class_name);
  auto tag = tree.find("__muutils_format__");
  if (tag == tree.end()) tag = tree.find("__format__");
  check_class_tag(tag == tree.end() ? nullptr : &*tag, class_name, file);
  ModelParts parts;
  auto config = tree.find("zanj_model_config");
  if (config == tree.end()) throw_format_error(file, "zanj_model_config", "missing");
  parts.config = *config;
  split_config_tag(parts);
  parts.config_version =
      config_version(tree.find("meta") == tree.end() ? nullptr : &*tree.find("meta"));
  return parts;
}

void check_device(const ReadOptions& options, const std::string& file) {
  if (!options.device || !options.device->is_cuda()) return;
  const std::size_t available = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  const auto index = options.device->has_index() ? options.device->index() : 0;
  if (static_cast<std::size_t>(index) >= available) {
    throw UsageError(message(file, "ReadOptions::device",
                             options.device->str() + " was asked for, but this process has " +
                                 std::to_string(available) +
                                 " CUDA device(s) (a CPU-only libtorch, or no GPU)"));
  }
}

namespace {

// A file that is not a ZANJ archive but one of the weight formats load_weights() reads.
[[noreturn]] void not_zanj(const std::string& path, WeightsFormat format) {
  const std::string what = format == WeightsFormat::kSafetensors ? "a safetensors file"
                           : format == WeightsFormat::kLibtorch  ? "a libtorch torch::save archive"
                                                                 : "a PyTorch torch.save file";
  throw FormatError(
      message(path, "",
              what +
                  ", not a saved model: it holds weights without a config. Load them into "
                  "a model you build with zanj::load_weights(*model, path), or convert the "
                  "file with `zanj convert " +
                  path + " out.zanj`"));
}

}  // namespace

OpenedModel open_model(const std::string& path, const std::string& class_name,
                       const ReadOptions& options) {
  std::optional<ArchiveReader> opened;
  Document document;
  try {
    opened.emplace(ArchiveReader::open(path, options.archive_limits));
    document = read_document(*opened, options);
  } catch (const FormatError&) {
    WeightsFormat format = WeightsFormat::kZanj;
    try {
      format = detect_format(path);
    } catch (const Error&) {
    }
    if (format != WeightsFormat::kZanj) not_zanj(path, format);
    throw;
  }
  ArchiveReader archive = std::move(*opened);
  ModelParts header;
  try {
    header = model_header(document.tree, class_name, path);
  } catch (...) {
    rethrow_as_format_error(path);
  }
  return {std::move(archive), std::move(document), std::move(header)};
}

ModelParts model_parts(const Node& root, const std::string& class_name, const std::string& file) {
  if (!root.is_dict()) not_a_model(file, class_name);
  const Node* tag = root.find("__muutils_format__");
  if (!tag) tag = root.find("__format__");
  check_class_tag(tag && tag->is_scalar() ? &tag->scalar() : nullptr, class_name, file);
  ModelParts parts;
  const Node* config = root.find("zanj_model_config");
  if (!config) throw_format_error(file, "zanj_model_config", "missing");
  try {
    parts.config = config->to_json();
  } catch (const FormatError& e) {
    throw_format_error(file, "zanj_model_config", e.what());
  }
  split_config_tag(parts);
  if (const Node* meta = root.find("meta"); meta && !meta->contains_tensor()) {
    const ojson m = meta->to_json();
    parts.config_version = config_version(&m);
    if (m.is_object()) {
      auto nested = m.find("nested_training_records");
      if (nested != m.end() && nested->is_object()) parts.nested_records = *nested;
    }
  }
  if (const Node* records = root.find("training_records")) {
    if (records->contains_tensor()) {
      // Python may store arrays in its logs; we keep their values as nested JSON lists.
      logger()->warn("{}: training_records: tensors converted to JSON lists", file);
      std::function<Node(const Node&)> flatten = [&](const Node& n) -> Node {
        if (n.is_tensor()) {
          auto t = n.tensor().to(at::kDouble).contiguous();
          nlohmann::json values =
              std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
          return Node(values);
        }
        if (n.is_list()) {
          Node::List l;
          for (const auto& i : n.as_list()) l.push_back(flatten(i));
          return Node(std::move(l));
        }
        if (n.is_dict()) {
          Node::Dict d;
          for (const auto& [k, v] : n.as_dict()) d.emplace_back(k, flatten(v));
          return Node(std::move(d));
        }
        return n;
      };
      parts.training_records = flatten(*records).to_json();
    } else {
      parts.training_records = records->to_json();
    }
  }
  parts.state_dict = root.find("state_dict");
  if (!parts.state_dict) throw_format_error(file, "state_dict", "missing");
  return parts;
}

nlohmann::json nested_records(const torch::nn::Module& module) {
  nlohmann::json out;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    const auto* holder = dynamic_cast<const HasTrainingRecords*>(item.value().get());
    if (holder && !holder->records().is_null()) out[item.key()] = holder->records();
  }
  return out;
}

void restore_nested_records(torch::nn::Module& module, const nlohmann::json& nested,
                            const std::string& file) {
  if (!nested.is_object()) return;
  const auto modules = module.named_modules("", /*include_self=*/false);
  for (auto it = nested.begin(); it != nested.end(); ++it) {
    const auto* found = modules.find(it.key());
    auto* holder = found ? dynamic_cast<HasTrainingRecords*>(found->get()) : nullptr;
    if (!holder) {
      logger()->warn("{}: meta/nested_training_records/{}: no nested model of that name: ignored",
                     file, it.key());
      continue;
    }
    holder->records() = it.value();
  }
}

Node model_node(const torch::nn::Module& module, const std::string& class_name,
                const std::string& cpp_type, nlohmann::ordered_json config,
                const std::string& config_tag, const nlohmann::json& training_records,
                int config_version, const nlohmann::json& nested_records) {
  ojson tagged_config = ojson::object();
  tagged_config["__muutils_format__"] = config_tag;
  if (config.is_object()) {
    for (auto it = config.begin(); it != config.end(); ++it) tagged_config[it.key()] = it.value();
  } else {
    tagged_config = std::move(config);
  }
  Node config_node(tagged_config);
  config_node.set_keep_inline(true);

  std::int64_t num_params = 0;
  std::unordered_set<const void*> seen;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad() && seen.insert(p.unsafeGetTensorImpl()).second) num_params += p.numel();
  }
  std::ostringstream printed;
  printed << module;
  ojson as_str = ojson::array();
  std::string line;
  std::istringstream lines(printed.str());
  while (std::getline(lines, line)) as_str.push_back(line);
  ojson meta = {{"class_name", class_name},
                {"class_doc", ojson::array()},
                {"class_source", ojson::array()},
                {"module_name", "configured_model (C++)"},
                {"cpp_type", cpp_type},
                {"num_params", num_params},
                {"as_str", as_str}};
  if (config_version > 0) meta["config_version"] = config_version;
  if (!nested_records.is_null()) meta["nested_training_records"] = nested_records;

  Node::Dict tensors;
  for (auto& [name, tensor] : state_dict(module)) tensors.emplace_back(name, Node(tensor.detach()));

  Node root = Node::dict();
  root["zanj_model_config"] = std::move(config_node);
  root["meta"] = Node(meta);
  root["training_records"] = Node(training_records);
  root["state_dict"] = Node(std::move(tensors));
  root["__muutils_format__"] = Node(ojson(class_name));
  return root;
}

void convert_floating(torch::nn::Module& module, c10::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.is_floating_point() && p.scalar_type() != dtype) p.set_data(p.to(dtype));
  }
  for (auto& b : module.buffers()) {
    if (b.is_floating_point() && b.scalar_type() != dtype) b.set_data(b.to(dtype));
  }
}

std::string short_type_name(const std::string& demangled) {
  std::string s = demangled;
  // Drop template arguments, then namespaces.
  if (auto lt = s.find('<'); lt != std::string::npos) s = s.substr(0, lt);
  if (auto colon = s.rfind("::"); colon != std::string::npos) s = s.substr(colon + 2);
  return s;
}

}  // namespace detail
}  // namespace zanj
