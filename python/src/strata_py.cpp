// strata._strata: the Python extension module (pybind11). The Python-facing API, in torchvision's
// words, is python/strata/*.py; this file is the thin layer under it:
//   - arrays in: a C-contiguous, aligned float32 numpy array becomes a strata Tensor over the same
//     memory (Storage::borrow, the array kept alive by the Storage); anything else float32 is
//     copied once to C order by numpy; other dtypes are refused (ValueError).
//   - arrays out: each output Tensor becomes a numpy array over strata's buffer, whose base is a
//     capsule owning a copy of the Tensor handle (so the Storage lives as long as the array).
//   - the GIL is released around every forward call and load; a per-model reader/writer lock
//     keeps loads from running under a forward call on another Python thread (C++ leaves that
//     to the caller; Python callers cannot be expected to know). The lock is always taken
//     after the GIL is released, never while holding it.
//   - strata::Error becomes strata.Error, a subclass of ValueError, with strata's message;
//     "out of memory" errors become MemoryError.
// Image decoding and transforms (io/image.h, io/transforms.h) are bound at the end of PYBIND11_MODULE.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <strata/strata.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

using strata::DType;
using strata::Error;
using strata::Tensor;

PyObject* g_strata_error = nullptr;  // strata._strata.Error (ValueError); one reference kept forever

