// SPDX-License-Identifier: MIT
// The restricted unpickler and the protocol-2 pickler of torch.save payloads (see pickle.hpp).
#include "pickle.hpp"

#include <ATen/ATen.h>
#include <simdjson.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "configured_model/errors.hpp"
#include "shape_rule.hpp"

namespace zanj::detail {
namespace {

using Kind = PyObject::Kind;

struct StorageType {
  const char* name;
  c10::ScalarType dtype;
};

// torch.<Name>Storage as torch.save names them; UntypedStorage holds bytes.
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", c10::kFloat},
    {"DoubleStorage", c10::kDouble},
    {"HalfStorage", c10::kHalf},
    {"BFloat16Storage", c10::kBFloat16},
    {"LongStorage", c10::kLong},
    {"IntStorage", c10::kInt},
    {"ShortStorage", c10::kShort},
    {"CharStorage", c10::kChar},
    {"ByteStorage", c10::kByte},
    {"BoolStorage", c10::kBool},
    {"ComplexFloatStorage", c10::kComplexFloat},
    {"ComplexDoubleStorage", c10::kComplexDouble},
    {"UntypedStorage", c10::kByte},
};

struct DtypeGlobal {
  const char* name;
  c10::ScalarType dtype;
};
constexpr DtypeGlobal kDtypeGlobals[] = {
    {"float32", c10::kFloat},
    {"float64", c10::kDouble},
    {"float16", c10::kHalf},
    {"bfloat16", c10::kBFloat16},
    {"int64", c10::kLong},
    {"int32", c10::kInt},
    {"int16", c10::kShort},
    {"int8", c10::kChar},
    {"uint8", c10::kByte},
    {"bool", c10::kBool},
    {"complex64", c10::kComplexFloat},
    {"complex128", c10::kComplexDouble},
};

// Globals a weights-only payload may name (PyTorch's weights_only allow-list, less what
// state dicts never hold). Everything else is refused before anything is built.
bool allowed_global(const std::string& module, const std::string& name) {
  if (module == "collections" && name == "OrderedDict") return true;
  if (module == "torch._utils") {
    return name == "_rebuild_tensor_v2" || name == "_rebuild_parameter" ||
           name == "_rebuild_parameter_with_state";
  }
  if (module == "torch") {
    if (name == "Size" || name == "device") return true;
    for (const auto& s : kStorageTypes)
      if (name == s.name) return true;
    for (const auto& d : kDtypeGlobals)
      if (name == d.name) return true;
  }
  return false;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kStr:
      return "str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kTensor:
      return "tensor";
    case Kind::kStorage:
      return "storage";
  }
  return "?";
}

bool same_key(const PyObject& a, const PyObject& b) {
  return a.kind == b.kind && a.text == b.text && a.integer == b.integer && a.boolean == b.boolean &&
         std::memcmp(&a.floating, &b.floating, sizeof a.floating) == 0;
}

// Records that key `k` is at `position` unless the index has it already; returns its position.
std::size_t index_key(PyObject::DictIndex& index, const PyObject& k, std::size_t position) {
  if (k.kind == Kind::kStr) return index.by_str.emplace(k.text, position).first->second;
  if (k.kind == Kind::kInt) return index.by_int.emplace(k.integer, position).first->second;
  return position;  // other kinds are scanned
}

constexpr std::size_t kScanLimit = 16;
constexpr std::uint64_t kValueBytes =
    64;  // a Node and its slot in a list or dict        // dict keys looked up by a scan, no index
constexpr std::uint64_t kIndexSlotBytes = 64;  // a hash node and its key, counted per entry

class Unpickler {
 public:
  Unpickler(std::string_view bytes, const std::string& file, const std::string& entry,
            const StorageLoader& loader, const PickleLimits& limits)
      : data_(bytes), file_(file), entry_(entry), loader_(loader), limits_(limits) {}

