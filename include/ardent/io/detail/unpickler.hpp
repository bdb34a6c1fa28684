#pragma once
// The pickle machine behind ardent::io::read_state_dict: the subset of Python's pickle language
// (protocols 2 to 5) that torch.save writes, with tensors rebuilt from the zip archive's records.
//
// Why ardent has its own unpickler: LibTorch 1.13's torch::pickle_load turns every
// `collections.OrderedDict` into None (it expects them only as a tensor's backward hooks), and a
// Python state dict *is* an OrderedDict, so pickle_load fails on exactly the files users have.
//
// Every file is treated as hostile:
// - values live in an arena owned by the machine and refer to each other by plain pointers, so
//   freeing them never recurses (a list nested 200,000 deep cannot overflow the stack) and a list
//   or dict that contains itself is freed like any other value;
// - containers nest at most kMaxPickleDepth levels (checked as each value is added to one);
// - the values made, the stack and the memo hold at most read_limits().max_pickle_values entries
//   each (a pickle of 20 million one-byte None opcodes would otherwise take 3 GB);
// - a tensor is a view of its storage, as in PyTorch, so a tensor of size [2^31] and stride [0]
//   costs one element, and a storage costs exactly its record's bytes, whose size the zip
//   directory bounds by the file's size before anything is allocated (see zip.hpp);
// - sizes, strides and offsets are combined with overflow-checked arithmetic before any check
//   that uses them, and a record's size is compared with the pickle's claim before any copy.

#include "ardent/io/detail/zip.hpp"
#include "ardent/io/limits.hpp"

#include <torch/torch.h>

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ardent::io::detail {

/// One Python value as the unpickler sees it. Owned by the Unpickler's arena.
struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Object };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                             // String, Bytes; the module of a Global or of an Object's class
  std::string name;                             // the name of a Global or of an Object's class
  std::vector<Value*> items;                    // Tuple, List
  std::vector<std::pair<Value*, Value*>> dict;  // Dict, in insertion order
  torch::Tensor tensor;                         // Storage (1-D), Tensor
  Value* state = nullptr;                       // Object: what BUILD gave it (a module's attributes)
  std::size_t depth = 1;                        // 1 + the deepest value added to this container
};

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

