// SPDX-License-Identifier: MIT
// configured_model: save and restore whole LibTorch models (config + weights + training logs)
// as ZANJ archives that Python's `zanj` reads too. This umbrella header is what users include.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/Type.h>
#include <torch/nn/module.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "configured_model/archive.hpp"
#include "configured_model/async_saver.hpp"
#include "configured_model/checkpoint_manager.hpp"
#include "configured_model/checksum.hpp"
#include "configured_model/config.hpp"
#include "configured_model/dtype.hpp"
#include "configured_model/errors.hpp"
#include "configured_model/export.hpp"
#include "configured_model/file.hpp"
#include "configured_model/lazy_file.hpp"
#include "configured_model/logging.hpp"
#include "configured_model/metadata.hpp"
#include "configured_model/modules.hpp"
#include "configured_model/node.hpp"
#include "configured_model/npy.hpp"
#include "configured_model/options.hpp"
#include "configured_model/safetensors.hpp"
#include "configured_model/state_dict.hpp"
#include "configured_model/torch_file.hpp"
#include "configured_model/training_state.hpp"
#include "configured_model/verify.hpp"
#include "configured_model/version.hpp"
#include "configured_model/weights.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {
namespace detail {
template <class T, class = void>
struct has_zanj_class_name : std::false_type {};
template <class T>
struct has_zanj_class_name<T, std::void_t<decltype(T::zanj_class_name())>> : std::true_type {};
}  // namespace detail

/// Base class for models built from a plain config struct, saved and read whole.
///
/// A model derives from `ConfiguredModel<Self, Config>`, takes its Config in its constructor and
/// builds its layers from it. `save()` writes the config, the training records and every
/// parameter and buffer; `Self::read()` rebuilds the model from the stored config alone and
/// loads its tensors: no constructor arguments are needed at the reading site.
///
/// It uses CRTP (as torch's `Cloneable<Derived>` does) because `read()` is static and must
/// construct the user's class, whose type and constructor the base can only know through the
/// template parameter. Config is a separate parameter because `Derived::Config` cannot be
/// named while Derived is still incomplete.
///
/// The class tag stored in the file is the C++ class name without namespaces and without a
/// trailing "Impl" (so `MyNNImpl` behind `TORCH_MODULE(MyNN)` is stored as "MyNN", like the
/// Python class). Define `static std::string zanj_class_name()` in the model to choose another.
///
/// \code
///   struct MyNNConfig { int64_t input_dim = 10, hidden_dim = 20, output_dim = 2; };
///   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MyNNConfig, input_dim, hidden_dim, output_dim)
///
///   class MyNN : public zanj::ConfiguredModel<MyNN, MyNNConfig> {
///    public:
///     explicit MyNN(MyNNConfig c) : ConfiguredModel(std::move(c)) {
///       net = register_module("net", torch::nn::Linear(config().input_dim, config().output_dim));
///     }
///     torch::nn::Linear net{nullptr};
///   };
///
///   auto model = std::make_shared<MyNN>(MyNNConfig{});
///   model->training_records()["loss"].push_back(0.7);
///   model->save("run.zanj");
///   std::shared_ptr<MyNN> again = MyNN::read("run.zanj");
/// \endcode
template <class Derived, class Config>
class ConfiguredModel : public torch::nn::Module, public detail::HasTrainingRecords {
  static_assert(detail::is_json_round_trippable_v<Config>,
                "configured_model: Config must be convertible to and from nlohmann::json. Add "
                "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(YourConfig, field1, ...) in YourConfig's "
                "namespace, or define to_json/from_json there.");

 public:
  using config_type = Config;

  explicit ConfiguredModel(Config config) : config_(std::move(config)) {}

  /// The config the model was built from.
  const Config& config() const { return config_; }

  /// Free-form training logs saved with the model (JSON; null until first written).
  /// A ConfiguredModel nested in another keeps its own records: they are saved with the outer
  /// one (in `meta/nested_training_records`, by module path) and come back with it.
  nlohmann::json& training_records() { return training_records_; }
  const nlohmann::json& training_records() const { return training_records_; }
  nlohmann::json& records() override { return training_records_; }
  const nlohmann::json& records() const override { return training_records_; }