  Pickled run() && {
    while (true) {
      const std::size_t at = pos_;
      const auto op = static_cast<unsigned char>(byte());
      op_at_ = at;
      if (op == '.') break;  // STOP
      step(op);
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
    if (pos_ != data_.size()) {
      fail(std::to_string(data_.size() - pos_) + " bytes after STOP (expected none)");
    }
    heap_.root = stack_.back();
    return std::move(heap_);
  }

 private:
  PyRef make(Kind kind) {
    charge(sizeof(PyObject));
    heap_.objects.emplace_back();
    heap_.objects.back().kind = kind;
    return &heap_.objects.back();
  }

  // Counts `bytes` more of the arena against the budget before they are allocated.
  void charge(std::uint64_t bytes) {
    if (bytes > limits_.max_bytes - used_bytes_) {
      throw LimitError(detail::message(
          file_, entry_,
          "pickle at byte " + std::to_string(op_at_) + ": its objects would take more than " +
              std::to_string(limits_.max_bytes) +
              " bytes (PickleLimits::max_bytes / ReadOptions::memory_budget)"));
    }
    used_bytes_ += bytes;
  }

  [[noreturn]] void fail(const std::string& what) const {
    detail::throw_format_error(file_, entry_,
                               "pickle at byte " + std::to_string(op_at_) + ": " + what);
  }

  char byte() {
    if (pos_ >= data_.size()) fail("truncated (expected more bytes before STOP)");
    return data_[pos_++];
  }
  std::string_view take(std::uint64_t n) {
    if (n > data_.size() - pos_) {
      fail("truncated: a length of " + std::to_string(n) + " runs past the end (" +
           std::to_string(data_.size() - pos_) + " bytes left)");
    }
    auto s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::uint64_t uint_le(int n) {
    const auto s = take(n);
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[i]);
    return v;
  }
  std::string line() {
    const auto end = data_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated (expected a newline-terminated argument)");
    std::string s(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  // The decimal memo index of a text PUT or GET.
  std::uint64_t memo_index_line() {
    const std::string s = line();
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0') fail("bad memo index '" + s + "'");
    return v;
  }

  void push(PyRef v) {
    if (stack_.size() >= limits_.max_stack) fail("stack limit reached");
    stack_.push_back(std::move(v));
  }
  PyRef pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("pop from an empty stack");
    }
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PyRef& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      fail("empty stack");
    }
    return stack_.back();
  }
  std::vector<PyRef> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> items(
        std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
        std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  PyRef tuple(std::vector<PyRef> items) {
    charge(items.size() * sizeof(PyRef));
    auto t = make(Kind::kTuple);
    t->items = std::move(items);
    return t;
  }
  PyRef expect(PyRef v, Kind kind, const char* what) {
    if (v->kind != kind) {
      fail(std::string(what) + ": expected " + kind_name(kind) + ", found " + kind_name(v->kind));
    }
    return v;
  }
  // Python's str is text: a str whose bytes are not UTF-8 is refused (Python's own unpickler
  // fails on it too), so no key or value reaches a JSON writer or a user undecodable.
  void check_utf8(std::string_view text) {
    if (!simdjson::validate_utf8(text.data(), text.size())) {
      fail("a str of " + std::to_string(text.size()) + " bytes that is not UTF-8");
    }
  }

  // STRING's argument, 'text' or "text" with Python's escapes (\\ \' \" \n \r \t \xhh \ooo).
  std::string unquote(const std::string& quoted) {
    if (quoted.size() < 2 || (quoted.front() != '\'' && quoted.front() != '"') ||
        quoted.back() != quoted.front()) {
      fail("STRING argument is not a quoted literal");
    }
    std::string out;
    for (std::size_t i = 1; i + 1 < quoted.size(); ++i) {
      char c = quoted[i];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++i + 1 >= quoted.size()) fail("STRING literal ends in a backslash");
      c = quoted[i];
      switch (c) {
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'x': {
          if (i + 2 >= quoted.size() || !std::isxdigit(static_cast<unsigned char>(quoted[i + 1])) ||
              !std::isxdigit(static_cast<unsigned char>(quoted[i + 2]))) {
            fail("STRING literal with a bad \\x escape");
          }
          out += static_cast<char>(std::stoi(quoted.substr(i + 1, 2), nullptr, 16));
          i += 2;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            int v = 0, k = 0;
            for (; k < 3 && i + 1 < quoted.size() && quoted[i] >= '0' && quoted[i] <= '7'; ++k, ++i)
              v = v * 8 + (quoted[i] - '0');
            --i;
            out += static_cast<char>(v & 0xff);
          } else {
            out += c;  // \\ \' \" and unknown escapes keep the character
          }
      }
    }
    return out;
  }