/// "a" or "an" before a kind's name.
inline std::string with_article(Value::Kind kind) {
  const auto name = kind_name(kind);
  const bool vowel = std::string_view("aeiouAEIOU").find(name.front()) != std::string_view::npos;
  return fmt::format("{} {}", vowel ? "an" : "a", name);
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

/// The bytes of an archive record: (data, size), kept alive by the returned DataPtr.
using RecordReader = std::function<std::pair<std::shared_ptr<at::DataPtr>, std::size_t>(const std::string&)>;

/// A pickle machine for the subset of the pickle language that torch.save writes. Tensor storages
/// come from the records "data/<key>" that `read_record` returns. The values run() returns live as
/// long as the Unpickler.
class Unpickler {
 public:
  Unpickler(const char* data, std::size_t size, RecordReader read_record)
      : data_(data), size_(size), read_record_(std::move(read_record)) {}

  Value* run() {
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
  using K = Value::Kind;

  static void check_count(std::size_t count, const char* what) {
    TORCH_CHECK(count < read_limits().max_pickle_values(),
                "pickle data makes more than max_pickle_values = ", read_limits().max_pickle_values(), " ", what,
                kRaiseLimitHint);
  }
  Value* make(K kind) {
    check_count(arena_.size(), "values");
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  // Records that `child` now sits inside `parent`; the nesting bound is checked here.
  static void nest(Value* parent, const Value* child) {
    TORCH_CHECK(child->depth < kMaxPickleDepth, "pickle values nest deeper than ", kMaxPickleDepth,
                " levels (ardent::io::kMaxPickleDepth)");
    parent->depth = std::max(parent->depth, child->depth + 1);
  }
  const char* take(std::size_t n) {
    TORCH_CHECK(n <= size_ - pos_, "pickle data truncated at byte ", pos_, " (needs ", n, " more bytes)");
    const char* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t little(std::size_t width) {  // little-endian unsigned integer of 1, 2, 4 or 8 bytes
    const char* p = take(width);
    uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return v;
  }
  std::string line() {
    const std::size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    TORCH_CHECK(pos_ < size_, "pickle data truncated inside a GLOBAL name");
    std::string s(data_ + start, pos_ - start);
    ++pos_;
    return s;
  }
  void push(Value* v) {
    check_count(stack_.size(), "stack entries");
    stack_.push_back(v);
  }
  Value* pop() {
    TORCH_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()),
                "malformed pickle: stack underflow at byte ", pos_);
    auto* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    TORCH_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()),
                "malformed pickle: empty stack at byte ", pos_);
    return stack_.back();
  }
  std::vector<Value*> pop_to_mark() {
    TORCH_CHECK(!marks_.empty(), "malformed pickle: no MARK before byte ", pos_);
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(uint64_t id) {
    if (memo_.count(id) == 0) check_count(memo_.size(), "memo entries");
    memo_[id] = top();
  }
  Value* memo_get(uint64_t id) {
    auto it = memo_.find(id);
    TORCH_CHECK(it != memo_.end(), "malformed pickle: memo entry ", id, " read before it was written");
    return it->second;
  }
  Value* string_value(K kind, uint64_t n) {
    const char* p = take(n);
    auto* v = make(kind);
    v->text.assign(p, n);
    return v;
  }
  Value* int_value(int64_t i) {
    auto* v = make(K::Int);
    v->integer = i;
    return v;
  }
  Value* long_value(uint64_t n) {  // LONG1 / LONG4: little-endian two's complement
    TORCH_CHECK(n <= 8, "integer of ", n, " bytes in pickle data does not fit in int64");
    const char* p = take(n);
    uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<unsigned char>(p[n - 1]) & 0x80U)) v |= ~uint64_t{0} << (8 * n);
    int64_t s = 0;
    std::memcpy(&s, &v, 8);
    return int_value(s);
  }
  Value* sequence(K kind, std::vector<Value*> items) {
    auto* v = make(kind);
    for (const auto* item : items) nest(v, item);
    v->items = std::move(items);
    return v;
  }
  static const Value& expect(const Value* v, K kind, std::string_view what) {
    TORCH_CHECK(v->kind == kind, "malformed pickle: ", what, " is ", with_article(v->kind), ", expected ",
                with_article(kind));
    return *v;
  }
  static void set_items(Value* target, const std::vector<Value*>& kv) {
    TORCH_CHECK(kv.size() % 2 == 0, "malformed pickle: odd number of values for SETITEMS");
    if (target->kind != K::Dict) return;  // an opaque object's state: ignored
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      nest(target, kv[i]);
      nest(target, kv[i + 1]);
      target->dict.emplace_back(kv[i], kv[i + 1]);
    }
  }
  static void append_items(Value* target, const std::vector<Value*>& items) {
    if (target->kind != K::List) return;
    for (const auto* item : items) nest(target, item);
    target->items.insert(target->items.end(), items.begin(), items.end());
  }

  Value* persistent_load(const Value* pid) {
    // ('storage', <storage type global>, key, location, numel)
    const auto& t = expect(pid, K::Tuple, "persistent id");
    TORCH_CHECK(t.items.size() >= 5 && t.items[0]->kind == K::String && t.items[0]->text == "storage",
                "malformed pickle: unsupported persistent id (expected a ('storage', ...) tuple)");
    const auto& type = expect(t.items[1], K::Global, "storage type");
    const auto dtype = storage_dtype(type.text, type.name);
    const auto& key = expect(t.items[2], K::String, "storage key").text;
    const int64_t numel = expect(t.items[4], K::Int, "storage size").integer;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) {
      TORCH_CHECK(cached->second->tensor.dtype() == dtype && cached->second->tensor.numel() == numel,
                  "malformed pickle: storage '", key, "' is read twice with different types or sizes");
      return cached->second;
    }
    const std::string record = "data/" + key;
    const int64_t element = static_cast<int64_t>(c10::elementSize(dtype));
    int64_t expected = 0;
    TORCH_CHECK(numel >= 0 && !__builtin_mul_overflow(numel, element, &expected), "malformed pickle: storage '", key,
                "' claims ", numel, " elements");
    // The record's real size is known (and bounded by the file's) before anything is allocated.
    auto [data, bytes] = read_record_(record);
    TORCH_CHECK(bytes == static_cast<uint64_t>(expected), "record '", record, "' has ", bytes, " bytes, expected ",
                expected, " (", numel, " elements of ", dtype, ")");
    auto* v = make(K::Storage);
    // The storage *is* the record's buffer: no copy; the tensor keeps the buffer alive.
    void* raw = bytes > 0 ? data->get() : nullptr;
    v->tensor = bytes > 0 ? torch::from_blob(
                                raw, {numel}, [keep = data](void*) mutable { keep.reset(); },
                                torch::TensorOptions().dtype(dtype))
                          : torch::empty({0}, torch::TensorOptions().dtype(dtype));
    storages_.emplace(key, v);
    return v;
  }

  static std::vector<int64_t> int_tuple(const Value* v, std::string_view what) {
    TORCH_CHECK(v->kind == K::Tuple || v->kind == K::List, "malformed pickle: tensor ", what, " is not a tuple");
    std::vector<int64_t> out;
    for (const auto* item : v->items) out.push_back(expect(item, K::Int, what).integer);
    return out;
  }

  Value* rebuild_tensor(const std::vector<Value*>& args) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    TORCH_CHECK(args.size() >= 4, "malformed pickle: _rebuild_tensor with ", args.size(), " arguments");
    const auto& storage = expect(args[0], K::Storage, "tensor storage").tensor;
    const int64_t offset = expect(args[1], K::Int, "storage offset").integer;
    const auto sizes = int_tuple(args[2], "size");
    const auto strides = int_tuple(args[3], "stride");
    TORCH_CHECK(sizes.size() == strides.size(), "malformed pickle: tensor size and stride differ in length");
    TORCH_CHECK(offset >= 0, "malformed pickle: negative storage offset ", offset);
    bool empty = false;
    int64_t numel = 1;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      TORCH_CHECK(sizes[i] >= 0 && strides[i] >= 0, "malformed pickle: negative tensor size or stride");
      TORCH_CHECK(!__builtin_mul_overflow(numel, sizes[i], &numel), "malformed pickle: tensor of size ",
                  c10::IntArrayRef(sizes), " has more than 2^63 elements");
      empty = empty || sizes[i] == 0;
    }
    auto* v = make(K::Tensor);
    if (empty) {
      v->tensor = torch::empty(sizes, storage.options());
      return v;
    }
    // The last element read: offset + sum (size_i - 1) * stride_i, each step checked for overflow.
    int64_t last = offset;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      int64_t span = 0;
      TORCH_CHECK(
          !__builtin_mul_overflow(sizes[i] - 1, strides[i], &span) && !__builtin_add_overflow(last, span, &last),
          "malformed pickle: tensor of size ", c10::IntArrayRef(sizes), " and stride ", c10::IntArrayRef(strides),
          " reaches beyond 2^63 elements");
    }
    TORCH_CHECK(last < storage.numel(), "malformed pickle: tensor of size ", c10::IntArrayRef(sizes), " and stride ",
                c10::IntArrayRef(strides), " at offset ", offset, " overruns its storage of ", storage.numel(),
                " elements");
    v->tensor = storage.as_strided(sizes, strides, offset);  // a view, as torch.load gives
    return v;
  }

  Value* reduce(const Value* callable, const Value* args) {
    const auto& arg_items = expect(args, K::Tuple, "REDUCE arguments").items;
    if (callable->kind == K::Global) {
      const auto& m = callable->text;
      const auto& n = callable->name;
      if (m == "collections" && n == "OrderedDict") {
        auto* d = make(K::Dict);
        if (!arg_items.empty() && arg_items[0]->kind == K::List) {
          for (const auto* pair : arg_items[0]->items) {
            if (pair->kind == K::Tuple && pair->items.size() == 2) set_items(d, pair->items);
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
    auto* v = make(K::Object);  // any other Python object: kept opaque
    if (callable->kind == K::Global) {
      v->text = callable->text;
      v->name = callable->name;
    }
    return v;
  }

  void step(unsigned char op) {
    switch (op) {
      case 0x80:  // PROTO
        take(1);
        break;
      case 0x95:  // FRAME
        take(8);
        break;
      case '(':  // MARK
        check_count(marks_.size(), "marks");
        marks_.push_back(stack_.size());
        break;
      case '0':  // POP
        pop();
        break;
      case '1':  // POP_MARK
        pop_to_mark();
        break;
      case '2':  // DUP
        push(top());
        break;
      case 'N':
        push(make(K::None));
        break;
      case 0x88:
      case 0x89: {
        auto* v = make(K::Bool);
        v->boolean = op == 0x88;
        push(v);
        break;
      }
      case 'J':  // BININT: signed 32-bit
        push(int_value(static_cast<int32_t>(static_cast<uint32_t>(little(4)))));
        break;
      case 'K':  // BININT1
        push(int_value(static_cast<int64_t>(little(1))));
        break;
      case 'M':  // BININT2
        push(int_value(static_cast<int64_t>(little(2))));
        break;
      case 0x8a:  // LONG1
        push(long_value(little(1)));
        break;
      case 0x8b:  // LONG4
        push(long_value(little(4)));
        break;
      case 'G': {  // BINFLOAT: big-endian double
        const char* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(p[i]);
        auto* v = make(K::Float);
        std::memcpy(&v->real, &bits, 8);
        push(v);
        break;
      }
      case 'X':  // BINUNICODE
      case 'T':  // BINSTRING
        push(string_value(K::String, little(4)));
        break;
      case 0x8c:  // SHORT_BINUNICODE
      case 'U':   // SHORT_BINSTRING
        push(string_value(K::String, little(1)));
        break;
      case 0x8d:  // BINUNICODE8
        push(string_value(K::String, little(8)));
        break;
      case 'B':  // BINBYTES
        push(string_value(K::Bytes, little(4)));
        break;
      case 'C':  // SHORT_BINBYTES
        push(string_value(K::Bytes, little(1)));
        break;
      case 0x8e:  // BINBYTES8
        push(string_value(K::Bytes, little(8)));
        break;
      case ')':  // EMPTY_TUPLE
        push(make(K::Tuple));
        break;
      case 't':  // TUPLE
        push(sequence(K::Tuple, pop_to_mark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<Value*> items(static_cast<std::size_t>(op - 0x84));
        for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
        push(sequence(K::Tuple, std::move(items)));
        break;
      }
      case ']':   // EMPTY_LIST
      case 0x8f:  // EMPTY_SET (kept as a list)
        push(make(K::List));
        break;
      case 'l':  // LIST
        push(sequence(K::List, pop_to_mark()));
        break;
      case 'a': {  // APPEND
        auto* v = pop();
        append_items(top(), {v});
        break;
      }
      case 'e':     // APPENDS
      case 0x90: {  // ADDITEMS
        auto items = pop_to_mark();
        append_items(top(), items);
        break;
      }
      case '}':  // EMPTY_DICT
        push(make(K::Dict));
        break;
      case 'd': {  // DICT
        auto* d = make(K::Dict);
        set_items(d, pop_to_mark());
        push(d);
        break;
      }
      case 's': {  // SETITEM
        auto* value = pop();
        auto* key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {  // SETITEMS
        auto kv = pop_to_mark();
        set_items(top(), kv);
        break;
      }
      case 'q':  // BINPUT
        memo_put(little(1));
        break;
      case 'r':  // LONG_BINPUT
        memo_put(little(4));
        break;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size());
        break;
      case 'h':  // BINGET
        push(memo_get(little(1)));
        break;
      case 'j':  // LONG_BINGET
        push(memo_get(little(4)));
        break;
      case 'c': {  // GLOBAL
        auto* v = make(K::Global);
        v->text = line();
        v->name = line();
        push(v);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto* name = pop();
        auto* module = pop();
        auto* v = make(K::Global);
        v->text = expect(module, K::String, "STACK_GLOBAL module").text;
        v->name = expect(name, K::String, "STACK_GLOBAL name").text;
        push(v);
        break;
      }
      case 'R': {  // REDUCE
        auto* args = pop();
        auto* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        pop();
        auto* cls = pop();
        push(reduce(cls, make(K::Tuple)));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();
        pop();
        auto* cls = pop();
        push(reduce(cls, make(K::Tuple)));
        break;
      }
      case 'b': {  // BUILD: an object's state (a module's attributes); an OrderedDict's _metadata is dropped
        auto* state = pop();
        auto* object = top();
        if (object->kind == K::Object && object->state == nullptr) {
          nest(object, state);
          object->state = state;
        }
        break;
      }
      case 'Q': {  // BINPERSID
        auto* pid = pop();
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
  RecordReader read_record_;
  std::vector<std::unique_ptr<Value>> arena_;  // every value; freed one by one, never recursively
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::map<uint64_t, Value*> memo_;
  std::map<std::string, Value*> storages_;
};

inline Value* const* find_key(const Value& dict, std::string_view key) {
  for (const auto& [k, v] : dict.dict) {
    if (k->kind == Value::Kind::String && k->text == key) return &v;
  }
  return nullptr;
}

}  // namespace ardent::io::detail
