// SPDX-License-Identifier: MIT
// A restricted unpickler: the bytes of a Python pickle in, a tree of plain values out. Only the
// globals a weights-only torch.save payload needs are accepted (PyTorch's weights_only policy);
// any other global, and every opcode that would build an arbitrary object, is an error. Nothing
// a file says is executed. Also the matching writer (protocol 2) of state dicts for torch.load.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "configured_model/node.hpp"

namespace zanj::detail {

struct PyObject;
/// Objects belong to the Pickled they came from (an arena), so references are plain pointers: a
/// list that holds itself does not leak, and 100,000 nested lists are freed without recursing.
/// The arena is charged against PickleLimits::max_bytes as it grows (objects are kept until the
/// end, so a payload that builds and drops millions of objects is refused, not followed).
using PyRef = PyObject*;

/// One value of an unpickled payload. Lists and dicts are shared by reference, as in Python
/// (the memo hands out the same object again).
struct PyObject {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kTensor,
    kStorage
  };
  Kind kind = Kind::kNone;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0.0;
  std::string text;                              ///< str, bytes, or a global's "module.name"
  std::vector<PyRef> items;                      ///< tuple, list
  std::vector<std::pair<PyRef, PyRef>> entries;  ///< dict (insertion order)
  at::Tensor tensor;                             ///< tensor; storage: a 1-D tensor of its dtype
  /// dict: entry position by str key (viewing the key's own text) and by int key, built once a
  /// dict outgrows a short linear scan; bool, None and float keys are few and scanned.
  struct DictIndex {
    std::unordered_map<std::string_view, std::size_t> by_str;
    std::unordered_map<std::int64_t, std::size_t> by_int;
  };
  std::unique_ptr<DictIndex> index;
  bool mixed_keys = false;  ///< dict: keys of more than one kind (their texts may collide)
  /// Filled in by to_node's costing pass (each object is costed once however often it is shared).
  std::uint64_t cost_values = 0, cost_bytes = 0;
};

/// An unpickled payload: every object it built, and the one STOP returned.
struct Pickled {
  std::deque<PyObject> objects;  ///< addresses stay put as it grows and when it is moved
  PyRef root = nullptr;
};

/// Resolves a persistent id ('storage', <dtype>, key, location, numel) to the storage's
/// elements as a 1-D tensor; called once per key (the unpickler caches).
using StorageLoader =
    std::function<at::Tensor(const std::string& key, c10::ScalarType dtype, std::int64_t numel)>;

struct PickleLimits {
  std::size_t max_depth = 512;          ///< nesting of containers
  std::size_t max_values = 50'000'000;  ///< values built from the tree (shared ones count again)
  std::size_t max_stack = 10'000'000;   ///< items on the unpickler's stack
  /// Bytes the unpickler's objects may take, and separately the bytes the tree built from them
  /// may take with shared values counted at each reference and views that overlap themselves
  /// (a zero stride) counted at their full size. Exceeded: LimitError.
  std::uint64_t max_bytes = 512ULL << 20;
};

/// Unpickles `bytes` (the payload of `file`'s `entry`). Refuses any global outside the weights
/// allow-list with an UnsafeContentError naming it; malformed or truncated data is a FormatError.
Pickled unpickle(std::string_view bytes, const std::string& file, const std::string& entry,
                 const StorageLoader& load_storage, const PickleLimits& limits = {});

/// The payload as a Node tree: dicts (keys that are ints become their decimal text), lists and
/// tuples become lists, tensors stay tensors (views keep sharing their storage), dtypes and
/// devices become strings.
Node to_node(const Pickled& value, const std::string& file, const PickleLimits& limits = {});

/// The storage type global torch.save names for `dtype` (e.g. "FloatStorage").
/// @throws FormatError for a dtype torch.save has no storage type for.
std::string storage_type_name(c10::ScalarType dtype);

/// A state dict or nested checkpoint pickled as torch.save does (protocol 2): `storage_key` is
/// called once per distinct storage and returns the key under which the caller writes its bytes.
std::string pickle_tree(
    const Node& root,
    const std::function<std::string(const at::Tensor& storage_tensor)>& storage_key);

}  // namespace zanj::detail
