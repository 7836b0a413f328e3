// SPDX-License-Identifier: MIT
#include "configured_model/dtype.hpp"

#include <array>
#include <utility>

namespace zanj {
namespace {

struct DtypeNames {
  c10::ScalarType type;
  const char* numpy;
  const char* torch;
};

constexpr std::array<DtypeNames, 12> kNames{{
    {c10::ScalarType::Bool, "bool", "torch.bool"},
    {c10::ScalarType::Byte, "uint8", "torch.uint8"},
    {c10::ScalarType::Char, "int8", "torch.int8"},
    {c10::ScalarType::Short, "int16", "torch.int16"},
    {c10::ScalarType::Int, "int32", "torch.int32"},
    {c10::ScalarType::Long, "int64", "torch.int64"},
    {c10::ScalarType::Half, "float16", "torch.float16"},
    {c10::ScalarType::BFloat16, "bfloat16", "torch.bfloat16"},
    {c10::ScalarType::Float, "float32", "torch.float32"},
    {c10::ScalarType::Double, "float64", "torch.float64"},
    {c10::ScalarType::ComplexFloat, "complex64", "torch.complex64"},
    {c10::ScalarType::ComplexDouble, "complex128", "torch.complex128"},
}};

// Other spellings. numpy and torch disagree on some ("float" is float64 to numpy and float32 to
// torch; "byte" is int8 to numpy and uint8 to torch), so the tables are kept apart.
using Alias = std::pair<const char*, c10::ScalarType>;
constexpr std::array<Alias, 15> kNumpyAliases{{
    {"bool_", c10::ScalarType::Bool},
    {"bool8", c10::ScalarType::Bool},
    {"ubyte", c10::ScalarType::Byte},
    {"byte", c10::ScalarType::Char},
    {"short", c10::ScalarType::Short},
    {"intc", c10::ScalarType::Int},
    {"int", c10::ScalarType::Long},
    {"int_", c10::ScalarType::Long},
    {"longlong", c10::ScalarType::Long},
    {"half", c10::ScalarType::Half},
    {"single", c10::ScalarType::Float},
    {"float", c10::ScalarType::Double},
    {"double", c10::ScalarType::Double},
    {"csingle", c10::ScalarType::ComplexFloat},
    {"cdouble", c10::ScalarType::ComplexDouble},
}};
constexpr std::array<Alias, 9> kTorchAliases{{
    {"byte", c10::ScalarType::Byte},
    {"short", c10::ScalarType::Short},
    {"int", c10::ScalarType::Int},
    {"long", c10::ScalarType::Long},
    {"half", c10::ScalarType::Half},
    {"float", c10::ScalarType::Float},
    {"double", c10::ScalarType::Double},
    {"cfloat", c10::ScalarType::ComplexFloat},
    {"cdouble", c10::ScalarType::ComplexDouble},
}};

const DtypeNames* find(c10::ScalarType t) {
  for (const auto& n : kNames) {
    if (n.type == t) return &n;
  }
  return nullptr;
}

}  // namespace

std::string numpy_dtype_name(c10::ScalarType dtype) {
  const auto* n = find(dtype);
  return n ? n->numpy : std::string(c10::toString(dtype));
}

std::string torch_dtype_name(c10::ScalarType dtype) {
  const auto* n = find(dtype);
  return n ? n->torch : "torch." + std::string(c10::toString(dtype));
}

std::optional<c10::ScalarType> parse_dtype_name(std::string_view name) {
  // "<class 'numpy.float32'>" and "<class 'torch.float32'>" (keys of Python's TORCH_DTYPE_MAP).
  constexpr std::string_view kClassPrefix = "<class '";
  if (name.substr(0, kClassPrefix.size()) == kClassPrefix &&
      name.size() > kClassPrefix.size() + 2 && name.substr(name.size() - 2) == "'>") {
    name = name.substr(kClassPrefix.size(), name.size() - kClassPrefix.size() - 2);
    if (name.substr(0, 6) == "numpy.") name.remove_prefix(6);
  }
  const bool torch_prefixed = name.substr(0, 6) == "torch.";
  if (torch_prefixed) name.remove_prefix(6);
  for (const auto& n : kNames) {
    if (name == n.numpy) return n.type;
  }
  const Alias* begin = torch_prefixed ? kTorchAliases.data() : kNumpyAliases.data();
  const Alias* end = begin + (torch_prefixed ? kTorchAliases.size() : kNumpyAliases.size());
  for (const Alias* a = begin; a != end; ++a) {
    if (name == a->first) return a->second;
  }
  return std::nullopt;
}

}  // namespace zanj