  // UNICODE's argument: latin-1 characters and \uXXXX / \UXXXXXXXX escapes, as UTF-8.
  std::string raw_unicode(const std::string& text) {
    std::string out;
    const auto put = [&](std::uint32_t cp) {
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        fail("UNICODE argument with code point " + std::to_string(cp) + " (not a character)");
      }
      if (cp < 0x80) {
        out += static_cast<char>(cp);
      } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
      }
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      const std::size_t digits = (c == '\\' && i + 1 < text.size()) ? (text[i + 1] == 'u'   ? 4
                                                                       : text[i + 1] == 'U' ? 8
                                                                                            : 0)
                                                                    : 0;
      if (digits == 0) {
        put(c);
        continue;
      }
      if (i + 2 + digits > text.size()) {
        fail("UNICODE argument with a truncated escape");
      }
      std::uint32_t cp = 0;
      for (std::size_t k = 0; k < digits; ++k) {
        const char h = text[i + 2 + k];
        if (!std::isxdigit(static_cast<unsigned char>(h)))
          fail("UNICODE argument with a bad escape");
        cp = cp * 16 + static_cast<std::uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                      ? h - '0'
                                                      : (std::tolower(h) - 'a' + 10));
      }
      put(cp);
      i += 1 + digits;
    }
    return out;
  }

  // The memo: indices as pickle writes them (0, 1, 2, ...) in a vector, any others in a hash.
  void memo_put(std::uint64_t index) {
    const PyRef value = top();
    if (index < memo_dense_.size()) {
      memo_dense_[index] = value;
    } else if (index == memo_dense_.size()) {
      charge(sizeof(PyRef));
      memo_dense_.push_back(value);
    } else {
      const auto [at, inserted] = memo_.emplace(index, value);
      if (inserted) {
        charge(48);  // a hash node
      } else {
        at->second = value;
      }
    }
  }
  void memo_get(std::uint64_t index) {
    if (index < memo_dense_.size() && memo_dense_[index]) {
      push(memo_dense_[index]);
      return;
    }
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo index " + std::to_string(index) + " was never stored");
    push(it->second);
  }
  std::size_t memo_size() const { return memo_dense_.size() + memo_.size(); }

  void add_global(const std::string& module, const std::string& name) {
    if (!allowed_global(module, name)) {
      throw UnsafeContentError(detail::message(
          file_, entry_,
          "global '" + module + "." + name +
              "' is not allowed: only tensors, containers and plain values are loaded and no "
              "code a file names is run (PyTorch's weights_only policy)"));
    }
    auto g = make(Kind::kGlobal);
    g->text = module + "." + name;
    push(std::move(g));
  }

  void append_to(const PyRef& list, std::vector<PyRef> items) {
    if (list->kind != Kind::kList) fail(std::string("APPEND(S) to a ") + kind_name(list->kind));
    charge(items.size() * sizeof(PyRef));
    for (auto& i : items) list->items.push_back(std::move(i));
  }
  void set_items(const PyRef& dict, std::vector<PyRef> kv) {
    if (dict->kind != Kind::kDict) fail(std::string("SETITEM(S) on a ") + kind_name(dict->kind));
    if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      const PyRef& k = kv[i];
      if (k->kind != Kind::kStr && k->kind != Kind::kInt && k->kind != Kind::kBool &&
          k->kind != Kind::kNone && k->kind != Kind::kFloat) {
        fail(std::string("dict key of type ") + kind_name(k->kind) + " (expected str or int)");
      }
      // Same key again: Python keeps the first position and the last value. Short dicts are
      // scanned; longer ones get a hash index, so a dict of n keys costs O(n), not O(n^2).
      charge(sizeof(dict->entries[0]) + k->text.size());
      auto& entries = dict->entries;
      if (!entries.empty() && entries.front().first->kind != k->kind) dict->mixed_keys = true;
      if (!dict->index && entries.size() >= kScanLimit) {
        charge(entries.size() * kIndexSlotBytes);
        dict->index = std::make_unique<PyObject::DictIndex>();
        for (std::size_t e = 0; e < entries.size(); ++e)
          index_key(*dict->index, *entries[e].first, e);
      }
      std::size_t found = entries.size();
      if (dict->index && (k->kind == Kind::kStr || k->kind == Kind::kInt)) {
        charge(kIndexSlotBytes);
        found = index_key(*dict->index, *k, entries.size());
      } else {
        for (std::size_t e = 0; e < entries.size(); ++e) {
          if (same_key(*entries[e].first, *k)) {
            found = e;
            break;
          }
        }
      }
      if (found == entries.size()) {
        entries.emplace_back(k, kv[i + 1]);
      } else {
        entries[found].second = kv[i + 1];
      }
    }
  }

  std::int64_t as_int(const PyRef& v, const char* what) {
    if (v->kind == Kind::kBool) return v->boolean ? 1 : 0;
    return expect(v, Kind::kInt, what)->integer;
  }
  std::vector<std::int64_t> int_tuple(const PyRef& v, const char* what) {
    if (v->kind != Kind::kTuple && v->kind != Kind::kList) {
      fail(std::string(what) + ": expected a tuple of ints, found " + kind_name(v->kind));
    }
    std::vector<std::int64_t> out;
    for (const auto& i : v->items) out.push_back(as_int(i, what));
    return out;
  }

  PyRef load_persistent(const PyRef& pid) {
    if (pid->kind != Kind::kTuple || pid->items.size() < 5 || pid->items[0]->kind != Kind::kStr ||
        pid->items[0]->text != "storage") {
      fail("persistent id is not ('storage', type, key, location, numel)");
    }
    const auto& type = pid->items[1];
    if (type->kind != Kind::kGlobal) fail("persistent id: storage type is not a global");
    c10::ScalarType dtype = c10::kByte;
    bool found = false;
    for (const auto& s : kStorageTypes) {
      if (type->text == std::string("torch.") + s.name) dtype = s.dtype, found = true;
    }
    if (!found) fail("persistent id: '" + type->text + "' is not a storage type");
    const std::string key = expect(pid->items[2], Kind::kStr, "storage key")->text;
    const std::int64_t numel = as_int(pid->items[4], "storage numel");
    if (numel < 0) fail("storage " + key + ": negative size " + std::to_string(numel));
    auto& cached = storages_[key];
    if (!cached) {
      cached = make(Kind::kStorage);
      cached->tensor = loader_(key, dtype, numel);
    } else if (cached->tensor.scalar_type() != dtype || cached->tensor.numel() != numel) {
      fail("storage " + key + " is named twice with different types or sizes");
    }
    return cached;
  }

  PyRef rebuild_tensor(const std::vector<PyRef>& a) {
    if (a.size() < 4) fail("_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments");
    const auto storage = expect(a[0], Kind::kStorage, "_rebuild_tensor_v2 storage");
    const std::int64_t offset = as_int(a[1], "storage offset");
    const auto size = int_tuple(a[2], "tensor size");
    const auto stride = int_tuple(a[3], "tensor stride");
    if (size.size() != stride.size()) {
      fail("size has " + std::to_string(size.size()) + " dimensions but stride " +
           std::to_string(stride.size()));
    }
    const std::int64_t numel = storage->tensor.numel();
    if (offset < 0 || offset > numel) {
      fail("storage offset " + std::to_string(offset) + " outside a storage of " +
           std::to_string(numel) + " elements");
    }
    // The last element the view touches must lie inside the storage (computed without overflow).
    bool empty = false;
    for (auto s : size) {
      if (s < 0) fail("negative size in " + detail::shape_text(size));
      if (s == 0) empty = true;
    }
    if (!shape_bytes(size, storage->tensor.element_size())) {
      fail("a tensor of size " + detail::shape_text(size) +
           " is too large (its non-zero dimensions x the item size overflow 64 bits)");
    }
    if (!empty) {
      std::uint64_t last = static_cast<std::uint64_t>(offset);
      bool overflow = false;
      for (std::size_t d = 0; d < size.size(); ++d) {
        if (stride[d] < 0) fail("negative stride in " + detail::shape_text(stride));
        std::uint64_t step = 0;
        overflow |= __builtin_mul_overflow(static_cast<std::uint64_t>(size[d] - 1),
                                           static_cast<std::uint64_t>(stride[d]), &step);
        overflow |= __builtin_add_overflow(last, step, &last);
      }
      if (overflow || last >= static_cast<std::uint64_t>(numel)) {
        fail("a tensor of size " + detail::shape_text(size) + ", stride " +
             detail::shape_text(stride) + " at offset " + std::to_string(offset) +
             " reaches past its storage of " + std::to_string(numel) + " elements");
      }
    }
    auto t = make(Kind::kTensor);
    t->tensor = storage->tensor.as_strided(size, stride, offset);
    return t;
  }

  PyRef reduce(const PyRef& callable, const PyRef& args) {
    if (callable->kind != Kind::kGlobal) fail("REDUCE of a non-global");
    if (args->kind != Kind::kTuple) fail("REDUCE arguments are not a tuple");
    const auto& a = args->items;
    const std::string& f = callable->text;
    if (f == "collections.OrderedDict") {
      auto d = make(Kind::kDict);
      if (!a.empty()) {  // OrderedDict([(k, v), ...])
        if (a.size() != 1 || (a[0]->kind != Kind::kList && a[0]->kind != Kind::kTuple)) {
          fail("OrderedDict with arguments other than a list of pairs");
        }
        std::vector<PyRef> kv;
        for (const auto& p : a[0]->items) {
          if (p->kind != Kind::kTuple || p->items.size() != 2)
            fail("OrderedDict item is not a pair");
          kv.push_back(p->items[0]);
          kv.push_back(p->items[1]);
        }
        set_items(d, std::move(kv));
      }
      return d;
    }
    if (f == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(a);
    if (f == "torch._utils._rebuild_parameter" ||
        f == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty()) fail(f + " without arguments");
      return expect(a[0], Kind::kTensor, "parameter data");
    }
    if (f == "torch.Size") {
      if (a.size() != 1) fail("torch.Size with " + std::to_string(a.size()) + " arguments");
      int_tuple(a[0], "torch.Size");
      return tuple(a[0]->items);
    }
    if (f == "torch.device") {
      auto s = make(Kind::kStr);
      for (std::size_t i = 0; i < a.size(); ++i) {
        charge(a[i]->text.size() + 24);
        if (a[i]->kind == Kind::kStr)
          s->text += (i ? ":" : "") + a[i]->text;
        else if (a[i]->kind == Kind::kInt)
          s->text += ":" + std::to_string(a[i]->integer);
        else
          fail("torch.device argument of type " + std::string(kind_name(a[i]->kind)));
      }
      return s;
    }
    fail("'" + f + "' cannot be called");
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80: {  // PROTO
        const auto v = static_cast<unsigned char>(byte());
        if (v > 5) fail("pickle protocol " + std::to_string(v) + " (expected 0..5)");
        break;
      }
      case 0x95:
        uint_le(8);
        break;  // FRAME: a length hint only
      case '(':
        marks_.push_back(stack_.size());
        break;  // MARK
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_mark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;  // DUP
      case 'N':
        push(make(Kind::kNone));
        break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        auto b = make(Kind::kBool);
        b->boolean = op == 0x88;
        push(std::move(b));
        break;
      }
      case 'K':
      case 'M':
      case 'J': {  // BININT1, BININT2, BININT
        auto i = make(Kind::kInt);
        if (op == 'K')
          i->integer = static_cast<std::int64_t>(uint_le(1));
        else if (op == 'M')
          i->integer = static_cast<std::int64_t>(uint_le(2));
        else
          i->integer = static_cast<std::int32_t>(static_cast<std::uint32_t>(uint_le(4)));
        push(std::move(i));
        break;
      }
      case 0x8a:
      case 0x8b: {  // LONG1, LONG4: little-endian two's complement
        const std::uint64_t n = op == 0x8a ? uint_le(1) : uint_le(4);
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes (at most 8 are supported)");
        const auto s = take(n);
        std::uint64_t v = 0;
        for (std::size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(s[k]);
        if (n > 0 && n < 8 && (static_cast<unsigned char>(s[n - 1]) & 0x80)) v |= ~0ULL << (8 * n);
        auto i = make(Kind::kInt);
        i->integer = static_cast<std::int64_t>(v);
        push(std::move(i));
        break;
      }
      case 'I':
      case 'L': {  // INT, LONG (text)
        std::string s = line();
        if (op == 'L' && !s.empty() && s.back() == 'L') s.pop_back();
        if (op == 'I' && (s == "00" || s == "01")) {
          auto b = make(Kind::kBool);
          b->boolean = s == "01";
          push(std::move(b));
          break;
        }
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE) fail("bad integer '" + s + "'");
        auto i = make(Kind::kInt);
        i->integer = v;
        push(std::move(i));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const auto s = take(8);
        std::uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<unsigned char>(s[k]);
        auto f = make(Kind::kFloat);
        std::memcpy(&f->floating, &bits, 8);
        push(std::move(f));
        break;
      }
      case 'F': {  // FLOAT (text)
        const std::string s = line();
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0') fail("bad float '" + s + "'");
        auto f = make(Kind::kFloat);
        f->floating = v;
        push(std::move(f));
        break;
      }
      case 'X':
      case 0x8c:
      case 0x8d:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      case 'T':
      case 'U':  // BINSTRING, SHORT_BINSTRING (Python 2 str)
      case 'B':
      case 'C':
      case 0x8e: {  // BINBYTES, SHORT_BINBYTES, BINBYTES8
        const int width = (op == 0x8c || op == 'U' || op == 'C') ? 1
                          : (op == 0x8d || op == 0x8e)           ? 8
                                                                 : 4;
        const std::uint64_t n = uint_le(width);
        const auto text = take(n);
        charge(text.size());
        const bool bytes = op == 'B' || op == 'C' || op == 0x8e;
        if (!bytes) check_utf8(text);
        auto s = make(bytes ? Kind::kBytes : Kind::kStr);
        s->text = std::string(text);
        push(std::move(s));
        break;
      }
      case 'S': {  // STRING (protocol 0): a quoted, backslash-escaped literal
        std::string text = unquote(line());
        check_utf8(text);
        charge(text.size());
        auto s = make(Kind::kStr);
        s->text = std::move(text);
        push(std::move(s));
        break;
      }
      case 'V': {  // UNICODE (protocol 0): raw-unicode-escape text
        std::string text = raw_unicode(line());
        charge(text.size());
        auto s = make(Kind::kStr);
        s->text = std::move(text);
        push(std::move(s));
        break;
      }
      case ']':
        push(make(Kind::kList));
        break;  // EMPTY_LIST
      case '}':
        push(make(Kind::kDict));
        break;  // EMPTY_DICT
      case ')':
        push(tuple({}));
        break;     // EMPTY_TUPLE
      case 'l': {  // LIST
        auto l = make(Kind::kList);
        l->items = pop_mark();
        charge(l->items.size() * sizeof(PyRef));
        push(std::move(l));
        break;
      }
      case 't':
        push(tuple(pop_mark()));
        break;     // TUPLE
      case 'd': {  // DICT
        auto d = make(Kind::kDict);
        set_items(d, pop_mark());
        push(std::move(d));
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const std::size_t n = op - 0x84;
        std::vector<PyRef> items(n);
        for (std::size_t k = n; k-- > 0;) items[k] = pop();
        push(tuple(std::move(items)));
        break;
      }
      case 'a': {  // APPEND
        auto v = pop();
        append_to(top(), {std::move(v)});
        break;
      }
      case 'e': {  // APPENDS
        auto items = pop_mark();
        append_to(top(), std::move(items));
        break;
      }
      case 's': {  // SETITEM
        auto v = pop();
        auto k = pop();
        set_items(top(), {std::move(k), std::move(v)});
        break;
      }
      case 'u': {  // SETITEMS
        auto kv = pop_mark();
        set_items(top(), std::move(kv));
        break;
      }
      case 'q':  // BINPUT
        memo_put(uint_le(1));
        break;
      case 'r':  // LONG_BINPUT
        memo_put(uint_le(4));
        break;
      case 0x94:  // MEMOIZE
        memo_put(memo_size());
        break;
      case 'p':  // PUT (text)
        memo_put(memo_index_line());
        break;
      case 'h':  // BINGET
        memo_get(uint_le(1));
        break;
      case 'j':  // LONG_BINGET
        memo_get(uint_le(4));
        break;
      case 'g':  // GET (text)
        memo_get(memo_index_line());
        break;
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string module = line();
        const std::string name = line();
        add_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const auto name = expect(pop(), Kind::kStr, "STACK_GLOBAL name");
        const auto module = expect(pop(), Kind::kStr, "STACK_GLOBAL module");
        add_global(module->text, name->text);
        break;
      }
      case 'Q': {  // BINPERSID
        auto pid = pop();
        push(load_persistent(pid));
        break;
      }
      case 'R': {  // REDUCE
        auto args = pop();
        auto callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 'b': {  // BUILD: only OrderedDict's attribute state (state_dict()._metadata)
        auto state = pop();
        const auto& obj = top();
        if (obj->kind != Kind::kDict) {
          fail(std::string("BUILD on a ") + kind_name(obj->kind) + " (only dicts carry state)");
        }
        if (state->kind != Kind::kDict && state->kind != Kind::kNone &&
            !(state->kind == Kind::kTuple && state->items.size() == 2)) {
          fail(std::string("BUILD with a state of type ") + kind_name(state->kind));
        }
        break;  // attributes such as _metadata are not part of the tensors' values
      }
      case 0x81:
      case 0x92:
      case 'i':
      case 'o':  // NEWOBJ, NEWOBJ_EX, INST, OBJ
        throw UnsafeContentError(detail::message(
            file_, entry_,
            "pickle at byte " + std::to_string(op_at_) + ": builds an arbitrary object (opcode 0x" +
                [op] {
                  char b[3];
                  std::snprintf(b, sizeof b, "%02x", op);
                  return std::string(b);
                }() +
                "), which a weights-only load refuses"));
      case 'P':  // PERSID (text)
        fail("text persistent ids are not used by torch.save");
      default: {
        char b[8];
        std::snprintf(b, sizeof b, "0x%02x", op);
        fail(std::string("unsupported opcode ") + b);
      }
    }
  }

  std::string_view data_;
  const std::string& file_;
  const std::string& entry_;
  const StorageLoader& loader_;
  PickleLimits limits_;
  Pickled heap_;
  std::size_t pos_ = 0;
  std::size_t op_at_ = 0;
  std::uint64_t used_bytes_ = 0;
  std::vector<PyRef> stack_;
  std::vector<std::size_t> marks_;
  std::vector<PyRef> memo_dense_;
  std::unordered_map<std::uint64_t, PyRef> memo_;
  std::map<std::string, PyRef> storages_;
};

