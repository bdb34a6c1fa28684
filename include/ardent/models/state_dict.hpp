#pragma once
// Reading and writing PyTorch state dicts: the files Python writes with
// `torch.save(model.state_dict(), path)` (the zip format, PyTorch >= 1.6) and reads with
// `model.load_state_dict(torch.load(path))`.
//
// Why ardent has its own unpickler: LibTorch 1.13's torch::pickle_load turns every
// `collections.OrderedDict` into None (it expects them only as a tensor's backward hooks), and a
// Python state dict *is* an OrderedDict, so pickle_load fails on exactly the files users have.
// read_state_dict() reads the zip archive with LibTorch's own PyTorchStreamReader and runs a small
// pickle machine that knows the opcodes Python's pickle protocols 2 to 5 emit, builds dicts,
// lists, tuples, numbers, strings and tensors (torch._utils._rebuild_tensor_v2 on persistent
// storages), and keeps any other Python object (argparse.Namespace, numpy scalars in a training
// checkpoint) as an opaque value, so that a checkpoint's extra entries never stop the load.
//
// Writing uses torch::pickle_save, whose output `torch.load` reads in Python (a plain dict, which
// `load_state_dict` accepts).

#include <torch/torch.h>

#include <caffe2/serialize/inline_container.h>

#include <fmt/format.h>

#include <unistd.h>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace ardent {

namespace detail::pickle {

/// One Python value as the unpickler sees it.
struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Object };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                           // String, Bytes; the module of a Global or of an Object's class
  std::string name;                           // the name of a Global or of an Object's class
  std::vector<std::shared_ptr<Value>> items;  // Tuple, List
  std::vector<std::pair<std::shared_ptr<Value>, std::shared_ptr<Value>>> dict;  // Dict, in insertion order
  torch::Tensor tensor;                                                         // Storage (1-D), Tensor
};
using ValuePtr = std::shared_ptr<Value>;

inline ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

inline std::string_view kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::Bytes:
      return "bytes";
    case Value::Kind::Tuple:
      return "tuple";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Dict:
      return "dict";
    case Value::Kind::Global:
      return "global";
    case Value::Kind::Storage:
      return "storage";
    case Value::Kind::Tensor:
      return "Tensor";
    case Value::Kind::Object:
      return "object";
  }
  return "?";
}

/// The dtype of a legacy typed-storage class name (what torch.save pickles as the storage type).
inline torch::Dtype storage_dtype(const std::string& module, const std::string& name) {
  static const std::map<std::string, torch::Dtype> dtypes{{"FloatStorage", torch::kFloat32},
                                                          {"DoubleStorage", torch::kFloat64},
                                                          {"HalfStorage", torch::kFloat16},
                                                          {"BFloat16Storage", torch::kBFloat16},
                                                          {"LongStorage", torch::kInt64},
                                                          {"IntStorage", torch::kInt32},
                                                          {"ShortStorage", torch::kInt16},
                                                          {"CharStorage", torch::kInt8},
                                                          {"ByteStorage", torch::kUInt8},
                                                          {"BoolStorage", torch::kBool},
                                                          {"ComplexFloatStorage", torch::kComplexFloat},
                                                          {"ComplexDoubleStorage", torch::kComplexDouble}};
  auto it = dtypes.find(name);
  TORCH_CHECK(module == "torch" && it != dtypes.end(), "unsupported storage type ", module, ".", name);
  return it->second;
}

/// A pickle machine for the subset of the pickle language that torch.save writes. Tensor storages
/// come from the zip archive's records "data/<key>".
class Unpickler {
 public:
  Unpickler(const char* data, std::size_t size, caffe2::serialize::PyTorchStreamReader& archive)
      : data_(data), size_(size), archive_(archive) {}

  ValuePtr run() {
    while (true) {
      TORCH_CHECK(pos_ < size_, "pickle data ends at byte ", size_, " without a STOP opcode");
      const auto op = static_cast<unsigned char>(data_[pos_++]);
      if (op == '.') break;
      step(op);
    }
    TORCH_CHECK(stack_.size() == 1 && marks_.empty(), "malformed pickle: ", stack_.size(),
                " values left on the stack at STOP, expected 1");
    return stack_.back();
  }

