// torch.save reader (see pth.h): the whitelist of globals, what "calling" each one builds,
// storages from zip entries or from the legacy file's tail, and the state_dict extraction.
//
// What a state_dict pickle looks like (protocol 2, as `python -m pickletools` prints it):
//   GLOBAL 'collections OrderedDict'; EMPTY_TUPLE; REDUCE            -> an empty OrderedDict
//   MARK
//     BINUNICODE 'conv1.weight'
//     GLOBAL 'torch._utils _rebuild_tensor_v2'
//     MARK
//       MARK 'storage', GLOBAL 'torch FloatStorage', '0', 'cpu', 9408 TUPLE; BINPERSID
//       0 (storage offset), (64, 3, 7, 7) (size), (147, 49, 7, 1) (stride), False, OrderedDict()
//     TUPLE; REDUCE                                                   -> the tensor
//     ... one key and tensor per entry ...
//   SETITEMS; {'_metadata': ...}; BUILD; STOP
#include "pth.h"

#include <cstring>
#include <unordered_map>

#include "pickle.h"
#include "zip_reader.h"

namespace strata {

namespace {

using pickle::Graph;
using pickle::Id;
using pickle::Kind;
using pickle::Value;
using pickle::printable;

// ---- torch dtypes --------------------------------------------------------------------------
struct TorchDType {
    const char* name;     // torch's name: "float32"
    const char* storage;  // its legacy storage class: "FloatStorage"
    size_t size;          // bytes per element
    bool supported;       // does strata load it
    DType dtype;          // when supported
};

const TorchDType kDTypes[] = {
    {"float32", "FloatStorage", 4, true, DType::Float32},
    {"float16", "HalfStorage", 2, true, DType::Float16},
    {"bfloat16", "BFloat16Storage", 2, true, DType::BFloat16},
    {"int64", "LongStorage", 8, true, DType::Int64},
    {"float64", "DoubleStorage", 8, false, DType::Float32},
    {"int32", "IntStorage", 4, false, DType::Float32},
    {"int16", "ShortStorage", 2, false, DType::Float32},
    {"int8", "CharStorage", 1, false, DType::Float32},
    {"uint8", "ByteStorage", 1, false, DType::Float32},
    {"bool", "BoolStorage", 1, false, DType::Float32},
    {"complex64", "ComplexFloatStorage", 8, false, DType::Float32},
    {"complex128", "ComplexDoubleStorage", 16, false, DType::Float32},
    {"quint8", "QUInt8Storage", 1, false, DType::Float32},
    {"qint8", "QInt8Storage", 1, false, DType::Float32},
    {"qint32", "QInt32Storage", 4, false, DType::Float32},
    {"quint4x2", "QUInt4x2Storage", 1, false, DType::Float32},
    {"quint2x4", "QUInt2x4Storage", 1, false, DType::Float32},
    {"untyped bytes", "UntypedStorage", 1, false, DType::Float32},
    {"uint16", nullptr, 2, false, DType::Float32},
    {"uint32", nullptr, 4, false, DType::Float32},
    {"uint64", nullptr, 8, false, DType::Float32},
    {"float8_e4m3fn", nullptr, 1, false, DType::Float32},
    {"float8_e5m2", nullptr, 1, false, DType::Float32},
};
constexpr int kNumDTypes = static_cast<int>(sizeof(kDTypes) / sizeof(kDTypes[0]));
// torch's other names for the same dtypes (torch.float is torch.float32).
const std::pair<const char*, const char*> kDTypeAliases[] = {
    {"float", "float32"}, {"half", "float16"}, {"long", "int64"}, {"double", "float64"},
    {"int", "int32"}, {"short", "int16"}, {"cfloat", "complex64"}, {"cdouble", "complex128"}};

// ---- the whitelist: every global a state_dict file may name, and its tag ----------------------
enum Tag : int32_t {
    kOrderedDict = 1,
    kTorchSize,
    kRebuildTensor,         // torch._utils._rebuild_tensor (PyTorch < 0.4)
    kRebuildTensorV2,       // the one every current file uses
    kRebuildTensorV3,       // adds a dtype argument (newer torch, dtypes without storage classes)
    kRebuildParameter,      // nn.Parameter: the tensor is what we keep
    kRebuildParameterWithState,
    kInert,                  // data that checkpoints carry next to a state_dict (see below)
    kStorageTypeBase = 100,  // + dtype index: torch.FloatStorage, ...
    kDTypeBase = 200,        // + dtype index: torch.float32, ...
};
enum ObjectTag : int32_t { kStorageObject = 1, kTensorObject = 2, kInertObject = 3 };

// Globals that real checkpoints hold beside the state_dict: torchvision's reference scripts save
// their argparse.Namespace, training loops save NumPy scalars (numpy dtype + bytes, the bytes
// via _codecs.encode in protocol 2) and whole models name builtins.set. "Calling" one of these
// builds an inert placeholder: nothing runs, the value is never read, and a placeholder found
// where a tensor belongs is an error like any other non-tensor.
const std::pair<const char*, const char*> kInertGlobals[] = {
    {"argparse", "Namespace"},
    {"numpy", "dtype"},
    {"numpy", "ndarray"},
    {"numpy.core.multiarray", "scalar"},
    {"numpy.core.multiarray", "_reconstruct"},
    {"numpy._core.multiarray", "scalar"},
    {"numpy._core.multiarray", "_reconstruct"},
    {"_codecs", "encode"},
    {"builtins", "set"},
    {"builtins", "frozenset"},
    {"__builtin__", "set"},
    {"__builtin__", "frozenset"},
};

int32_t whitelisted(std::string_view module, std::string_view name) {
    if (module == "collections" && name == "OrderedDict") return kOrderedDict;
    for (const auto& [m, n] : kInertGlobals)
        if (module == m && name == n) return kInert;
    if (module == "torch._utils") {
        if (name == "_rebuild_tensor") return kRebuildTensor;
        if (name == "_rebuild_tensor_v2") return kRebuildTensorV2;
        if (name == "_rebuild_tensor_v3") return kRebuildTensorV3;
        if (name == "_rebuild_parameter") return kRebuildParameter;
        if (name == "_rebuild_parameter_with_state") return kRebuildParameterWithState;
    }
    if (module == "torch" || module == "torch.storage") {
        if (name == "Size" && module == "torch") return kTorchSize;
        for (int i = 0; i < kNumDTypes; ++i)
            if (kDTypes[i].storage && name == kDTypes[i].storage) return kStorageTypeBase + i;
    }
    if (module == "torch") {
        std::string_view dtype = name;
        for (const auto& [alias, canonical] : kDTypeAliases)
            if (name == alias) dtype = canonical;
        for (int i = 0; i < kNumDTypes; ++i)
            if (dtype == kDTypes[i].name) return kDTypeBase + i;
    }
    return 0;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// A storage: the bytes behind one persistent id key ("0", "1", ... in zip files).
struct StorageRecord {
    std::string key;
    int dtype = 0;                 // dtype index of the first typed view (legacy data layout)
    uint64_t declared_bytes = 0;   // numel * element size, from the persistent id
    const unsigned char* data = nullptr;
    bool has_data = false;
    std::shared_ptr<Storage> storage;  // made on first use, shared by all its tensors
};

// A tensor as _rebuild_tensor_v2 describes it: a strided view of a storage, in elements.
struct TensorRecord {
    uint32_t storage = 0;
    int dtype = 0;                 // the view's dtype: its persistent id's, or _v3's argument
    bool explicit_dtype = false;   // _rebuild_tensor_v3: the dtype argument is what torch uses
    int64_t offset = 0;
    Shape shape, strides;
};

enum class Container { Zip, Legacy };

class TorchHooks : public pickle::Hooks {
public:
    TorchHooks(const std::string& name, Container container, const ZipArchive* zip,
               std::string prefix, bool verify)
        : name_(name), container_(container), zip_(zip), prefix_(std::move(prefix)),
          verify_(verify) {}

    void set_where(std::string where) { where_ = std::move(where); }

    int32_t find_class(std::string_view module, std::string_view name) override {
        if (module.size() <= 200 && name.size() <= 200)
            if (const int32_t tag = whitelisted(module, name)) return tag;
        std::string hint = " Save only the state_dict: torch.save(model.state_dict(), path).";
        if (starts_with(module, "torch.nn.") || starts_with(module, "torchvision.") ||
            module == "__main__" || starts_with(module, "__torch__"))
            hint = " The file seems to hold a whole pickled model, not a state_dict: in Python, "
                   "torch.save(model.state_dict(), path) instead of torch.save(model, path).";
        else if (starts_with(module, "numpy"))
            hint = " (A NumPy value in the file: store Python numbers or tensors instead, or "
                   "save only the state_dict.)";
        STRATA_FAIL(where_, ": the file refers to the Python global '", printable(module), ".",
                    printable(name), "', which strata refuses: it loads only state_dict data "
                    "(tensors, dicts, lists, numbers, strings) and never imports or calls "
                    "anything a file names.", hint);
    }

    Id call(Graph& g, Id callable, Id args_id) override {
        const Value& fn = g[callable];
        // A reference, not a copy: a hostile file may pass one huge tuple to many calls. Each
        // case checks the argument count first and reads `args` before adding to `g`.
        const std::vector<Id>& args = g[args_id].items;
        const std::string what = where_ + ": " + printable(fn.s) + "." + printable(fn.name);
        switch (fn.tag) {
            case kOrderedDict: {
                STRATA_CHECK(args.empty(), what, "() with arguments is not supported");
                Value d;
                d.kind = Kind::Dict;
                return g.add(std::move(d));
            }
            case kInert: {
                Value placeholder;
                placeholder.kind = Kind::Object;
                placeholder.tag = kInertObject;
                return g.add(std::move(placeholder));
            }
            case kTorchSize:  // torch.Size((2, 3)) is just the tuple
                STRATA_CHECK(args.size() == 1 && g[args[0]].kind == Kind::Tuple, what,
                             " expects one tuple");
                return args[0];
            case kRebuildTensor:
            case kRebuildTensorV2:
            case kRebuildTensorV3:
                return rebuild_tensor(g, fn.tag, args, what);
            case kRebuildParameter:           // (data, requires_grad, backward_hooks)
            case kRebuildParameterWithState:  // (data, requires_grad, backward_hooks, state)
                STRATA_CHECK(args.size() >= 3 && args.size() <= 4 && is_tensor(g, args[0]), what,
                             " expects a tensor as its first argument");
                return args[0];
            default:
                STRATA_FAIL(what, " cannot be called: strata only accepts it as data");
        }
    }

    Id persistent_load(Graph& g, Id pid_id) override {
        // zip:    ('storage', storage_type, key, location, numel)
        // legacy: ('storage', storage_type, key, location, numel, view_metadata)
        const Value& pid = g[pid_id];
        STRATA_CHECK(pid.kind == Kind::Tuple && !pid.items.empty() &&
                         g[pid.items[0]].kind == Kind::Str,
                     where_, ": a persistent id must be a tuple starting with a string, got ",
                     pickle::describe(g, pid_id));
        const std::string_view type = g[pid.items[0]].s;
        STRATA_CHECK(type != "module", where_, ": the file holds a whole pickled model (legacy "
                     "'module' record), not a state_dict: in Python, save model.state_dict()");
        STRATA_CHECK(type == "storage", where_, ": unknown persistent id type '", printable(type), "'");
        STRATA_CHECK(pid.items.size() == 5 || pid.items.size() == 6, where_, ": a storage persistent id has ",
                     pid.items.size(), " fields; expected 5 (zip) or 6 (legacy)");
        const std::vector<Id> f = pid.items;  // copied: g.add below may move g's values
        if (f.size() == 6)
            STRATA_CHECK(g[f[5]].kind == Kind::None, where_, ": storage views (files from PyTorch "
                         "< 1.0) are not supported; load the file in Python and save it again");
        const Value& type_v = g[f[1]];
        STRATA_CHECK(type_v.kind == Kind::Global && type_v.tag >= kStorageTypeBase &&
                         type_v.tag < kStorageTypeBase + kNumDTypes,
                     where_, ": a storage persistent id names ", pickle::describe(g, f[1]),
                     " where a torch.*Storage type belongs");
        const int dtype = type_v.tag - kStorageTypeBase;
        STRATA_CHECK(g[f[2]].kind == Kind::Str && g[f[2]].s.size() <= 256, where_,
                     ": a storage key must be a string of at most 256 bytes, got ",
                     pickle::describe(g, f[2]));
        STRATA_CHECK(g[f[4]].kind == Kind::Int && g[f[4]].i >= 0, where_,
                     ": a storage size must be a non-negative int, got ", pickle::describe(g, f[4]));
        const std::string key(g[f[2]].s);
        const uint64_t numel = static_cast<uint64_t>(g[f[4]].i);
        uint64_t bytes = 0;
        STRATA_CHECK(!__builtin_mul_overflow(numel, kDTypes[dtype].size, &bytes), where_,
                     ": storage '", printable(key), "' of ", numel, " elements is too large");

        auto it = by_key_.find(key);
        if (it == by_key_.end()) {
            it = by_key_.emplace(key, static_cast<uint32_t>(storages_.size())).first;
            StorageRecord s;
            s.key = key;
            s.dtype = dtype;
            s.declared_bytes = bytes;
            if (container_ == Container::Zip) attach_zip_entry(s);
            storages_.push_back(std::move(s));
            g.charge(sizeof(StorageRecord) + 2 * key.size() + 64);
        } else if (storages_[it->second].dtype == dtype) {
            // The same storage seen again (shared by several tensors): sizes must agree.
            STRATA_CHECK(storages_[it->second].declared_bytes == bytes, where_, ": storage '",
                         printable(key), "' is declared with ", storages_[it->second].declared_bytes,
                         " bytes and again with ", bytes, " bytes");
        }
        // Seen again with another dtype: torch.load keeps the type of the first persistent id
        // (zip and legacy alike), so this view would not mean what its own id says. A tensor
        // made from it is refused in extract_state_dict, naming both keys.
        Value obj;
        obj.kind = Kind::Object;
        obj.tag = kStorageObject;
        obj.ref = it->second;
        obj.i = dtype;  // the dtype of this typed view of the storage
        return g.add(std::move(obj));
    }

    void build(Graph& g, Id object, Id state) override {
        // OrderedDict state_dicts carry their _metadata (per-module versions) this way, and
        // inert placeholders their attributes; tensors do not depend on either: ignored.
        const bool inert = g[object].kind == Kind::Object && g[object].tag == kInertObject;
        STRATA_CHECK(g[object].kind == Kind::Dict || inert, where_, ": setting the state of ",
                     pickle::describe(g, object), " (BUILD with ", pickle::describe(g, state),
                     ") is not supported");
    }

    bool is_tensor(const Graph& g, Id id) const {
        return g[id].kind == Kind::Object && g[id].tag == kTensorObject;
    }

    // For a tensor whose dtype torch would not take from its own persistent id: the storage's
    // first persistent id typed it otherwise, and torch keeps that type (zip and legacy alike;
    // _rebuild_tensor_v3 passes its dtype explicitly and is exempt). Returns the storage index,
    // or -1 when the tensor means what it says.
    int64_t retyped_storage(const Graph& g, Id id) const {
        const TensorRecord& t = tensors_[g[id].ref];
        return !t.explicit_dtype && t.dtype != storages_[t.storage].dtype ? static_cast<int64_t>(t.storage) : -1;
    }
    uint32_t storage_of(const Graph& g, Id id) const { return tensors_[g[id].ref].storage; }
    const char* view_dtype_name(const Graph& g, Id id) const { return kDTypes[tensors_[g[id].ref].dtype].name; }
    const char* storage_dtype_name(uint32_t storage) const { return kDTypes[storages_[storage].dtype].name; }
    const std::string& storage_key(uint32_t storage) const { return storages_[storage].key; }

    // Legacy files: the bytes of the storage `key`, found after the pickles.
    StorageRecord* storage_by_key(const std::string& key) {
        const auto it = by_key_.find(key);
        return it == by_key_.end() ? nullptr : &storages_[it->second];
    }

    // The strata Tensor for a tensor object, checked against its storage.
    Tensor make_tensor(const Graph& g, Id id, const std::string& key) {
        const TensorRecord& t = tensors_[g[id].ref];
        StorageRecord& s = storages_[t.storage];
        const TorchDType& dt = kDTypes[t.dtype];
        const std::string at = name_ + ": tensor '" + key + "'";
        STRATA_CHECK(dt.supported, at, " has dtype ", dt.name, "; strata reads float32, float16, "
                     "bfloat16 and int64 (convert it in Python, e.g. tensor.float(), before saving)");
        STRATA_CHECK(s.has_data, at, ": its storage '", printable(s.key), "' has no data in the file");
        const uint64_t esize = dt.size;
        // The furthest element, offset + sum((size - 1) * stride), must lie inside the storage.
        // Every step is checked for overflow: shapes and strides come from the file.
        uint64_t numel = 1, last = static_cast<uint64_t>(t.offset), need = 0;
        bool overflow = false;
        for (size_t d = 0; d < t.shape.size(); ++d) {
            const uint64_t extent = static_cast<uint64_t>(t.shape[d]);
            overflow |= __builtin_mul_overflow(numel, extent, &numel);
            if (extent > 0) {
                uint64_t span = 0;
                overflow |= __builtin_mul_overflow(extent - 1, static_cast<uint64_t>(t.strides[d]), &span);
                overflow |= __builtin_add_overflow(last, span, &last);
            }
        }
        STRATA_CHECK(!overflow && numel <= static_cast<uint64_t>(INT64_MAX) / esize, at, " has shape ",
                     shape_str(t.shape), " and strides ", shape_str(t.strides),
                     " whose element count or extent overflows 64 bits");
        // An empty view only needs its offset inside the storage (it may sit at the very end).
        const uint64_t need_elements = numel == 0 ? static_cast<uint64_t>(t.offset) : last + 1;
        overflow = (numel != 0 && last == UINT64_MAX) ||
                   __builtin_mul_overflow(need_elements, esize, &need);
        STRATA_CHECK(!overflow && need <= s.declared_bytes, at, " (shape ", shape_str(t.shape),
                     ", strides ", shape_str(t.strides), ", storage offset ", t.offset, ", ",
                     dt.name, ") needs ", overflow ? std::string("more than 2^64") : std::to_string(need),
                     " bytes but its storage '", printable(s.key), "' holds ", s.declared_bytes);
        if (!s.storage) {
            // Borrow the mapped bytes when they are aligned for any element type (zip entries
            // are 64-byte aligned by torch's writer); otherwise copy them once.
            const size_t n = static_cast<size_t>(s.declared_bytes);
            if (reinterpret_cast<uintptr_t>(s.data) % 8 == 0) {
                s.storage = Storage::borrow(const_cast<unsigned char*>(s.data), n, keep_alive_);
            } else {
                s.storage = Storage::allocate(n);
                if (n) std::memcpy(s.storage->data(), s.data, n);
            }
        }
        return Tensor(s.storage, static_cast<size_t>(t.offset) * esize, t.shape, t.strides, dt.dtype);
    }

    void set_keep_alive(std::shared_ptr<const void> keep_alive) { keep_alive_ = std::move(keep_alive); }

private:
    // Zip files: the storage's bytes are the entry <prefix>/data/<key>, of exactly its size.
    void attach_zip_entry(StorageRecord& s) {
        const std::string entry_name = prefix_ + "data/" + s.key;
        const ZipEntry* e = zip_->find(entry_name);
        STRATA_CHECK(e != nullptr, where_, ": storage '", printable(s.key), "' has no entry '",
                     printable(entry_name), "' in the archive");
        STRATA_CHECK(e->size == s.declared_bytes, where_, ": storage '", printable(s.key), "' is declared as ",
                     s.declared_bytes / kDTypes[s.dtype].size, " ", kDTypes[s.dtype].name, " elements (",
                     s.declared_bytes, " bytes) but its entry '", printable(entry_name), "' holds ",
                     e->size, " bytes");
        s.data = zip_->read(*e, verify_);
        s.has_data = true;
    }

    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
    // metadata]); _rebuild_tensor has the first four; _v3 adds dtype after backward_hooks.
    Id rebuild_tensor(Graph& g, int32_t tag, const std::vector<Id>& args, const std::string& what) {
        const size_t min_args = tag == kRebuildTensor ? 4 : tag == kRebuildTensorV2 ? 6 : 7;
        STRATA_CHECK(args.size() >= min_args && args.size() <= min_args + 1, what, " expects ",
                     min_args, " arguments, got ", args.size());
        const Value& storage = g[args[0]];
        STRATA_CHECK(storage.kind == Kind::Object && storage.tag == kStorageObject, what,
                     " expects a storage first, got ", pickle::describe(g, args[0]));
        TensorRecord t;
        t.storage = storage.ref;
        t.dtype = static_cast<int>(storage.i);
        if (tag == kRebuildTensorV3) {
            const Value& dtype = g[args[6]];
            STRATA_CHECK(dtype.kind == Kind::Global && dtype.tag >= kDTypeBase &&
                             dtype.tag < kDTypeBase + kNumDTypes,
                         what, " expects a torch dtype, got ", pickle::describe(g, args[6]));
            t.dtype = dtype.tag - kDTypeBase;
            t.explicit_dtype = true;
        }
        STRATA_CHECK(g[args[1]].kind == Kind::Int && g[args[1]].i >= 0, what,
                     " expects a non-negative storage offset, got ", pickle::describe(g, args[1]));
        t.offset = g[args[1]].i;
        const Value& size = g[args[2]];
        const Value& stride = g[args[3]];
        STRATA_CHECK(size.kind == Kind::Tuple && stride.kind == Kind::Tuple &&
                         size.items.size() == stride.items.size(),
                     what, " expects size and stride tuples of the same length, got ",
                     pickle::describe(g, args[2]), " and ", pickle::describe(g, args[3]));
        STRATA_CHECK(size.items.size() <= 64, what, " has ", size.items.size(),
                     " dimensions; strata allows at most 64");
        for (size_t d = 0; d < size.items.size(); ++d) {
            const Value& n = g[size.items[d]];
            const Value& s = g[stride.items[d]];
            STRATA_CHECK(n.kind == Kind::Int && n.i >= 0 && s.kind == Kind::Int && s.i >= 0, what,
                         " size and stride must be non-negative ints, got ",
                         pickle::describe(g, size.items[d]), " and ", pickle::describe(g, stride.items[d]));
            t.shape.push_back(n.i);
            t.strides.push_back(s.i);
        }
        g.charge(sizeof(TensorRecord) + (t.shape.capacity() + t.strides.capacity()) * sizeof(int64_t));
        tensors_.push_back(std::move(t));
        Value obj;
        obj.kind = Kind::Object;
        obj.tag = kTensorObject;
        obj.ref = static_cast<uint32_t>(tensors_.size() - 1);
        return g.add(std::move(obj));
    }

    const std::string& name_;
    Container container_;
    const ZipArchive* zip_;
    std::string prefix_;
    bool verify_;
    std::string where_;
    std::shared_ptr<const void> keep_alive_;
    std::vector<StorageRecord> storages_;
    std::unordered_map<std::string, uint32_t> by_key_;
    std::vector<TensorRecord> tensors_;
};

// ---- finding the state_dict in what was unpickled -------------------------------------------
const char* const kWrapperKeys[] = {"state_dict", "model_state_dict", "model"};

// The value under the str key `key` of dict `d`, or nullptr.
const Id* dict_get(const Graph& g, Id d, std::string_view key) {
    const std::vector<Id>& items = g[d].items;
    for (size_t i = 0; i + 1 < items.size(); i += 2)
        if (g[items[i]].kind == Kind::Str && g[items[i]].s == key) return &items[i + 1];
    return nullptr;
}

// Index of the first item of dict `d` that is not (str key, tensor value), or npos.
size_t first_non_tensor(const Graph& g, Id d, const TorchHooks& hooks) {
    const std::vector<Id>& items = g[d].items;
    for (size_t i = 0; i + 1 < items.size(); i += 2)
        if (g[items[i]].kind != Kind::Str || !hooks.is_tensor(g, items[i + 1])) return i;
    return std::string::npos;
}

bool has_tensor(const Graph& g, Id d, const TorchHooks& hooks) {
    const std::vector<Id>& items = g[d].items;
    for (size_t i = 0; i + 1 < items.size(); i += 2)
        if (hooks.is_tensor(g, items[i + 1])) return true;
    return false;
}

std::string describe_entry(const Graph& g, Id key, Id value) {
    const std::string k = g[key].kind == Kind::Str ? "'" + printable(g[key].s) + "'" : pickle::describe(g, key);
    return k + " (" + pickle::describe(g, value) + ")";
}

// Views make a tensor's logical size independent of the bytes behind it: tied weights repeat a
// storage under several keys, and a stride-0 view of one float can claim a billion elements.
// Loading borrows views for free, but whoever copies them later (convert, .contiguous()) pays,
// so a file may describe at most this much tensor data: 8 times its size, plus 64 MB.
uint64_t logical_budget(size_t file_size) { return 8 * static_cast<uint64_t>(file_size) + (64u << 20); }

StateDict extract_state_dict(const Graph& g, Id root, TorchHooks& hooks, const std::string& name,
                             size_t file_size) {
    const std::string expected = "expected a state_dict (a dict of tensors), or a checkpoint "
                                 "dict holding one under 'state_dict', 'model_state_dict' or 'model'";
    STRATA_CHECK(g[root].kind == Kind::Dict, name, ": ", expected, "; the file holds ",
                 pickle::describe(g, root));
    Id sd = root;
    size_t bad = first_non_tensor(g, root, hooks);
    if (bad != std::string::npos) {
        // Not a bare state_dict: look for one inside a checkpoint dict.
        bool found = false;
        for (const char* wrapper : kWrapperKeys) {
            const Id* inner = dict_get(g, root, wrapper);
            if (inner && g[*inner].kind == Kind::Dict &&
                first_non_tensor(g, *inner, hooks) == std::string::npos) {
                sd = *inner;
                found = true;
                break;
            }
        }
        if (!found) {
            // Say what is in the way: a non-tensor among tensors, or what the dict holds.
            if (has_tensor(g, root, hooks)) {
                const std::vector<Id>& items = g[root].items;
                STRATA_FAIL(name, ": ", expected, "; its entry ", describe_entry(g, items[bad], items[bad + 1]),
                            " is not a tensor with a str key");
            }
            for (const char* wrapper : kWrapperKeys) {
                const Id* inner = dict_get(g, root, wrapper);
                if (inner && g[*inner].kind == Kind::Dict && has_tensor(g, *inner, hooks)) {
                    const std::vector<Id>& items = g[*inner].items;
                    const size_t b = first_non_tensor(g, *inner, hooks);
                    STRATA_FAIL(name, ": ", expected, "; its '", wrapper, "' entry ", describe_entry(g, items[b], items[b + 1]),
                                " is not a tensor with a str key");
                }
            }
            std::string listing;
            const std::vector<Id>& items = g[root].items;
            for (size_t i = 0; i + 1 < items.size() && i < 20; i += 2)
                listing += (i ? ", " : "") + describe_entry(g, items[i], items[i + 1]);
            if (items.size() > 20) listing += ", ...";
            STRATA_FAIL(name, ": ", expected, "; found a dict with entries ", listing);
        }
    }
    StateDict state;
    const std::vector<Id>& items = g[sd].items;
    // One storage, two dtypes: torch reads every view as the storage's first type, strata would
    // read each as its own; neither reading is safe to give, so the file is refused.
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
        const int64_t storage = hooks.retyped_storage(g, items[i + 1]);
        if (storage < 0) continue;
        const uint32_t s = static_cast<uint32_t>(storage);
        std::string other;  // another key viewing that storage, one with its first dtype if any
        for (size_t j = 0; j + 1 < items.size(); j += 2) {
            if (j == i || hooks.storage_of(g, items[j + 1]) != s) continue;
            if (other.empty() || hooks.retyped_storage(g, items[j + 1]) < 0) other = printable(g[items[j]].s);
        }
        const std::string key = printable(g[items[i]].s);
        const char* first = hooks.storage_dtype_name(s);
        STRATA_FAIL(name, ": tensor '", key, "' views storage '", printable(hooks.storage_key(s)), "' as ",
                    hooks.view_dtype_name(g, items[i + 1]), " but ",
                    other.empty() ? std::string("the file's first use of that storage") : "tensor '" + other + "'",
                    " types it as ", first, "; torch.load keeps a storage's first type, so it would read '", key,
                    "' as ", first, ". strata refuses a storage viewed with two dtypes");
    }
    uint64_t logical_bytes = 0;
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
        const std::string key(g[items[i]].s);
        STRATA_CHECK(!state.contains(key), name, ": the state_dict has the key '", printable(key), "' twice");
        const Tensor t = hooks.make_tensor(g, items[i + 1], printable(key));
        logical_bytes += t.nbytes();  // no overflow: each is below 2^63 and the sum is checked
        STRATA_CHECK(logical_bytes <= logical_budget(file_size), name, ": its tensors describe more than ",
                     logical_budget(file_size), " bytes of data (8x the file size + 64 MB) by "
                     "repeating views of the same storage (at tensor '", printable(key), "', shape ",
                     shape_str(t.shape()), "); strata refuses such amplification. Save contiguous "
                     "copies (tensor.contiguous()) in Python if this is intended");
        state.insert(key, t);
    }
    return state;
}

// ---- the two containers ---------------------------------------------------------------------
std::string entry_text(const ZipArchive& zip, const ZipEntry& e, bool verify) {
    STRATA_CHECK(e.size <= 64, zip.name(), ": entry '", printable(e.name), "' is ", e.size,
                 " bytes; expected a short text");
    const unsigned char* p = zip.read(e, verify);
    std::string s(reinterpret_cast<const char*>(p), static_cast<size_t>(e.size));
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

StateDict read_zip(const unsigned char* data, size_t size, std::shared_ptr<const void> keep_alive,
                   const std::string& name, const PthOptions& options) {
    const ZipArchive zip(data, size, name);
    STRATA_CHECK(!zip.entries().empty(), name, ": the zip archive is empty; not a torch.save file");
    // Every entry sits in one folder named after the file (torch.save) or "archive".
    const std::string& first = zip.entries().front().name;
    const size_t slash = first.find('/');
    STRATA_CHECK(slash != std::string::npos && slash > 0, name, ": zip entry '", printable(first),
                 "' is not inside a folder; not a torch.save archive");
    const std::string prefix = first.substr(0, slash + 1);
    bool torchscript = zip.find(prefix + "constants.pkl") != nullptr;
    for (const ZipEntry& e : zip.entries()) torchscript |= e.name.compare(0, prefix.size() + 5, prefix + "code/") == 0;
    if (torchscript)
        STRATA_FAIL(name, ": this is a TorchScript archive (torch.jit.save), not a torch.save "
                    "state_dict; in Python: torch.save(torch.jit.load(path).state_dict(), "
                    "'weights.pth')");
    const ZipEntry* pkl = zip.find(prefix + "data.pkl");
    STRATA_CHECK(pkl != nullptr, name, ": the zip archive has no '", printable(prefix),
                 "data.pkl'; not a torch.save file");

    for (const char* version_name : {"version", ".data/version"}) {
        if (const ZipEntry* v = zip.find(prefix + version_name)) {
            const std::string text = entry_text(zip, *v, options.verify_checksums);
            const bool digits = !text.empty() && text.size() <= 4 &&
                                text.find_first_not_of("0123456789") == std::string::npos;
            const int version = digits ? std::stoi(text) : -1;
            STRATA_CHECK(version >= 1 && version <= 10, name, ": archive version '", printable(text),
                         "' is not one strata reads (1 to 10)");
        }
    }
    if (const ZipEntry* b = zip.find(prefix + "byteorder")) {
        const std::string order = entry_text(zip, *b, options.verify_checksums);
        STRATA_CHECK(order != "big", name, ": the tensors were written on a big-endian machine "
                     "(byteorder 'big'); strata reads little-endian data only. Load the file "
                     "with torch on a little-endian machine and save it again");
        STRATA_CHECK(order == "little", name, ": unknown byteorder '", printable(order), "'");
    }

    TorchHooks hooks(name, Container::Zip, &zip, prefix, options.verify_checksums);
    hooks.set_keep_alive(std::move(keep_alive));
    hooks.set_where(name + ": " + prefix + "data.pkl");
    const unsigned char* pkl_bytes = zip.read(*pkl, options.verify_checksums);
    const pickle::Unpickled u = pickle::unpickle(pkl_bytes, static_cast<size_t>(pkl->size), hooks,
                                                 name + ": " + prefix + "data.pkl");
    return extract_state_dict(u.graph, u.root, hooks, name, size);
}

// 0x1950a86a20f9469cfc6c, the legacy format's magic number, as LONG1 stores it.
const unsigned char kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

StateDict read_legacy(const unsigned char* data, size_t size, std::shared_ptr<const void> keep_alive,
                      const std::string& name, const PthOptions&) {
    TorchHooks hooks(name, Container::Legacy, nullptr, "", false);
    hooks.set_keep_alive(std::move(keep_alive));
    size_t pos = 0;
    auto next = [&](const char* what) {
        const std::string where = name + ": legacy " + what + " pickle at byte " + std::to_string(pos);
        hooks.set_where(where);
        pickle::Unpickled u = pickle::unpickle(data + pos, size - pos, hooks, where);
        pos += u.end;
        return u;
    };
    {
        const pickle::Unpickled magic = next("magic number");
        const Value& m = magic.graph[magic.root];
        STRATA_CHECK(m.kind == Kind::BigInt && m.s.size() == sizeof(kLegacyMagic) &&
                         std::memcmp(m.s.data(), kLegacyMagic, sizeof(kLegacyMagic)) == 0,
                     name, ": a pickle, but not a torch.save file (no legacy magic number; it "
                     "holds ", pickle::describe(magic.graph, magic.root), ")");
    }
    {
        const pickle::Unpickled version = next("protocol version");
        const Value& v = version.graph[version.root];
        STRATA_CHECK(v.kind == Kind::Int && v.i == 1001, name, ": legacy protocol version ",
                     pickle::describe(version.graph, version.root), "; strata reads 1001");
    }
    {
        const pickle::Unpickled info = next("system info");
        STRATA_CHECK(info.graph[info.root].kind == Kind::Dict, name, ": legacy system info is ",
                     pickle::describe(info.graph, info.root), ", not a dict");
        const Id* little = dict_get(info.graph, info.root, "little_endian");
        STRATA_CHECK(!little || (info.graph[*little].kind == Kind::Bool && info.graph[*little].i == 1),
                     name, ": the tensors were written on a big-endian machine; strata reads "
                     "little-endian data only. Load the file with torch on a little-endian "
                     "machine and save it again");
    }
    const pickle::Unpickled object = next("object");
    const pickle::Unpickled keys = next("storage keys");
    STRATA_CHECK(keys.graph[keys.root].kind == Kind::List, name, ": the legacy storage key list is ",
                 pickle::describe(keys.graph, keys.root));

    // Each storage, in key-list order: int64 element count, then count * element size bytes.
    for (const Id k : keys.graph[keys.root].items) {
        const Value& key_v = keys.graph[k];
        STRATA_CHECK(key_v.kind == Kind::Str, name, ": a legacy storage key is ",
                     pickle::describe(keys.graph, k), ", not a str");
        const std::string key(key_v.s);
        StorageRecord* s = hooks.storage_by_key(key);
        STRATA_CHECK(s != nullptr, name, ": the legacy file has data for storage '", printable(key),
                     "', which no tensor uses");
        STRATA_CHECK(!s->has_data, name, ": the legacy file has data for storage '", printable(key), "' twice");
        STRATA_CHECK(size - pos >= 8, name, ": truncated: storage '", printable(key),
                     "' has no element count at byte ", pos);
        uint64_t count = 0;
        for (int i = 7; i >= 0; --i) count = (count << 8) | data[pos + static_cast<size_t>(i)];
        pos += 8;
        const uint64_t esize = kDTypes[s->dtype].size;
        STRATA_CHECK(count <= UINT64_MAX / esize && count * esize == s->declared_bytes, name,
                     ": storage '", printable(key), "' has ", count, " elements in the file but ",
                     s->declared_bytes / esize, " in its persistent id");
        STRATA_CHECK(s->declared_bytes <= size - pos, name, ": truncated: storage '", printable(key),
                     "' needs ", s->declared_bytes, " bytes at byte ", pos, " but ", size - pos, " remain");
        s->data = data + pos;
        s->has_data = true;
        pos += static_cast<size_t>(s->declared_bytes);
    }
    STRATA_CHECK(pos == size, name, ": ", size - pos, " unexpected bytes after the last storage");
    return extract_state_dict(object.graph, object.root, hooks, name, size);
}

}  // namespace

StateDict read_pth(const unsigned char* data, size_t size, std::shared_ptr<const void> keep_alive,
                   const std::string& name, const PthOptions& options) {
    if (size >= 2 && data[0] == 'P' && data[1] == 'K')  // zip: local header or (empty) end record
        return read_zip(data, size, std::move(keep_alive), name, options);
    if (size >= 2 && data[0] == 0x80)
        return read_legacy(data, size, std::move(keep_alive), name, options);
    STRATA_FAIL(name, ": not a torch.save file (neither a zip archive nor a pickle)");
}

}  // namespace strata