struct Converter {
  const std::string& file;
  const PickleLimits& limits;
  struct Cost {
    std::uint64_t values = 0, bytes = 0;
  };

  // What the tree will hold once shared values are expanded (a Node copies a string or list at
  // each reference), computed on the object graph (each object once) before anything is built:
  // the values, and their bytes. A tensor is a view of its storage and costs nothing more,
  // unless it overlaps itself (a zero or small stride) and so holds more elements than its
  // storage: every writer and most users materialise it, so its full size counts. Cycles hit
  // the depth limit.
  Cost expanded(const PyRef& v, std::size_t depth) {
    if (depth > limits.max_depth) {
      detail::throw_format_error(file, "",
                                 "nested deeper than " + std::to_string(limits.max_depth) +
                                     " levels (or a container holds itself)");
    }
    if (v->cost_values != 0) return {v->cost_values, v->cost_bytes};
    constexpr std::uint64_t kCap = ~0ULL >> 1;
    Cost c{1, kValueBytes + v->text.size()};
    const auto add = [&](const Cost& k) {
      c.values = std::min(c.values + k.values, kCap);
      c.bytes = std::min(c.bytes + k.bytes, kCap);
    };
    if (v->kind == Kind::kTensor && v->tensor.defined()) {
      const auto logical = static_cast<std::uint64_t>(v->tensor.numel()) *
                           static_cast<std::uint64_t>(v->tensor.element_size());
      const auto stored = v->tensor.storage().nbytes();
      if (logical > stored) add({0, logical});
    }
    for (std::size_t i = 0; i < v->items.size(); ++i) {
      add(expanded(v->items[i], depth + 1));
    }
    for (const auto& [k, val] : v->entries) {
      add({0, sizeof(std::string) + k->text.size()});
      add(expanded(val, depth + 1));
    }
    v->cost_values = c.values;
    v->cost_bytes = c.bytes;
    return c;
  }