 private:
  const char* take(std::size_t n) {
    TORCH_CHECK(n <= size_ - pos_, "pickle data truncated at byte ", pos_, " (needs ", n, " more bytes)");
    const char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T little() {  // little-endian unsigned or signed integer
    const char* p = take(sizeof(T));
    uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    T out;
    if constexpr (sizeof(T) == 8) {
      std::memcpy(&out, &v, 8);
    } else {
      out = static_cast<T>(v);
    }
    return out;
  }
  std::string line() {
    const std::size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    TORCH_CHECK(pos_ < size_, "pickle data truncated inside a GLOBAL name");
    std::string s(data_ + start, pos_ - start);
    ++pos_;
    return s;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr pop() {
    TORCH_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()),
                "malformed pickle: stack underflow at byte ", pos_);
    auto v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    TORCH_CHECK(!stack_.empty(), "malformed pickle: empty stack at byte ", pos_);
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    TORCH_CHECK(!marks_.empty(), "malformed pickle: no MARK before byte ", pos_);
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(std::size_t id) {
    auto v = top();
    memo_[id] = std::move(v);
  }
  ValuePtr memo_get(std::size_t id) {
    auto it = memo_.find(id);
    TORCH_CHECK(it != memo_.end(), "malformed pickle: memo entry ", id, " read before it was written");
    return it->second;
  }
  ValuePtr string_value(Value::Kind kind, std::size_t n) {
    auto v = make(kind);
    const char* p = take(n);
    v->text.assign(p, n);
    return v;
  }
  ValuePtr int_value(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->integer = i;
    return v;
  }
  ValuePtr long_value(std::size_t n) {  // LONG1 / LONG4: little-endian two's complement
    TORCH_CHECK(n <= 8, "integer of ", n, " bytes in pickle data does not fit in int64");
    const char* p = take(n);
    uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<unsigned char>(p[n - 1]) & 0x80U)) v |= ~uint64_t{0} << (8 * n);
    int64_t s;
    std::memcpy(&s, &v, 8);
    return int_value(s);
  }
  ValuePtr sequence(Value::Kind kind, std::vector<ValuePtr> items) {
    auto v = make(kind);
    v->items = std::move(items);
    return v;
  }
  static const Value& expect(const ValuePtr& v, Value::Kind kind, std::string_view what) {
    TORCH_CHECK(v && v->kind == kind, "malformed pickle: ", what, " is a ", v ? kind_name(v->kind) : "null",
                ", expected a ", kind_name(kind));
    return *v;
  }
  void set_items(const ValuePtr& target, const std::vector<ValuePtr>& kv) {
    TORCH_CHECK(kv.size() % 2 == 0, "malformed pickle: odd number of values for SETITEMS");
    if (target->kind != Value::Kind::Dict) return;  // an opaque object's state: ignored
    for (std::size_t i = 0; i < kv.size(); i += 2) target->dict.emplace_back(kv[i], kv[i + 1]);
  }
  void append_items(const ValuePtr& target, const std::vector<ValuePtr>& items) {
    if (target->kind != Value::Kind::List) return;
    target->items.insert(target->items.end(), items.begin(), items.end());
  }

  ValuePtr persistent_load(const ValuePtr& pid) {
    // ('storage', <storage type global>, key, location, numel)
    const auto& t = expect(pid, Value::Kind::Tuple, "persistent id");
    TORCH_CHECK(t.items.size() >= 5 && t.items[0]->kind == Value::Kind::String && t.items[0]->text == "storage",
                "malformed pickle: unsupported persistent id (expected a ('storage', ...) tuple)");
    const auto& type = expect(t.items[1], Value::Kind::Global, "storage type");
    const auto dtype = storage_dtype(type.text, type.name);
    const auto& key = expect(t.items[2], Value::Kind::String, "storage key").text;
    const int64_t numel = expect(t.items[4], Value::Kind::Int, "storage size").integer;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    const std::string record = "data/" + key;
    TORCH_CHECK(archive_.hasRecord(record), "the archive has no record '", record, "' for a tensor storage");
    auto [ptr, bytes] = archive_.getRecord(record);
    auto storage = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
    const auto expected = static_cast<std::size_t>(numel) * storage.element_size();
    TORCH_CHECK(numel >= 0 && bytes == expected, "record '", record, "' has ", bytes, " bytes, expected ", expected,
                " (", numel, " elements of ", dtype, ")");
    if (bytes > 0) std::memcpy(storage.data_ptr(), ptr.get(), bytes);
    auto v = make(Value::Kind::Storage);
    v->tensor = storage;
    storages_.emplace(key, v);
    return v;
  }

  static std::vector<int64_t> int_tuple(const ValuePtr& v, std::string_view what) {
    TORCH_CHECK(v && (v->kind == Value::Kind::Tuple || v->kind == Value::Kind::List), "malformed pickle: tensor ", what,
                " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& item : v->items) out.push_back(expect(item, Value::Kind::Int, what).integer);
    return out;
  }

  static ValuePtr rebuild_tensor(const std::vector<ValuePtr>& args) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    TORCH_CHECK(args.size() >= 4, "malformed pickle: _rebuild_tensor with ", args.size(), " arguments");
    const auto& storage = expect(args[0], Value::Kind::Storage, "tensor storage").tensor;
    const int64_t offset = expect(args[1], Value::Kind::Int, "storage offset").integer;
    const auto sizes = int_tuple(args[2], "size");
    const auto strides = int_tuple(args[3], "stride");
    TORCH_CHECK(sizes.size() == strides.size(), "malformed pickle: tensor size and stride differ in length");
    int64_t last = offset;
    bool empty = false;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      TORCH_CHECK(sizes[i] >= 0 && strides[i] >= 0, "malformed pickle: negative tensor size or stride");
      if (sizes[i] == 0) empty = true;
      last += (sizes[i] - 1) * strides[i];
    }
    auto v = make(Value::Kind::Tensor);
    if (empty) {
      v->tensor = torch::empty(sizes, storage.options());
    } else {
      TORCH_CHECK(offset >= 0 && last < storage.numel(), "malformed pickle: tensor of size ", c10::IntArrayRef(sizes),
                  " at offset ", offset, " overruns its storage of ", storage.numel(), " elements");
      v->tensor = storage.as_strided(sizes, strides, offset).clone();
    }
    return v;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args) {
    const auto& arg_items = expect(args, Value::Kind::Tuple, "REDUCE arguments").items;
    if (callable->kind == Value::Kind::Global) {
      const auto& m = callable->text;
      const auto& n = callable->name;
      if (m == "collections" && n == "OrderedDict") {
        auto d = make(Value::Kind::Dict);
        if (!arg_items.empty() && arg_items[0]->kind == Value::Kind::List) {
          for (const auto& pair : arg_items[0]->items) {
            if (pair->kind == Value::Kind::Tuple && pair->items.size() == 2)
              d->dict.emplace_back(pair->items[0], pair->items[1]);
          }
        }
        return d;
      }
      if (m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor"))
        return rebuild_tensor(arg_items);
      if (m == "torch._utils" && (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state")) {
        TORCH_CHECK(!arg_items.empty(), "malformed pickle: _rebuild_parameter without arguments");
        return arg_items[0];
      }
      // What torch::pickle_save writes around a container: restore_type_tag(value, "Dict[str, Tensor]").
      if (m == "torch.jit._pickle" && (n == "restore_type_tag" || n.rfind("build_", 0) == 0) && !arg_items.empty()) {
        return arg_items[0];
      }
      TORCH_CHECK(m != "torch._utils" || n.rfind("_rebuild_", 0) != 0, "unsupported tensor kind ", m, ".", n,
                  " (only dense tensors are supported)");
    }
    auto v = make(Value::Kind::Object);  // any other Python object: kept opaque
    if (callable->kind == Value::Kind::Global) {
      v->text = callable->text;
      v->name = callable->name;
    }
    return v;
  }

  void step(unsigned char op) {
    using K = Value::Kind;
    switch (op) {
      case 0x80:
        take(1);
        break;  // PROTO
      case 0x95:
        take(8);
        break;  // FRAME
      case '(':
        marks_.push_back(stack_.size());
        break;  // MARK
      case '0':
        pop();
        break;  // POP
      case '1':
        pop_to_mark();
        break;  // POP_MARK
      case '2':
        push(top());
        break;  // DUP
      case 'N':
        push(make(K::None));
        break;
      case 0x88:
      case 0x89: {
        auto v = make(K::Bool);
        v->boolean = op == 0x88;
        push(v);
        break;
      }
      case 'J':
        push(int_value(little<int32_t>()));
        break;  // BININT
      case 'K':
        push(int_value(little<uint8_t>()));
        break;  // BININT1
      case 'M':
        push(int_value(little<uint16_t>()));
        break;  // BININT2
      case 0x8a:
        push(long_value(little<uint8_t>()));
        break;  // LONG1
      case 0x8b:
        push(long_value(little<uint32_t>()));
        break;     // LONG4
      case 'G': {  // BINFLOAT: big-endian double
        const char* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(p[i]);
        auto v = make(K::Float);
        std::memcpy(&v->real, &bits, 8);
        push(v);
        break;
      }
      case 'X':
        push(string_value(K::String, little<uint32_t>()));
        break;  // BINUNICODE
      case 0x8c:
        push(string_value(K::String, little<uint8_t>()));
        break;  // SHORT_BINUNICODE
      case 0x8d:
        push(string_value(K::String, little<uint64_t>()));
        break;  // BINUNICODE8
      case 'T':
        push(string_value(K::String, little<uint32_t>()));
        break;  // BINSTRING
      case 'U':
        push(string_value(K::String, little<uint8_t>()));
        break;  // SHORT_BINSTRING
      case 'B':
        push(string_value(K::Bytes, little<uint32_t>()));
        break;  // BINBYTES
      case 'C':
        push(string_value(K::Bytes, little<uint8_t>()));
        break;  // SHORT_BINBYTES
      case 0x8e:
        push(string_value(K::Bytes, little<uint64_t>()));
        break;  // BINBYTES8
      case ')':
        push(make(K::Tuple));
        break;  // EMPTY_TUPLE
      case 't':
        push(sequence(K::Tuple, pop_to_mark()));
        break;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<ValuePtr> items(static_cast<std::size_t>(op - 0x84));
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push(sequence(K::Tuple, std::move(items)));
        break;
      }
      case ']':
        push(make(K::List));
        break;  // EMPTY_LIST
      case 'l':
        push(sequence(K::List, pop_to_mark()));
        break;  // LIST
      case 0x8f:
        push(make(K::List));
        break;     // EMPTY_SET (kept as a list)
      case 'a': {  // APPEND
        auto v = pop();
        append_items(top(), {v});
        break;
      }
      case 'e':     // APPENDS
      case 0x90: {  // ADDITEMS
        auto items = pop_to_mark();
        append_items(top(), items);
        break;
      }
      case '}':
        push(make(K::Dict));
        break;     // EMPTY_DICT
      case 'd': {  // DICT
        auto d = make(K::Dict);
        set_items(d, pop_to_mark());
        push(d);
        break;
      }
      case 's': {  // SETITEM
        auto value = pop();
        auto key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {  // SETITEMS
        auto kv = pop_to_mark();
        set_items(top(), kv);
        break;
      }
      case 'q':
        memo_put(little<uint8_t>());
        break;  // BINPUT
      case 'r':
        memo_put(little<uint32_t>());
        break;  // LONG_BINPUT
      case 0x94:
        memo_put(memo_.size());
        break;  // MEMOIZE
      case 'h':
        push(memo_get(little<uint8_t>()));
        break;  // BINGET
      case 'j':
        push(memo_get(little<uint32_t>()));
        break;     // LONG_BINGET
      case 'c': {  // GLOBAL
        auto v = make(K::Global);
        v->text = line();
        v->name = line();
        push(v);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        auto v = make(K::Global);
        v->text = expect(module, K::String, "STACK_GLOBAL module").text;
        v->name = expect(name, K::String, "STACK_GLOBAL name").text;
        push(v);
        break;
      }
      case 'R': {  // REDUCE
        auto args = pop();
        auto callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        pop();
        auto cls = pop();
        push(reduce(cls, make(K::Tuple)));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();
        pop();
        auto cls = pop();
        push(reduce(cls, make(K::Tuple)));
        break;
      }
      case 'b':
        pop();
        break;     // BUILD: an OrderedDict's _metadata or an opaque object's state, not needed
      case 'Q': {  // BINPERSID
        auto pid = pop();
        push(persistent_load(pid));
        break;
      }
      default:
        TORCH_CHECK(false, fmt::format("unsupported pickle opcode 0x{:02x} at byte {}", op, pos_ - 1));
    }
  }

  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  caffe2::serialize::PyTorchStreamReader& archive_;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::map<std::size_t, ValuePtr> memo_;
  std::map<std::string, ValuePtr> storages_;
};

inline const ValuePtr* find_key(const Value& dict, std::string_view key) {
  for (const auto& [k, v] : dict.dict) {
    if (k->kind == Value::Kind::String && k->text == key) return &v;
  }
  return nullptr;
}

inline std::string first_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string msg = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  return msg;
}

}  // namespace detail::pickle

