// SPDX-License-Identifier: MIT
#include "configured_model/node.hpp"

#include <c10/core/ScalarType.h>

#include <cstring>

#include "configured_model/errors.hpp"

namespace zanj {
namespace {

const char* kind_name(const Node& n) {
  if (n.is_tensor()) return "a tensor";
  if (n.is_list()) return "a list";
  if (n.is_dict()) return "a dict";
  if (n.is_null()) return "null";
  return "a JSON scalar";
}

template <class Json>
void from_json_value(const Json& value, Node& out) {
  if (value.is_object()) {
    Node::Dict d;
    d.reserve(value.size());
    for (auto it = value.begin(); it != value.end(); ++it) {
      d.emplace_back(it.key(), Node(it.value()));
    }
    out = Node(std::move(d));
  } else if (value.is_array()) {
    Node::List l;
    l.reserve(value.size());
    for (const auto& item : value) l.emplace_back(item);
    out = Node(std::move(l));
  }
}

[[noreturn]] void wrong_kind(const Node& n, const char* wanted) {
  throw FormatError(std::string("tree node is ") + kind_name(n) + ", expected " + wanted);
}

}  // namespace

Node::Node(const nlohmann::json& value) : value_(nlohmann::ordered_json()) {
  if (value.is_structured()) {
    from_json_value(value, *this);
  } else {
    value_ = nlohmann::ordered_json(value);
  }
}

Node::Node(const nlohmann::ordered_json& value) : value_(nlohmann::ordered_json()) {
  if (value.is_structured()) {
    from_json_value(value, *this);
  } else {
    value_ = value;
  }
}

Node::Node(at::Tensor tensor) : value_(std::move(tensor)) {}
Node::Node(List list) : value_(std::move(list)) {}
Node::Node(Dict dict) : value_(std::move(dict)) {}

bool Node::is_null() const {
  return is_scalar() && std::get<nlohmann::ordered_json>(value_).is_null();
}

const at::Tensor& Node::tensor() const {
  if (!is_tensor()) wrong_kind(*this, "a tensor");
  return std::get<at::Tensor>(value_);
}

const nlohmann::ordered_json& Node::scalar() const {
  if (!is_scalar()) wrong_kind(*this, "a JSON scalar");
  return std::get<nlohmann::ordered_json>(value_);
}

const Node::List& Node::as_list() const {
  if (!is_list()) wrong_kind(*this, "a list");
  return std::get<List>(value_);
}

Node::List& Node::as_list() {
  if (!is_list()) wrong_kind(*this, "a list");
  return std::get<List>(value_);
}

const Node::Dict& Node::as_dict() const {
  if (!is_dict()) wrong_kind(*this, "a dict");
  return std::get<Dict>(value_);
}

Node::Dict& Node::as_dict() {
  if (!is_dict()) wrong_kind(*this, "a dict");
  return std::get<Dict>(value_);
}

std::size_t Node::size() const {
  if (is_list()) return std::get<List>(value_).size();
  if (is_dict()) return std::get<Dict>(value_).size();
  return 0;
}

Node& Node::operator[](const std::string& key) {
  if (is_null()) value_ = Dict{};
  if (Node* found = find(key)) return *found;
  auto& d = as_dict();
  d.emplace_back(key, Node());
  return d.back().second;
}

const Node* Node::find(const std::string& key) const {
  if (!is_dict()) return nullptr;
  for (const auto& [k, v] : std::get<Dict>(value_)) {
    if (k == key) return &v;
  }
  return nullptr;
}

Node* Node::find(const std::string& key) {
  return const_cast<Node*>(static_cast<const Node*>(this)->find(key));
}

const Node& Node::at(const std::string& key) const {
  const auto& d = as_dict();
  for (const auto& [k, v] : d) {
    if (k == key) return v;
  }
  throw FormatError("key '" + key + "' not found in the dict");
}

Node& Node::at(const std::string& key) {
  return const_cast<Node&>(static_cast<const Node*>(this)->at(key));
}

const Node& Node::at(std::size_t index) const {
  const auto& l = as_list();
  if (index >= l.size()) {
    throw FormatError("list index " + std::to_string(index) + " out of range (size " +
                      std::to_string(l.size()) + ")");
  }
  return l[index];
}

void Node::push_back(Node item) {
  if (is_null()) value_ = List{};
  as_list().push_back(std::move(item));
}

bool Node::erase(const std::string& key) {
  if (!is_dict()) return false;
  auto& d = std::get<Dict>(value_);
  for (auto it = d.begin(); it != d.end(); ++it) {
    if (it->first == key) {
      d.erase(it);
      return true;
    }
  }
  return false;
}

nlohmann::ordered_json Node::to_json() const {
  if (is_scalar()) return std::get<nlohmann::ordered_json>(value_);
  if (is_tensor()) throw FormatError("tree holds a tensor where JSON was expected");
  if (is_list()) {
    auto out = nlohmann::ordered_json::array();
    const auto& l = std::get<List>(value_);
    for (std::size_t i = 0; i < l.size(); ++i) {
      try {
        out.push_back(l[i].to_json());
      } catch (const FormatError& e) {
        throw FormatError(std::to_string(i) + "/" + e.what());
      }
    }
    return out;
  }
  auto out = nlohmann::ordered_json::object();
  for (const auto& [k, v] : std::get<Dict>(value_)) {
    try {
      out[k] = v.to_json();
    } catch (const FormatError& e) {
      throw FormatError(k + "/" + e.what());
    }
  }
  return out;
}

bool Node::contains_tensor() const {
  if (is_tensor()) return true;
  if (is_list()) {
    for (const auto& v : std::get<List>(value_)) {
      if (v.contains_tensor()) return true;
    }
  } else if (is_dict()) {
    for (const auto& kv : std::get<Dict>(value_)) {
      if (kv.second.contains_tensor()) return true;
    }
  }
  return false;
}

namespace {

std::string describe(const Node& n) {
  if (n.is_tensor()) {
    const at::Tensor& t = n.tensor();
    std::string shape;
    for (const auto d : t.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    return std::string(c10::toString(t.scalar_type())) + " [" + shape + "]";
  }
  if (n.is_scalar()) return n.scalar().dump();
  return kind_name(n);
}

bool same_tensor(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ca = a.contiguous().cpu();
  const at::Tensor cb = b.contiguous().cpu();
  const std::size_t n = static_cast<std::size_t>(ca.numel()) * ca.element_size();
  return n == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), n) == 0;
}

std::optional<std::string> difference(const Node& a, const Node& b, const std::string& path) {
  const auto here = [&](const std::string& what) {
    return std::optional<std::string>((path.empty() ? "/" : path) + ": " + what);
  };
  if (a.is_dict() && b.is_dict()) {
    const Node::Dict& da = a.as_dict();
    const Node::Dict& db = b.as_dict();
    if (a.key_type() != b.key_type()) {
      const auto name = [](Node::KeyType t) { return t == Node::KeyType::kInt ? "int" : "str"; };
      return here(std::string(name(a.key_type())) + " keys vs " + name(b.key_type()) + " keys");
    }
    for (std::size_t i = 0; i < da.size() && i < db.size(); ++i) {
      if (da[i].first != db[i].first)
        return here("key \"" + da[i].first + "\" vs \"" + db[i].first + "\"");
      if (auto d = difference(da[i].second, db[i].second, path + "/" + da[i].first)) return d;
    }
    if (da.size() != db.size()) {
      return here(std::to_string(da.size()) + " keys vs " + std::to_string(db.size()));
    }
    return std::nullopt;
  }
  if (a.is_list() && b.is_list()) {
    const Node::List& la = a.as_list();
    const Node::List& lb = b.as_list();
    for (std::size_t i = 0; i < la.size() && i < lb.size(); ++i) {
      if (auto d = difference(la[i], lb[i], path + "/" + std::to_string(i))) return d;
    }
    if (la.size() != lb.size()) {
      return here(std::to_string(la.size()) + " items vs " + std::to_string(lb.size()));
    }
    return std::nullopt;
  }
  if (a.is_tensor() && b.is_tensor()) {
    if (same_tensor(a.tensor(), b.tensor())) return std::nullopt;
    const std::string da = describe(a), db = describe(b);
    return here(da == db ? da + ", bytes differ" : da + " vs " + db);
  }
  // Compared as text: 1 and 1.0 differ, as they would in the file.
  if (a.is_scalar() && b.is_scalar() && a.scalar().dump() == b.scalar().dump()) {
    return std::nullopt;
  }
  return here(describe(a) + " vs " + describe(b));
}

}  // namespace

bool is_int_key(std::string_view key) {
  std::string_view digits = key;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  if (digits.empty() || digits.size() > 19) return false;
  if (digits.size() > 1 && digits.front() == '0') return false;
  if (key == "-0") return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  if (digits.size() < 19) return true;
  // 19 digits: within [-2^63, 2^63 - 1]?
  const std::string_view limit = key.front() == '-' ? "9223372036854775808" : "9223372036854775807";
  return digits <= limit;
}

void Node::set_key_type(KeyType type) {
  if (!is_dict()) throw UsageError("Node::set_key_type: not a dict");
  if (type == KeyType::kInt) {
    for (const auto& [key, value] : as_dict()) {
      if (!is_int_key(key)) {
        throw UsageError("Node::set_key_type: the key \"" + key +
                         "\" is not a decimal int64 (an int-keyed dict holds only such keys)");
      }
    }
  }
  key_type_ = type;
}

bool operator==(const Node& a, const Node& b) { return !difference(a, b, ""); }

std::optional<std::string> first_difference(const Node& a, const Node& b) {
  return difference(a, b, "");
}

}  // namespace zanj