// A Python object kept alive by a strata Storage. The last reference may be dropped on any
// thread, with or without the GIL (e.g. inside a forward call that released it): take it first.
std::shared_ptr<const void> hold_python(py::object obj) {
    PyObject* p = obj.release().ptr();
    return std::shared_ptr<const void>(p, [](const void* q) {
        if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to release
        py::gil_scoped_acquire gil;
        Py_DECREF(static_cast<PyObject*>(const_cast<void*>(q)));
    });
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// ---- numpy -> Tensor ---------------------------------------------------------------------------

bool has_dtype(const py::array& a, const py::dtype& dt) {
    return py::detail::npy_api::get().PyArray_EquivTypes_(a.dtype().ptr(), dt.ptr());
}


// The forward input. `what` names it in errors. A C-contiguous, aligned float32 array is read in
// place; another float32 layout (a crop, Fortran order, negative or zero strides, unaligned) is
// copied once by numpy to C order, as strata would copy it anyway.
Tensor input_tensor(py::array a, const char* what) {
    if (!has_dtype(a, py::dtype::of<float>()))
        throw Error(std::string(what) + ": expected a float32 array, got dtype " + dtype_str(a) +
                    "; convert it with x.astype(numpy.float32)");
    const int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if ((a.flags() & need) != need)
        a = py::module_::import("numpy").attr("require")(a, "float32", "CA").cast<py::array>();
    strata::Shape shape(a.shape(), a.shape() + a.ndim());
    void* data = const_cast<void*>(a.data());
    const size_t nbytes = static_cast<size_t>(a.nbytes());
    auto storage = strata::Storage::borrow(data, nbytes, hold_python(a));
    return Tensor(std::move(storage), 0, shape, strata::contiguous_strides(shape), DType::Float32);
}

// A state_dict value: a float32, float16 or int64 array (the Python side has converted other
// float and integer dtypes, as torch's copy_ would), with any non-negative strides, read in place
// (strata copies it into the model). Other layouts are copied to C order by numpy first.
Tensor state_tensor(const std::string& key, py::array a) {
    DType dtype;
    if (has_dtype(a, py::dtype::of<float>())) dtype = DType::Float32;
    else if (has_dtype(a, py::dtype::of<int64_t>())) dtype = DType::Int64;
    else if (has_dtype(a, py::dtype("float16"))) dtype = DType::Float16;
    else
        throw Error("state_dict['" + key + "']: dtype " + dtype_str(a) +
                    " is not loadable (float32, float16, float64 or an integer type)");
    bool in_place = (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
    for (py::ssize_t d = 0; d < a.ndim(); ++d)
        in_place = in_place && a.strides(d) >= 0 && a.strides(d) % a.itemsize() == 0;
    if (!in_place) a = py::module_::import("numpy").attr("ascontiguousarray")(a).cast<py::array>();
    strata::Shape shape(a.shape(), a.shape() + a.ndim());
    strata::Shape strides(static_cast<size_t>(a.ndim()));
    size_t span = a.size() ? static_cast<size_t>(a.itemsize()) : 0;
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
        strides[static_cast<size_t>(d)] = a.strides(d) / a.itemsize();
        if (a.size()) span += static_cast<size_t>(a.strides(d)) * static_cast<size_t>(a.shape(d) - 1);
    }
    auto storage = strata::Storage::borrow(const_cast<void*>(a.data()), span, hold_python(a));
    return Tensor(std::move(storage), 0, shape, strides, dtype);
}

strata::StateDict state_dict_from(const std::vector<std::pair<std::string, py::array>>& items) {
    strata::StateDict state;
    for (const auto& [key, array] : items) state.insert(key, state_tensor(key, array));
    return state;
}

// ---- Tensor -> numpy ---------------------------------------------------------------------------

py::dtype numpy_dtype(DType d) {
    switch (d) {
        case DType::Float32: return py::dtype::of<float>();
        case DType::Int64: return py::dtype::of<int64_t>();
        case DType::Float16: return py::dtype("float16");
        case DType::BFloat16: break;
    }
    throw Error("no numpy dtype for bfloat16");
}

// A numpy array over `t`'s memory: the array's base is a capsule owning a Tensor handle, so the
// Storage lives as long as the array (no copy). bfloat16, which numpy lacks, becomes float32 (exact).
py::array to_numpy(Tensor t, bool writeable) {
    STRATA_CHECK(t.defined(), "an undefined tensor has no numpy value");
    STRATA_CHECK(t.device() == strata::Device::CPU, "a ", strata::device_name(t.device()),
                 " tensor cannot become a numpy array; move it to the cpu first");
    if (t.dtype() == DType::BFloat16) t = t.to(DType::Float32);
    const py::ssize_t item = static_cast<py::ssize_t>(strata::dtype_size(t.dtype()));
    std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
    std::vector<py::ssize_t> strides;
    for (int64_t s : t.strides()) strides.push_back(static_cast<py::ssize_t>(s) * item);
    void* data = t.numel() > 0 ? t.raw_data() : nullptr;
    py::capsule base(new Tensor(t), [](void* p) { delete static_cast<Tensor*>(p); });
    py::array a(numpy_dtype(t.dtype()), shape, strides, data, base);
    if (!writeable) py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return a;
}

using Items = std::vector<std::pair<std::string, py::array>>;

// With the GIL held. Where the tensors' memory may later be moved or replaced by a load (a
// model's parameters), the caller passes copies made without the GIL, under the model's lock.
Items to_items(const strata::OrderedDict<Tensor>& dict, bool writeable) {
    Items items;
    items.reserve(dict.size());
    for (const auto& [name, t] : dict) items.emplace_back(name, to_numpy(t, writeable));
    return items;
}

// ---- run options -------------------------------------------------------------------------------

strata::RunOptions run_options(int num_threads, const std::string& cpu, const std::string& packing,
                               const std::string& backend, int64_t max_activation_bytes) {
    strata::RunOptions o;
    if (backend == "cpu") o.backend = strata::Backend::Cpu;
    else if (backend == "reference") o.backend = strata::Backend::Reference;
    else
        throw Error("backend='" + backend + "': expected 'cpu' or 'reference' (the Python module runs on the CPU)");
    if (num_threads < 0 || num_threads > strata::max_threads())
        throw Error("num_threads=" + std::to_string(num_threads) + ": expected 0 (OpenMP's default) to " +
                    std::to_string(strata::max_threads()) + " (" + strata::max_threads_reason() + ")");
    o.num_threads = num_threads;
    o.cpu = strata::parse_cpu_level(cpu);
    if (packing == "fast") o.packing = strata::WeightPacking::Fast;
    else if (packing == "lean") o.packing = strata::WeightPacking::Lean;
    else throw Error("packing='" + packing + "': expected 'fast' or 'lean'");
    if (max_activation_bytes < 0)
        throw Error("max_activation_bytes must be >= 0 (0: no limit), got " + std::to_string(max_activation_bytes));
    o.max_activation_bytes = max_activation_bytes;
    return o;
}

// ---- the model and the getter ------------------------------------------------------------------

// Forward calls hold `lock` shared, loads hold it exclusively: a load on one Python thread waits
// for the calls in flight on others (C++'s contract: no load concurrent with forward).
struct Model {
    std::shared_ptr<strata::models::ResNet> module;
    std::string arch;
    std::shared_ptr<std::shared_mutex> lock = std::make_shared<std::shared_mutex>();
};

struct Getter {
    std::shared_ptr<strata::IntermediateLayerGetter> getter;
    std::shared_ptr<Model> model;  // the getter shares its children; loads go through the model
};

// A call's input and output: the outputs that are the input itself (a request for node "x") keep
// the input array's writeability.
Items outputs_to_items(const strata::OrderedDict<Tensor>& out, const Tensor& x, bool input_writeable) {
    Items items;
    items.reserve(out.size());
    for (const auto& [name, t] : out)
        items.emplace_back(name, to_numpy(t, t.storage() == x.storage() ? input_writeable : true));
    return items;
}

strata::OrderedDict<Tensor> run_getter(const Getter& g, const Tensor& x, const strata::RunOptions& o) {
    py::gil_scoped_release nogil;
    std::shared_lock<std::shared_mutex> lock(*g.model->lock);
    return (*g.getter)(x, o);
}

void load_into(Model& m, const strata::StateDict& state, bool strict, strata::LoadMode mode) {
    py::gil_scoped_release nogil;
    std::unique_lock<std::shared_mutex> lock(*m.lock);
    m.module->load_state_dict(state, strict, mode);
}

size_t load_for_getter(Getter& g, const strata::StateDict& state, strata::LoadMode mode) {
    py::gil_scoped_release nogil;
    std::unique_lock<std::shared_mutex> lock(*g.model->lock);
    return strata::load_for_request(*g.model->module, state, g.getter->named_children().keys(), mode).loaded;
}

strata::StateDict load_file(const std::string& path, const std::string& strip_prefix, strata::Metadata* meta) {
    py::gil_scoped_release nogil;
    strata::LoadOptions lo;
    lo.strip_prefix = strip_prefix;
    return strata::load(path, lo, meta);
}

bool is_writeable(const py::array& a) { return (a.flags() & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0; }

}  // namespace

PYBIND11_MODULE(_strata, m) {
    m.doc() = "strata's C++ core; use the `strata` package (strata.models, strata.load, strata.IntermediateLayerGetter)";
    m.attr("version") = STRATA_VERSION_STRING;

    g_strata_error = PyErr_NewException("strata.Error", PyExc_ValueError, nullptr);
    m.add_object("Error", py::handle(g_strata_error));
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
            const bool oom = e.detail().rfind("out of memory", 0) == 0;
            PyErr_SetString(oom ? PyExc_MemoryError : g_strata_error, e.what());
        }
    });

    m.def("model_names", &strata::models::names, "torchvision's names of the ResNet family this build has");
    m.def("max_threads", &strata::max_threads, "the most threads one call may ask for (num_threads)");
    m.def("cpu_level_summary", &strata::cpu_level_summary,
          "the CPU kernels' level in use, the detected one and the CPU: 'avx2 (detected: avx2; CPU: ...)'");
    m.def("check_run_options", [](int num_threads, const std::string& cpu, const std::string& packing,
                                  const std::string& backend, int64_t max_activation_bytes) {
        const auto o = run_options(num_threads, cpu, packing, backend, max_activation_bytes);
        strata::resolve_cpu_level(o.cpu);  // a level this CPU lacks fails here, naming the feature
    });

    // load(path, strip_prefix) -> ([(key, array)], metadata): read-only arrays over the mapped file.
    m.def("load", [](const std::string& path, const std::string& strip_prefix) {
        strata::Metadata meta;
        strata::StateDict state = load_file(path, strip_prefix, &meta);
        return std::make_pair(to_items(state, false), meta);
    }, py::arg("path"), py::arg("strip_prefix") = "");

    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init([](const std::string& arch, int64_t num_classes, int64_t groups, int64_t width_per_group,
                         std::array<bool, 3> dilation, uint64_t seed, bool init) {
                 strata::models::ResNetOptions o;
                 o.num_classes = num_classes;
                 o.groups = groups;
                 o.width_per_group = width_per_group;
                 o.replace_stride_with_dilation = dilation;
                 o.seed = seed;
                 o.init = init ? strata::models::Init::Torchvision : strata::models::Init::None;
                 auto model = std::make_shared<Model>();
                 {
                     py::gil_scoped_release nogil;  // torchvision's init of a ResNet-152 takes a while
                     model->module = strata::models::create(arch, o);
                 }
                 model->arch = arch;
                 return model;
             }),
             py::arg("arch"), py::arg("num_classes"), py::arg("groups"), py::arg("width_per_group"),
             py::arg("replace_stride_with_dilation"), py::arg("seed"), py::arg("init"))
        .def_readonly("arch", &Model::arch)
        .def("repr", [](const Model& m) { return m.module->repr(); })
        .def("children", [](const Model& m) { return m.module->named_children().keys(); })
        .def("state_keys", [](const Model& m) {
            std::vector<std::string> keys;
            for (const auto& item : m.module->state_dict()) keys.push_back(item.first);
            return keys;
        })
        .def("forward", [](const Model& m, py::array x, int num_threads, const std::string& cpu,
                           const std::string& packing, const std::string& backend, int64_t max_act) {
            const auto o = run_options(num_threads, cpu, packing, backend, max_act);
            const Tensor in = input_tensor(x, "input");
            Tensor out;
            {
                py::gil_scoped_release nogil;
                std::shared_lock<std::shared_mutex> lock(*m.lock);
                out = m.module->forward(in, o);
            }
            return to_numpy(out, out.storage() == in.storage() ? is_writeable(x) : true);
        })
        // Copies, taken under the lock: a later load may move or replace a parameter's memory.
        .def("state_dict", [](const Model& m) {
            strata::StateDict copies;
            {
                py::gil_scoped_release nogil;
                std::shared_lock<std::shared_mutex> lock(*m.lock);
                for (const auto& [key, t] : m.module->state_dict()) copies.insert(key, t.clone());
            }
            return to_items(copies, true);
        })
        .def("load_state_dict", [](Model& m, const Items& items, bool strict) {
            const strata::StateDict state = state_dict_from(items);
            load_into(m, state, strict, strata::LoadMode::Copy);
        }, py::arg("state"), py::arg("strict"))
        // Straight from the file into the model: parameters share the mapped file (no copy).
        .def("load_file", [](Model& m, const std::string& path, const std::string& strip_prefix) {
            const strata::StateDict state = load_file(path, strip_prefix, nullptr);
            load_into(m, state, true, strata::LoadMode::Share);
        }, py::arg("path"), py::arg("strip_prefix"))
        // By the graph's shape inference (a getter for the last child: the model's output).
        .def("output_shape", [](const Model& m, const strata::Shape& shape) {
            const std::string last = m.module->named_children().keys().back();
            return strata::IntermediateLayerGetter(*m.module, {{last, "out"}}).output_info(shape).at(0).shape;
        })
        .def("node_names", [](const Model& m) { return strata::IntermediateLayerGetter::node_names(*m.module); });

    py::class_<Getter, std::shared_ptr<Getter>>(m, "Getter")
        .def(py::init([](std::shared_ptr<Model> model, const strata::ReturnLayers& layers) {
            auto g = std::make_shared<Getter>();
            g->model = std::move(model);
            g->getter = std::make_shared<strata::IntermediateLayerGetter>(*g->model->module, layers);
            return g;
        }))
        .def("children", [](const Getter& g) { return g.getter->named_children().keys(); })
        .def("return_layers", [](const Getter& g) { return g.getter->return_layers(); })
        .def("repr", [](const Getter& g) { return g.getter->repr(); })
        .def("call", [](const Getter& g, py::array x, int num_threads, const std::string& cpu,
                        const std::string& packing, const std::string& backend, int64_t max_act) {
            const auto o = run_options(num_threads, cpu, packing, backend, max_act);
            const Tensor in = input_tensor(x, "input");
            const strata::OrderedDict<Tensor> out = run_getter(g, in, o);
            return outputs_to_items(out, in, is_writeable(x));
        })
        .def("output_info", [](const Getter& g, const strata::Shape& shape) {
            std::vector<std::tuple<std::string, strata::Shape, int64_t, int64_t>> infos;
            for (const auto& i : g.getter->output_info(shape)) infos.emplace_back(i.name, i.shape, i.channels, i.stride);
            return infos;
        })
        // strata::load_for_request: strict for the children this getter keeps, the rest ignored.
        .def("load_state_dict", [](Getter& g, const Items& items) {
            const strata::StateDict state = state_dict_from(items);
            return load_for_getter(g, state, strata::LoadMode::Copy);
        })
        .def("load_file", [](Getter& g, const std::string& path, const std::string& strip_prefix) {
            const strata::StateDict state = load_file(path, strip_prefix, nullptr);
            return load_for_getter(g, state, strata::LoadMode::Share);
        });

    // ---- Images: io/image (decoding as PIL) and io/transforms (torchvision's preprocessing) ----
    // An image crosses as a uint8 [H, W, 3] array (PIL's numpy.asarray(img)); a transform gives a
    // float32 [3, H, W] array over strata's tensor. Decoding and transforms run without the GIL.
    namespace img = strata::image;
    m.def("image_load", [](const std::string& path) {
        img::Image image;
        {
            py::gil_scoped_release release;
            image = img::load(path);
        }
        py::array_t<uint8_t> out({static_cast<py::ssize_t>(image.height), static_cast<py::ssize_t>(image.width),
                                  py::ssize_t{3}});
        std::memcpy(out.mutable_data(), image.data(), image.pixels.size());
        return out;
    });
    // pybind11 holders cannot be shared_ptr<const T>: Python holds shared_ptr<Transform>, which
    // converts to Compose's shared_ptr<const Transform> steps.
    using Step = std::shared_ptr<img::Transform>;
    py::class_<img::Transform, Step>(m, "Transform")
        .def("__repr__", &img::Transform::repr);
    auto size_of = [](const std::vector<int64_t>& size) {
        STRATA_CHECK(size.size() == 1 || size.size() == 2, "size: expected one number or (height, width), got ",
                     size.size(), " numbers");
        return size.size() == 1 ? img::Size::shorter_side(size[0]) : img::Size::exact(size[0], size[1]);
    };
    m.def("Resize", [size_of](const std::vector<int64_t>& size, const std::string& interpolation, int64_t max_size) {
        return Step(std::make_shared<img::Resize>(size_of(size), img::parse_interpolation(interpolation), max_size));
    });
    m.def("CenterCrop", [size_of](const std::vector<int64_t>& size) {
        return Step(std::make_shared<img::CenterCrop>(size_of(size)));
    });
    m.def("ToTensor", [] { return Step(std::make_shared<img::ToTensor>()); });
    m.def("Normalize", [](const std::vector<float>& mean, const std::vector<float>& std) {
        return Step(std::make_shared<img::Normalize>(mean, std));
    });
    py::class_<img::Compose>(m, "Compose")
        .def(py::init([](const std::vector<Step>& steps) {
            return img::Compose(std::vector<std::shared_ptr<const img::Transform>>(steps.begin(), steps.end()));
        }))
        .def("__repr__", &img::Compose::repr)
        // A uint8 [H, W, 3] array (or a file path) -> float32 [3, H', W'].
        .def("__call__", [](const img::Compose& c, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> a) {
            STRATA_CHECK(a.ndim() == 3 && a.shape(2) == 3, "a transform takes a uint8 [H, W, 3] RGB array, got ",
                         a.ndim(), " dimensions");
            const img::Image image = img::Image::from_rgb(a.data(), a.shape(0), a.shape(1));
            Tensor t;
            {
                py::gil_scoped_release release;
                t = c(image);
            }
            return to_numpy(t, true);
        })
        .def("load", [](const img::Compose& c, const std::string& path) {
            Tensor t;
            {
                py::gil_scoped_release release;
                t = c(img::load(path));
            }
            return to_numpy(t, true);
        });
    m.def("imagenet_classification", [] { return img::imagenet_classification(); });
}