/// Reads the state dict in a file written by Python's `torch.save` (zip format). The file may hold
/// the state dict itself or a checkpoint dict with the state dict under "state_dict" or "model".
/// Keys are returned as stored (a DataParallel `module.` prefix is kept; load_state_dict strips it).
inline torch::OrderedDict<std::string, torch::Tensor> read_state_dict(const std::filesystem::path& path) {
  using detail::pickle::Value;
  const std::string where = fmt::format("ardent::read_state_dict: file '{}'", path.string());
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), where, " cannot be opened");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TORCH_CHECK(!bytes.empty(), where, " is empty, expected a state dict written by torch.save");
  if (bytes.rfind("PK\x03\x04", 0) != 0) {
    TORCH_CHECK(static_cast<unsigned char>(bytes[0]) != 0x80, where,
                " is in the legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False), "
                "expected the zip format; re-save it in Python with torch.save(torch.load(old_path), new_path)");
    TORCH_CHECK(false, where, " is not a zip archive, expected a state dict written by torch.save");
  }
  detail::pickle::ValuePtr root;
  try {
    std::istringstream stream(bytes);
    caffe2::serialize::PyTorchStreamReader archive(&stream);
    TORCH_CHECK(archive.hasRecord("data.pkl"), "the archive has no data.pkl record");
    auto [pkl, pkl_size] = archive.getRecord("data.pkl");
    detail::pickle::Unpickler unpickler(static_cast<const char*>(pkl.get()), pkl_size, archive);
    root = unpickler.run();
  } catch (const std::exception& e) {
    TORCH_CHECK(false, where, " is truncated or malformed: ", detail::pickle::first_line(e));
  }
  TORCH_CHECK(root->kind == Value::Kind::Dict, where, " holds a ", detail::pickle::kind_name(root->kind),
              ", expected a state dict (a dict of tensors)");
  const Value* dict = root.get();
  for (const char* nested : {"state_dict", "model"}) {
    if (const auto* inner = detail::pickle::find_key(*root, nested);
        inner != nullptr && (*inner)->kind == Value::Kind::Dict) {
      dict = inner->get();
      break;
    }
  }
  torch::OrderedDict<std::string, torch::Tensor> out("key");
  for (const auto& [k, v] : dict->dict) {
    TORCH_CHECK(k->kind == Value::Kind::String, where, " has a state dict key of type ",
                detail::pickle::kind_name(k->kind), ", expected str");
    TORCH_CHECK(v->kind == Value::Kind::Tensor, where, " has state dict entry '", k->text, "' of type ",
                detail::pickle::kind_name(v->kind), ", expected a Tensor");
    TORCH_CHECK(!out.contains(k->text), where, " has state dict key '", k->text, "' twice");
    out.insert(k->text, v->tensor);
  }
  return out;
}