  /// A deep copy of this model: the same type (Derived) built from the same config, with
  /// copies of its parameters and buffers (dtypes, device and requires_grad kept), its
  /// training records and those of nested models. `device`, when given, is where the copy
  /// lives. Use std::dynamic_pointer_cast<Derived> for the typed pointer.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override {
    std::shared_ptr<Derived> copy = from_node(to_node(), "<clone of " + class_name() + ">");
    const auto mine = this->parameters();
    const auto theirs = copy->parameters();
    for (std::size_t i = 0; i < mine.size() && i < theirs.size(); ++i) {
      theirs[i].requires_grad_(mine[i].requires_grad());
    }
    if (device) {
      copy->to(*device);
    } else if (!mine.empty() && mine.front().device() != theirs.front().device()) {
      copy->to(mine.front().device());
    }
    return copy;
  }

  /// The model as a ZANJ tree: `zanj_model_config`, `meta`, `training_records`, `state_dict`
  /// and the class tag, exactly as Python's `ConfiguredModel.serialize()` lays it out.
  Node to_node() const {
    const auto& self = static_cast<const Derived&>(*this);
    return detail::model_node(self, class_name(), c10::demangle_type<Derived>(),
                              nlohmann::ordered_json(nlohmann::json(config_)), config_tag(),
                              training_records_, config_version(), detail::nested_records(self));
  }

  /// Saves the model to `path` (crash-safe: the old file stays intact until the new one is
  /// complete).
  /// @throws IoError if the file cannot be written.
  void save(const std::string& path, const SaveOptions& options = {}) const {
    zanj::save(to_node(), path, options);
  }

  /// Saves the model to a stream: the bytes save(path) would write.
  /// @throws IoError if the stream fails.
  void save(std::ostream& out, const SaveOptions& options = {}) const {
    zanj::save(to_node(), out, options);
  }

  /// Reads a model from a stream holding what save() writes (read to its end, then checked
  /// as a file is).
  static std::shared_ptr<Derived> read(std::istream& in, const ReadOptions& options = {}) {
    return adopt_node(zanj::read(in, options), "<stream>", options);
  }

  /// Reads a model saved by `save()` or by Python ZANJ's `ConfiguredModel.save()`: builds
  /// `Derived(config)` from the stored config, then reads every tensor straight into the
  /// model's own parameters and buffers (strict by default). With `options.mmap` the
  /// parameters alias a copy-on-write mapping of the file instead (see ReadOptions::mmap).
  /// @throws StateMismatchError if the file holds another class or tensors that do not fit,
  ///         ConfigError if the config cannot be parsed or the model not built from it,
  ///         FormatError / IoError / VersionError for unreadable files.
  static std::shared_ptr<Derived> read(const std::string& path, const ReadOptions& options = {}) {
    return read(path, options, nullptr);
  }

  /// read(), also handing back the whole tree of the file in `*tree` (when not null): what a
  /// checkpoint keeps beside the model (its `training_state`), read in the same pass. The
  /// tree's state_dict tensors are the model's own (no second copy).
  static std::shared_ptr<Derived> read(const std::string& path, const ReadOptions& options,
                                       Node* tree) {
    const detail::OpenedModel file = detail::open_model(path, class_name(), options);
    std::shared_ptr<Derived> model = construct(file.header, path, options);
    Node root =
        zanj::read(file.archive, file.document, options, detail::state_dict_destination(*model));
    model->finish(root, path, options, /*adopt=*/true, /*fresh=*/true);
    if (tree) *tree = std::move(root);
    return model;
  }

  /// Builds the model from an already read tree; `file` names it in messages. The model gets
  /// copies of the tree's tensors.
  static std::shared_ptr<Derived> from_node(const Node& root, const std::string& file,
                                            const ReadOptions& options = {}) {
    std::shared_ptr<Derived> model =
        construct(detail::model_parts(root, class_name(), file), file, options);
    model->finish(root, file, options, /*adopt=*/false, /*fresh=*/true);
    return model;
  }

  /// from_node() for a tree read for this model alone (say by read_distributed): the model
  /// takes the tree's tensors instead of copies, so that the weights are in memory once. The
  /// tree's state_dict tensors and the model's are then the same storage: do not pass the
  /// tree of a live model (to_node() shares its tensors).
  static std::shared_ptr<Derived> adopt_node(const Node& root, const std::string& file,
                                             const ReadOptions& options = {}) {
    std::shared_ptr<Derived> model =
        construct(detail::model_parts(root, class_name(), file), file, options);
    model->finish(root, file, options, /*adopt=*/true, /*fresh=*/true);
    return model;
  }

  /// Loads a saved model's tensors and training records into this model, straight into its
  /// parameter and buffer storage (no intermediate buffers). The stored class must be this
  /// one; a stored config that differs from config() is refused when `options.strict` (the
  /// default), else logged. If reading fails midway (say a CRC mismatch), the tensors read so
  /// far have been overwritten: call zanj::verify() first when the file is not trusted.
  /// @throws StateMismatchError, FormatError, IoError as read() does.
  void load(const std::string& path, const ReadOptions& options = {}) {
    const detail::OpenedModel file = detail::open_model(path, class_name(), options);
    const nlohmann::json mine(config_);
    const nlohmann::json stored(file.header.config);
    if (mine != stored) {
      const std::string what =
          "the stored config " + stored.dump() + " differs from this model's " + mine.dump();
      if (options.strict)
        throw StateMismatchError(detail::message(path, "zanj_model_config", what));
      logger()->warn("{}", detail::message(path, "zanj_model_config", what + " (non-strict load)"));
    }
    const Node root =
        zanj::read(file.archive, file.document, options, detail::state_dict_destination(*this));
    finish(root, path, options, /*adopt=*/options.mmap, /*fresh=*/false);
  }

  /// The class tag written to and required from files.
  static std::string class_name() {
    if constexpr (detail::has_zanj_class_name<Derived>::value) {
      return Derived::zanj_class_name();
    } else {
      std::string name = detail::short_type_name(c10::demangle_type<Derived>());
      constexpr std::string_view kImpl = "Impl";
      if (name.size() > kImpl.size() &&
          name.compare(name.size() - kImpl.size(), kImpl.size(), kImpl) == 0) {
        name.resize(name.size() - kImpl.size());
      }
      return name;
    }
  }

 private:
  static std::shared_ptr<Derived> construct(const detail::ModelParts& parts,
                                            const std::string& file, const ReadOptions& options) {
    static_assert(std::is_constructible_v<Derived, Config>,
                  "configured_model: a ConfiguredModel is rebuilt from its config alone, so its "
                  "constructor must take the Config and nothing else (give other arguments "
                  "defaults, or put them in the Config).");
    if constexpr (std::is_constructible_v<Derived, Config>) {
      return construct_from(parts, file, options);
    } else {
      return nullptr;
    }
  }

  static std::shared_ptr<Derived> construct_from(const detail::ModelParts& parts,
                                                 const std::string& file,
                                                 const ReadOptions& options) {
    detail::check_device(options, file);
    if (!parts.config_tag.empty() && parts.config_tag != config_tag()) {
      logger()->warn("{}: zanj_model_config: config class tag '{}' differs from '{}'", file,
                     parts.config_tag, config_tag());
    }
    nlohmann::json stored(parts.config);
    ConfigReport report;
    report.stored_version = parts.config_version;
    if constexpr (detail::has_config_version<Config>::value) {
      if (parts.config_version > config_version()) {
        throw VersionError(detail::message(
            file, "meta/config_version",
            "the config was saved at version " + std::to_string(parts.config_version) +
                ", newer than this code's " + std::to_string(config_version())));
      }
      if (parts.config_version < config_version()) {
        try {
          stored = Config::zanj_upgrade_config(std::move(stored), parts.config_version);
        } catch (const Error&) {
          throw;
        } catch (const std::exception& e) {
          throw ConfigError(detail::message(file, "zanj_model_config",
                                            "upgrading the config from version " +
                                                std::to_string(parts.config_version) +
                                                " failed: " + e.what()));
        }
        report.upgraded = true;
        logger()->info("{}: zanj_model_config: upgraded from version {} to {}", file,
                       parts.config_version, config_version());
      }
    }
    Config config = config_from_json<Config>(stored, file, &report);
    if (options.config_report) *options.config_report = report;
    std::shared_ptr<Derived> model;
    try {
      model = std::make_shared<Derived>(std::move(config));
    } catch (const Error&) {
      throw;
    } catch (const c10::Error& e) {
      throw ConfigError(
          detail::message(file, "zanj_model_config",
                          "constructing " + class_name() +
                              " from the stored config failed: " + e.what_without_backtrace()));
    } catch (const std::exception& e) {
      throw ConfigError(detail::message(
          file, "zanj_model_config",
          "constructing " + class_name() + " from the stored config failed: " + e.what()));
    }
    if (options.dtype) detail::convert_floating(*model, *options.dtype);
    return model;
  }

  // Loads the tensors and records of a read tree into this model.
  // `fresh`: the model was just built from the stored config (it takes the stored dtypes).
  void finish(const Node& root, const std::string& file, const ReadOptions& options, bool adopt,
              bool fresh) {
    const detail::ModelParts parts = detail::model_parts(root, class_name(), file);
    detail::load_state_dict(*this, *parts.state_dict, file, options, adopt, fresh);
    if (options.device) this->to(*options.device);
    training_records_ = nlohmann::json(parts.training_records);
    detail::restore_nested_records(*this, parts.nested_records, file);
  }

  static int config_version() {
    if constexpr (detail::has_config_version<Config>::value) {
      return Config::zanj_config_version;
    } else {
      return 0;
    }
  }

  static std::string config_tag() {
    return detail::short_type_name(c10::demangle_type<Config>()) + "(SerializableDataclass)";
  }

  Config config_;
  nlohmann::json training_records_;
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