  Node run(const PyRef& v) {
    const Cost c = expanded(v, 0);
    if (c.values > limits.max_values) {
      throw LimitError(detail::message(
          file, "",
          "would expand to " + std::to_string(c.values) + " values, more than the limit of " +
              std::to_string(limits.max_values) + " (shared containers repeat)"));
    }
    if (c.bytes > limits.max_bytes) {
      throw LimitError(detail::message(
          file, "",
          "would expand to " + std::to_string(c.bytes) + " bytes, more than the budget of " +
              std::to_string(limits.max_bytes) +
              " (ReadOptions::memory_budget): values shared by reference repeat at each "
              "reference, and a view that overlaps itself counts at its full size"));
    }
    return convert(v, 0, "");
  }

  Node convert(const PyRef& v, std::size_t depth, const std::string& path) {
    switch (v->kind) {
      case Kind::kNone:
        return Node();
      case Kind::kBool:
        return Node(nlohmann::json(v->boolean));
      case Kind::kInt:
        return Node(nlohmann::json(v->integer));
      case Kind::kFloat:
        return Node(nlohmann::json(v->floating));
      case Kind::kStr:
        return Node(nlohmann::json(v->text));
      case Kind::kGlobal:
        return Node(nlohmann::json(v->text));  // torch.float32 and the like
      case Kind::kTensor:
        return Node(v->tensor);
      case Kind::kStorage:
        return Node(v->tensor);
      case Kind::kBytes: {
        auto t = at::empty({static_cast<std::int64_t>(v->text.size())}, at::kByte);
        if (!v->text.empty()) std::memcpy(t.data_ptr(), v->text.data(), v->text.size());
        return Node(t);
      }
      case Kind::kTuple:
      case Kind::kList: {
        Node::List out;
        out.reserve(v->items.size());
        for (std::size_t i = 0; i < v->items.size(); ++i) {
          out.push_back(convert(v->items[i], depth + 1, path + "/" + std::to_string(i)));
        }
        return Node(std::move(out));
      }
      case Kind::kDict: {
        Node::Dict out;
        out.reserve(v->entries.size());
        std::unordered_set<std::string> seen;  // keys of one kind are distinct already
        for (const auto& [k, val] : v->entries) {
          std::string key;
          switch (k->kind) {
            case Kind::kStr:
              key = k->text;
              break;
            case Kind::kInt:
              key = std::to_string(k->integer);
              break;
            case Kind::kBool:
              key = k->boolean ? "True" : "False";
              break;
            case Kind::kNone:
              key = "None";
              break;
            default:
              key = nlohmann::json(k->floating).dump();
              break;
          }
          if (v->mixed_keys && !seen.insert(key).second) {
            detail::throw_format_error(file, path, "two dict keys both read as '" + key + "'");
          }
          out.emplace_back(key, convert(val, depth + 1, path + "/" + key));
        }
        Node dict(std::move(out));
        // A dict keyed by ints only (an optimizer's state) keeps the key type for .pt writers.
        if (!v->entries.empty() && !v->mixed_keys && v->entries.front().first->kind == Kind::kInt) {
          dict.set_key_type(Node::KeyType::kInt);
        }
        return dict;
      }
    }
    detail::throw_format_error(file, path, "unknown value");
  }
};