/// Writes named tensors in the format of Python's `torch.save(state_dict, path)`, through a
/// temporary file renamed into place (a crash leaves any previous file intact).
inline void write_state_dict(const torch::OrderedDict<std::string, torch::Tensor>& tensors,
                             const std::filesystem::path& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& item : tensors) dict.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  auto tmp = path;
  tmp += fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out.good(), "ardent::save_state_dict: cannot write temporary file '", tmp.string(), "'");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    TORCH_CHECK(out.good(), "ardent::save_state_dict: writing '", tmp.string(), "' failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    TORCH_CHECK(false, "ardent::save_state_dict: cannot rename '", tmp.string(), "' to '", path.string(),
                "': ", ec.message());
  }
}

namespace detail {

/// A model may declare keys of a reference checkpoint it knowingly does not hold (WideResNet's
/// unused `sub_block1`): `bool ignores_state_dict_key(const std::string&) const`.
template <typename Impl>
concept IgnoresStateDictKeys = requires(const Impl& m, const std::string& key) {
  { m.ignores_state_dict_key(key) } -> std::convertible_to<bool>;
};

inline std::string join_list(const std::vector<std::string>& items) {
  constexpr std::size_t shown = 40;
  std::string out = "[";
  for (std::size_t i = 0; i < items.size() && i < shown; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > shown) out += fmt::format(", ... and {} more", items.size() - shown);
  return out + "]";
}

template <typename Ignore>
void load_into(torch::nn::Module& module, const std::filesystem::path& path, Ignore&& ignore) {
  auto file = read_state_dict(path);
  bool all_prefixed = !file.is_empty();
  for (const auto& item : file) all_prefixed = all_prefixed && item.key().rfind("module.", 0) == 0;

  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) targets.emplace(b.key(), b.value());

