// SPDX-License-Identifier: MIT
// Where a run is in its data: saved with every checkpoint, so that a run resumed mid-epoch sees
// exactly the batches the uninterrupted run saw.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/data/samplers/base.h>
#include <torch/data/samplers/distributed.h>
#include <torch/data/samplers/random.h>
#include <torch/data/samplers/sequential.h>
#include <torch/serialize/archive.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "configured_model/export.hpp"
#include "configured_model/node.hpp"

CONFIGURED_MODEL_API_BEGIN

namespace zanj {

/// Something whose place in the data a checkpoint keeps. ResumableSampler provides one; implement
/// it for your own data pipeline and set TrainingState::data to it.
class DataPosition {
 public:
  virtual ~DataPosition() = default;
  /// The current position as a tree (called when a checkpoint is taken).
  virtual Node position() const = 0;
  /// Puts the data back at a position that position() returned; `file` names it in messages.
  virtual void restore(const Node& position, const std::string& file) = 0;
};

/// The archive keys under which a libtorch sampler's save() writes its state (one tensor each).
/// Specialize it for your own samplers.
template <class Sampler>
struct SamplerKeys;
template <>
struct SamplerKeys<torch::data::samplers::RandomSampler> {
  static std::vector<std::string> keys() { return {"index", "indices"}; }
  static constexpr const char* kName = "RandomSampler";
};
template <>
struct SamplerKeys<torch::data::samplers::SequentialSampler> {
  static std::vector<std::string> keys() { return {"index"}; }
  static constexpr const char* kName = "SequentialSampler";
};
template <>
struct SamplerKeys<torch::data::samplers::DistributedRandomSampler> {
  static std::vector<std::string> keys() { return {"sample_index_", "epoch_"}; }
  static constexpr const char* kName = "DistributedRandomSampler";
};
template <>
struct SamplerKeys<torch::data::samplers::DistributedSequentialSampler> {
  static std::vector<std::string> keys() { return {"sample_index_", "epoch_"}; }
  static constexpr const char* kName = "DistributedSequentialSampler";
};

namespace detail {
/// The tensors `save` writes under `keys`, as a dict node with "sampler": `name`.
Node sampler_node(const std::string& name, const std::vector<std::string>& keys,
                  const std::function<void(torch::serialize::OutputArchive&)>& save);
/// Checks `node` (its sampler name, every key a tensor, indices in range) and hands its tensors
/// to `load` as an archive.
/// @throws StateMismatchError for another sampler type, FormatError for a malformed position.
void load_sampler_node(const Node& node, const std::string& name,
                       const std::vector<std::string>& keys, const std::string& file,
                       const std::function<void(torch::serialize::InputArchive&)>& load);
}  // namespace detail

/// A libtorch sampler whose position goes into checkpoints. Use it where you would use the
/// sampler itself; copies share one position, so the copy a DataLoader keeps and yours agree.
///
/// \code
///   zanj::ResumableSampler<torch::data::samplers::RandomSampler> sampler(
///       torch::data::samplers::RandomSampler(dataset.size().value()));
///   if (resuming) run.restore(sampler);  // the batches continue where the checkpoint was
///   state.data = sampler.position();     // every checkpoint keeps the position from now on
///   auto loader = torch::data::make_data_loader(dataset, sampler, batch_size);
/// \endcode
///
/// After a restore the loader's next epoch start (its reset()) is skipped once, so the epoch
/// the checkpoint was taken in goes on. The position is the sampler's: exact with the
/// DataLoader's default of 0 workers; with workers the loader prefetches ahead of what the
/// training loop has consumed, and the saved position includes the prefetched batches.
template <class Sampler>
class ResumableSampler : public torch::data::samplers::Sampler<typename Sampler::BatchRequestType> {
 public:
  using BatchRequestType = typename Sampler::BatchRequestType;

  explicit ResumableSampler(Sampler sampler)
      : shared_(std::make_shared<Shared>(std::move(sampler))) {}

  void reset(torch::optional<size_t> new_size = torch::nullopt) override {
    if (shared_->skip_reset && !new_size) {
      shared_->skip_reset = false;
      return;
    }
    shared_->skip_reset = false;
    shared_->sampler.reset(new_size);
  }

  torch::optional<BatchRequestType> next(size_t batch_size) override {
    shared_->skip_reset = false;
    return shared_->sampler.next(batch_size);
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    shared_->sampler.save(archive);
  }
  void load(torch::serialize::InputArchive& archive) override { shared_->sampler.load(archive); }

  /// The position shared by every copy of this sampler: set TrainingState::data to it.
  std::shared_ptr<DataPosition> position() const { return shared_; }

  /// The wrapped sampler (e.g. to call DistributedRandomSampler::set_epoch).
  Sampler& sampler() { return shared_->sampler; }

 private:
  struct Shared : DataPosition {
    explicit Shared(Sampler s) : sampler(std::move(s)) {}
    Node position() const override {
      return detail::sampler_node(SamplerKeys<Sampler>::kName, SamplerKeys<Sampler>::keys(),
                                  [&](torch::serialize::OutputArchive& a) { sampler.save(a); });
    }
    void restore(const Node& position, const std::string& file) override {
      detail::load_sampler_node(position, SamplerKeys<Sampler>::kName, SamplerKeys<Sampler>::keys(),
                                file, [&](torch::serialize::InputArchive& a) { sampler.load(a); });
      skip_reset = true;
    }
    Sampler sampler;
    bool skip_reset = false;
  };
  std::shared_ptr<Shared> shared_;
};

}  // namespace zanj

CONFIGURED_MODEL_API_END