// ---- writer ----

class Pickler {
 public:
  explicit Pickler(const std::function<std::string(const at::Tensor&)>& storage_key)
      : storage_key_(storage_key) {}

  std::string run(const Node& root) {
    out_ += "\x80\x02";
    write(root);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void str(const std::string& s) {
    out_ += 'X';
    u32(static_cast<std::uint32_t>(s.size()));
    out_ += s;
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= std::numeric_limits<std::int32_t>::min() &&
               v <= std::numeric_limits<std::int32_t>::max()) {
      out_ += 'J';
      u32(static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
    } else {
      out_ += "\x8a\x08";
      for (int i = 0; i < 8; ++i)
        out_ += static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
    }
  }
  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    const auto it = globals_.find(key);
    if (it != globals_.end()) {
      get(it->second);
      return;
    }
    out_ += 'c';
    out_ += key;
    globals_[key] = put();
  }
  std::uint32_t put() {
    const auto index = next_memo_++;
    out_ += 'r';
    u32(index);
    return index;
  }
  void get(std::uint32_t index) {
    out_ += 'j';
    u32(index);
  }

  void scalar(const nlohmann::ordered_json& j) {
    if (j.is_null())
      out_ += 'N';
    else if (j.is_boolean())
      out_ += j.get<bool>() ? '\x88' : '\x89';
    else if (j.is_number_integer()) {
      if (j.is_number_unsigned() &&
          j.get<std::uint64_t>() >
              static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        throw FormatError("pickle: integer " + j.dump() + " does not fit 64 signed bits");
      }
      integer(j.get<std::int64_t>());
    } else if (j.is_number_float()) {
      const double d = j.get<double>();
      std::uint64_t bits = 0;
      std::memcpy(&bits, &d, 8);
      out_ += 'G';
      for (int i = 7; i >= 0; --i) out_ += static_cast<char>((bits >> (8 * i)) & 0xff);
    } else if (j.is_string())
      str(j.get<std::string>());
    else
      throw FormatError("pickle: unexpected JSON value " + j.dump());
  }