  std::vector<std::string> unexpected;
  std::vector<std::string> shapes;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  std::map<std::string, bool> seen;
  for (const auto& item : file) {
    const std::string key = all_prefixed ? item.key().substr(7) : item.key();
    auto it = targets.find(key);
    if (it == targets.end()) {
      if (!ignore(key)) unexpected.push_back(key);
      continue;
    }
    seen[key] = true;
    if (it->second.sizes() != item.value().sizes()) {
      shapes.push_back(fmt::format("{} (file [{}], model [{}])", key, fmt::join(item.value().sizes(), ", "),
                                   fmt::join(it->second.sizes(), ", ")));
      continue;
    }
    copies.emplace_back(it->second, item.value());
  }
  std::vector<std::string> missing;
  for (const auto& [key, tensor] : targets) {
    if (!seen.count(key)) missing.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !shapes.empty()) {
    TORCH_CHECK(false, fmt::format("ardent::load_state_dict: the state dict in '{}' does not match the model: "
                                   "missing keys {}; unexpected keys {}; wrongly shaped keys {}",
                                   path.string(), join_list(missing), join_list(unexpected), join_list(shapes)));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(source);
}

}  // namespace detail

/// Loads a state dict written by Python's `torch.save(model.state_dict(), path)` (zip format)
/// into `model`: parameters and buffers (BatchNorm's num_batches_tracked included), a
/// DataParallel `module.` prefix stripped, a checkpoint's "state_dict" or "model" entry used when
/// present. Every key must match in name and shape; otherwise one error lists the missing, the
/// unexpected and the wrongly shaped keys, and the model is left unchanged.
template <typename Impl>
void load_state_dict(torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(!model.is_empty(), "ardent::load_state_dict: argument 'model' is an empty module holder");
  const Impl& impl = *model;
  detail::load_into(*model, path, [&impl](const std::string& key) {
    if constexpr (detail::IgnoresStateDictKeys<Impl>) {
      return static_cast<bool>(impl.ignores_state_dict_key(key));
    } else {
      (void)impl;
      (void)key;
      return false;
    }
  });
}

/// The same for a module held by std::shared_ptr.
template <typename Impl>
requires std::derived_from<Impl, torch::nn::Module>
void load_state_dict(const std::shared_ptr<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(model != nullptr, "ardent::load_state_dict: argument 'model' is a null pointer");
  torch::nn::ModuleHolder<Impl> holder(model);
  load_state_dict(holder, path);
}

/// The parameters and buffers of `module`, by their dotted names.
inline torch::OrderedDict<std::string, torch::Tensor> state_dict_of(const torch::nn::Module& module) {
  torch::OrderedDict<std::string, torch::Tensor> out("key");
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.insert(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.insert(b.key(), b.value());
  return out;
}

/// Saves `model`'s parameters and buffers so that Python reads them with
/// `model.load_state_dict(torch.load(path))`, and ardent with load_state_dict.
template <typename Impl>
void save_state_dict(const torch::nn::ModuleHolder<Impl>& model, const std::filesystem::path& path) {
  TORCH_CHECK(!model.is_empty(), "ardent::save_state_dict: argument 'model' is an empty module holder");
  write_state_dict(state_dict_of(*model), path);
}

}  // namespace ardent
