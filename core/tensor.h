// Tensor: a typed, shaped, strided view of reference-counted Storage.
// Compute is float32; float16, bfloat16 and int64 exist so weight files load without loss.
// Views share storage and never own more than a reference; a deep copy is the explicit clone().
// Storage lives on the CPU or on a CUDA device; bytes cross between them only through to(Device)
// (and copy_from), never implicitly. Device memory comes through core/device.h.
#pragma once
#include <strata/export.h>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "error.h"

namespace strata {

enum class DType : uint8_t { Float32, Float16, BFloat16, Int64 };
enum class Device : uint8_t { CPU, CUDA };

STRATA_API size_t dtype_size(DType dtype);
STRATA_API const char* dtype_name(DType dtype);   // "float32", "float16", "bfloat16", "int64"
STRATA_API const char* device_name(Device device); // "cpu", "cuda"

using Shape = std::vector<int64_t>;

// "[1, 64, 56, 56]", the way Python prints a list.
STRATA_API std::string shape_str(const Shape& shape);
// Element count; throws Error on a negative extent or on overflow of int64.
STRATA_API int64_t shape_numel(const Shape& shape);
// Row-major (C-order) strides in elements.
STRATA_API Shape contiguous_strides(const Shape& shape);
// Strides of a 4-D [N, C, H, W] tensor stored as NHWC (PyTorch's channels_last memory format):
// [H*W*C, 1, W*C, C]. The CUDA backend may keep activations this way; the shape stays NCHW.
STRATA_API Shape channels_last_strides(const Shape& nchw);

// Where a borrowed Storage's bytes come from, when that place can change under it: a mapped
// weight file that someone rewrites or truncates while a model uses it (io/mapped_file.h).
// check() throws an Error saying so if it has changed; Tensor::raw_data() calls it, so no
// kernel reads bytes the file no longer holds (or dies of SIGBUS on a truncated one).
class STRATA_API StorageSource {
public:
    virtual ~StorageSource() = default;
    virtual void check() const = 0;
};

// A block of bytes. Either allocated by strata (64-byte aligned on the CPU, cudaMalloc'ed on a
// CUDA device; freed on destruction) or borrowed: caller memory, an mmap'ed file or a block of a
// CUDA context's memory pool, kept alive (or given back) by `keep_alive` if one is given.
class STRATA_API Storage {
public:
    static std::shared_ptr<Storage> allocate(size_t nbytes, Device device = Device::CPU);
    static std::shared_ptr<Storage> borrow(void* data, size_t nbytes,
                                           std::shared_ptr<const void> keep_alive = nullptr,
                                           Device device = Device::CPU);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

    void* data() const { return data_; }
    size_t nbytes() const { return nbytes_; }
    Device device() const { return device_; }
    bool owns_memory() const { return owned_; }

    // Moves the bytes to `device` in place: this Storage now holds a copy there (owned) and the
    // old memory is released. Every Tensor sharing this Storage sees the move; this is how
    // Module::to() reaches the tensor handles that layers keep. Not safe concurrently with use.
    void move_to(Device device);
    // Makes this Storage a view of `src`'s bytes [offset, offset + nbytes()) without copying:
    // the old memory is released and `src` is kept alive. Every Tensor sharing this Storage sees
    // the new bytes (Module::load_state_dict with LoadMode::Share). Same device, same size; not
    // safe concurrently with use.
    void share(const std::shared_ptr<Storage>& src, size_t offset);
    // Gives a borrowed Storage memory of its own (a copy); no-op when it owns its memory. Done
    // before writing into a Storage that may share another's bytes.
    void make_private();
    // The file these bytes are mapped from, checked before each read (see StorageSource); kept
    // through share(), dropped when the Storage gets memory of its own.
    void set_source(std::shared_ptr<const StorageSource> source) { source_ = std::move(source); }
    const StorageSource* source() const { return source_.get(); }

private:
    Storage() = default;
    void* data_ = nullptr;
    size_t nbytes_ = 0;
    Device device_ = Device::CPU;
    bool owned_ = false;
    std::shared_ptr<const void> keep_alive_;
    std::shared_ptr<const StorageSource> source_;
};

class STRATA_API Tensor {
public:
    Tensor() = default;  // undefined tensor (defined() == false), e.g. a missing bias
    Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape, Shape strides,
           DType dtype);

    static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
    static Tensor zeros(const Shape& shape, DType dtype = DType::Float32);
    static Tensor full(const Shape& shape, float value);
    // Wraps caller memory without copying; the caller keeps it alive while the tensor is used.
    static Tensor from_blob(void* data, const Shape& shape, DType dtype = DType::Float32);

    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }
    int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
    int64_t size(int64_t d) const;  // negative d counts from the end, as in PyTorch
    int64_t numel() const { return numel_; }
    DType dtype() const { return dtype_; }
    Device device() const { return storage_ ? storage_->device() : Device::CPU; }
    size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
    bool is_contiguous() const;
    // A 4-D tensor whose strides are channels_last_strides(shape) (NHWC memory).
    bool is_channels_last() const;
    const std::shared_ptr<Storage>& storage() const { return storage_; }
    size_t byte_offset() const { return byte_offset_; }

    void* raw_data() const;
    template <typename T> T* data() const;  // checks that T matches dtype()

    Tensor clone() const;                 // deep copy, contiguous, owning, on the same device
    Tensor contiguous() const;            // *this if already contiguous, else clone()
    Tensor to(DType dtype) const;         // converted copy (or *this if same dtype)
    // A copy on `device` (or *this if already there), with the same shape, strides and dtype:
    // the bytes the view spans are copied as they are (synchronously). The only way data moves
    // between host and device.
    Tensor to(Device device) const;
    Tensor view(const Shape& shape) const;  // same storage; needs a contiguous tensor
    // Copies `src` (same shape, any loadable dtype, any strides) into this tensor's memory.
    // Either side may be on a CUDA device; strides and dtype conversion are handled on the CPU,
    // so a CUDA source must then be contiguous and of this tensor's dtype.
    void copy_from(const Tensor& src);
    // One element as double, by multi-index; for tests, printing and small tools (CPU only).
    double item_at(const std::vector<int64_t>& index) const;

private:
    std::shared_ptr<Storage> storage_;
    size_t byte_offset_ = 0;
    Shape shape_;
    Shape strides_;
    int64_t numel_ = 0;
    DType dtype_ = DType::Float32;
};

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint16_t> { static constexpr DType value = DType::Float16; };

template <typename T> T* Tensor::data() const {
    STRATA_CHECK(defined(), "data() on an undefined tensor");
    // uint16_t is accepted for both 16-bit float types.
    const bool ok = dtype_ == dtype_of<T>::value ||
                    (dtype_of<T>::value == DType::Float16 && dtype_ == DType::BFloat16);
    STRATA_CHECK(ok, "data<", dtype_name(dtype_of<T>::value), ">() on a ", dtype_name(dtype_),
                 " tensor");
    return static_cast<T*>(raw_data());
}

// IEEE half and bfloat16 <-> float32, round-to-nearest-even on the way down.
STRATA_API float half_to_float(uint16_t h);
STRATA_API uint16_t float_to_half(float f);
STRATA_API float bfloat16_to_float(uint16_t b);
STRATA_API uint16_t float_to_bfloat16(float f);

}  // namespace strata