  void tensor(const at::Tensor& input) {
    at::Tensor t = input.detach();
    if (!t.device().is_cpu()) t = t.cpu().contiguous();
    // One storage entry per distinct storage, so views keep sharing it in Python too.
    const auto* impl = t.storage().unsafeGetStorageImpl();
    const std::string type = storage_type_name(t.scalar_type());
    const std::int64_t item = static_cast<std::int64_t>(t.element_size());
    const std::int64_t storage_numel = static_cast<std::int64_t>(t.storage().nbytes()) / item;
    std::string key;
    const auto found = storages_.find(impl);
    if (found != storages_.end()) {
      key = found->second;
    } else {
      const at::Tensor whole =
          at::empty({0}, t.options()).set_(t.storage(), 0, {storage_numel}, {1});
      key = storage_key_(whole);
      storages_[impl] = key;
    }
    global("torch._utils", "_rebuild_tensor_v2");
    out_ += '(';
    out_ += '(';
    str("storage");
    global("torch", type);
    str(key);
    str("cpu");
    integer(storage_numel);
    out_ += 't';
    out_ += 'Q';
    integer(t.storage_offset());
    out_ += '(';
    for (auto s : t.sizes()) integer(s);
    out_ += 't';
    out_ += '(';
    for (auto s : t.strides()) integer(s);
    out_ += 't';
    out_ += '\x89';  // requires_grad
    global("collections", "OrderedDict");
    out_ += ")R";
    out_ += "tR";
  }

  void write(const Node& n) {
    if (n.is_tensor())
      tensor(n.tensor());
    else if (n.is_scalar())
      scalar(n.scalar());
    else if (n.is_list()) {
      out_ += ']';
      if (n.size() > 0) {
        out_ += '(';
        for (const auto& i : n.as_list()) write(i);
        out_ += 'e';
      }
    } else if (n.is_dict()) {
      // collections.OrderedDict, as state_dict() returns (a plain dict keeps order too, but
      // Module.load_state_dict users expect the OrderedDict).
      global("collections", "OrderedDict");
      out_ += ")R";
      if (n.size() > 0) {
        out_ += '(';
        const bool int_keys = n.key_type() == Node::KeyType::kInt;
        for (const auto& [k, v] : n.as_dict()) {
          if (int_keys) {
            if (!is_int_key(k)) {
              throw UsageError("save_torch: the int-keyed dict holds the key \"" + k +
                               "\", which is not a decimal int64");
            }
            integer(std::stoll(k));
          } else {
            str(k);
          }
          write(v);
        }
        out_ += 'u';
      }
    } else {
      out_ += 'N';
    }
  }

  const std::function<std::string(const at::Tensor&)>& storage_key_;
  std::string out_;
  std::uint32_t next_memo_ = 0;
  std::map<std::string, std::uint32_t> globals_;
  std::map<const void*, std::string> storages_;
};

}  // namespace

Pickled unpickle(std::string_view bytes, const std::string& file, const std::string& entry,
                 const StorageLoader& load_storage, const PickleLimits& limits) {
  return Unpickler(bytes, file, entry, load_storage, limits).run();
}

Node to_node(const Pickled& value, const std::string& file, const PickleLimits& limits) {
  Converter c{file, limits};
  return c.run(value.root);
}

std::string storage_type_name(c10::ScalarType dtype) {
  for (const auto& s : kStorageTypes) {
    if (s.dtype == dtype && std::string(s.name) != "UntypedStorage") return s.name;
  }
  throw FormatError(std::string("torch.save has no storage type for dtype ") +
                    c10::toString(dtype));
}

std::string pickle_tree(const Node& root,
                        const std::function<std::string(const at::Tensor&)>& storage_key) {
  return Pickler(storage_key).run(root);
}

}  // namespace zanj::detail
