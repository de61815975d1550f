// Tensor and Storage: allocation, views, copies and dtype conversion.
#include "tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include "device.h"

namespace strata {

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::Float32: return 4;
        case DType::Float16: return 2;
        case DType::BFloat16: return 2;
        case DType::Int64: return 8;
    }
    return 0;
}

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::Float32: return "float32";
        case DType::Float16: return "float16";
        case DType::BFloat16: return "bfloat16";
        case DType::Int64: return "int64";
    }
    return "?";
}

const char* device_name(Device device) { return device == Device::CUDA ? "cuda" : "cpu"; }

std::string shape_str(const Shape& shape) {
    std::ostringstream os;
    os << '[';
    for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    os << ']';
    return os.str();
}

int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        STRATA_CHECK(d >= 0, "negative extent in shape ", shape_str(shape));
        if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
            STRATA_FAIL("shape ", shape_str(shape), " has more elements than int64 can count");
        n *= d;
    }
    return n;
}

Shape contiguous_strides(const Shape& shape) {
    Shape strides(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
    return strides;
}

Shape channels_last_strides(const Shape& s) {
    STRATA_CHECK(s.size() == 4, "channels_last needs a 4-D [N, C, H, W] shape, got ", shape_str(s));
    const int64_t c = std::max<int64_t>(s[1], 1), h = std::max<int64_t>(s[2], 1),
                  w = std::max<int64_t>(s[3], 1);
    return {h * w * c, 1, w * c, c};
}

// ---- Storage ---------------------------------------------------------------------------

namespace {

void* host_alloc(size_t nbytes) {
    const size_t alignment = 64;
    const size_t rounded = (nbytes + alignment - 1) / alignment * alignment;
    if (rounded < nbytes) STRATA_FAIL("cannot allocate ", nbytes, " bytes: size overflows");
    if (rounded == 0) return nullptr;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) STRATA_FAIL("out of memory allocating ", nbytes, " bytes");
    return p;
}

void release(void* data, Device device) {
    if (device == Device::CUDA) device_free(data);
    else std::free(data);
}

CopyKind copy_kind(Device dst, Device src) {
    if (dst == Device::CUDA && src == Device::CUDA) return CopyKind::DeviceToDevice;
    return dst == Device::CUDA ? CopyKind::HostToDevice : CopyKind::DeviceToHost;
}

}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
    std::shared_ptr<Storage> s(new Storage());
    if (device == Device::CUDA) s->data_ = nbytes ? device_alloc(nbytes) : nullptr;
    else s->data_ = host_alloc(nbytes);
    s->nbytes_ = nbytes;
    s->device_ = device;
    s->owned_ = true;
    return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t nbytes,
                                         std::shared_ptr<const void> keep_alive, Device device) {
    std::shared_ptr<Storage> s(new Storage());
    s->data_ = data;
    s->nbytes_ = nbytes;
    s->device_ = device;
    s->owned_ = false;
    s->keep_alive_ = std::move(keep_alive);
    return s;
}

void Storage::move_to(Device device) {
    if (device == device_) return;
    void* moved = device == Device::CUDA ? (nbytes_ ? device_alloc(nbytes_) : nullptr) : host_alloc(nbytes_);
    try {
        if (nbytes_) device_copy(moved, data_, nbytes_, copy_kind(device, device_));
    } catch (...) {
        release(moved, device);
        throw;
    }
    if (owned_) release(data_, device_);
    data_ = moved;
    device_ = device;
    owned_ = true;
    keep_alive_.reset();
    source_.reset();
}

void Storage::share(const std::shared_ptr<Storage>& src, size_t offset) {
    STRATA_CHECK(src && src.get() != this && src->device_ == device_ && offset <= src->nbytes_ &&
                     nbytes_ <= src->nbytes_ - offset,
                 "Storage::share: the source does not hold ", nbytes_, " bytes at offset ", offset,
                 " on ", device_name(device_));
    if (owned_) release(data_, device_);
    data_ = static_cast<unsigned char*>(src->data_) + offset;
    owned_ = false;
    keep_alive_ = src;
    source_ = src->source_;
}

void Storage::make_private() {
    if (owned_) return;
    void* copy = device_ == Device::CUDA ? (nbytes_ ? device_alloc(nbytes_) : nullptr) : host_alloc(nbytes_);
    try {
        if (nbytes_ && device_ == Device::CPU) std::memcpy(copy, data_, nbytes_);
        else if (nbytes_) device_copy(copy, data_, nbytes_, CopyKind::DeviceToDevice);
    } catch (...) {
        release(copy, device_);
        throw;
    }
    data_ = copy;
    owned_ = true;
    keep_alive_.reset();
    source_.reset();
}

Storage::~Storage() {
    if (owned_) release(data_, device_);
}

// ---- Tensor ----------------------------------------------------------------------------

Tensor::Tensor(std::shared_ptr<Storage> storage, size_t byte_offset, Shape shape, Shape strides,
               DType dtype)
    : storage_(std::move(storage)), byte_offset_(byte_offset), shape_(std::move(shape)),
      strides_(std::move(strides)), dtype_(dtype) {
    STRATA_CHECK(shape_.size() == strides_.size(), "shape ", shape_str(shape_), " and strides ",
                 shape_str(strides_), " differ in rank");
    numel_ = shape_numel(shape_);
    STRATA_CHECK(storage_ != nullptr, "tensor without storage");
    if (numel_ == 0) return;
    // The furthest element must lie inside the storage: views can never read out of bounds.
    int64_t last = 0;
    for (size_t i = 0; i < shape_.size(); ++i) {
        STRATA_CHECK(strides_[i] >= 0, "negative stride ", strides_[i]);
        last += (shape_[i] - 1) * strides_[i];
    }
    const size_t esize = dtype_size(dtype_);
    const size_t need = byte_offset_ + (static_cast<size_t>(last) + 1) * esize;
    STRATA_CHECK(need <= storage_->nbytes() && need > byte_offset_, "a tensor of shape ",
                 shape_str(shape_), " (", dtype_name(dtype_), ") at byte offset ", byte_offset_,
                 " needs ", need, " bytes of storage but the storage has ", storage_->nbytes());
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    const int64_t n = shape_numel(shape);
    const size_t esize = dtype_size(dtype);
    STRATA_CHECK(static_cast<uint64_t>(n) <= std::numeric_limits<size_t>::max() / esize,
                 "shape ", shape_str(shape), " is too large to allocate");
    return Tensor(Storage::allocate(static_cast<size_t>(n) * esize, device), 0, shape,
                  contiguous_strides(shape), dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
    Tensor t = empty(shape, dtype);
    if (t.nbytes()) std::memset(t.raw_data(), 0, t.nbytes());
    return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
    Tensor t = empty(shape, DType::Float32);
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
    return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype) {
    const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    return Tensor(Storage::borrow(data, nbytes), 0, shape, contiguous_strides(shape), dtype);
}

int64_t Tensor::size(int64_t d) const {
    const int64_t r = dim();
    STRATA_CHECK(d >= -r && d < r, "dimension ", d, " out of range for a tensor of rank ", r);
    return shape_[static_cast<size_t>(d < 0 ? d + r : d)];
}

bool Tensor::is_contiguous() const {
    if (numel_ == 0) return true;  // an empty tensor has no element out of place
    int64_t expected = 1;
    for (size_t i = shape_.size(); i-- > 0;) {
        if (shape_[i] != 1 && strides_[i] != expected) return false;
        expected *= shape_[i];
    }
    return true;
}

bool Tensor::is_channels_last() const {
    return shape_.size() == 4 && strides_ == channels_last_strides(shape_);
}

void* Tensor::raw_data() const {
    STRATA_CHECK(defined(), "access to an undefined tensor");
    if (const StorageSource* source = storage_->source()) source->check();
    return static_cast<char*>(storage_->data()) + byte_offset_;
}

// Reads element `i` of `src` (any dtype) as float or int64, by its byte address.
namespace {

double load_as_double(const char* p, DType dtype) {
    uint16_t h;
    switch (dtype) {
        case DType::Float32: { float f; std::memcpy(&f, p, 4); return f; }
        case DType::Float16: std::memcpy(&h, p, 2); return half_to_float(h);
        case DType::BFloat16: std::memcpy(&h, p, 2); return bfloat16_to_float(h);
        case DType::Int64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    }
    return 0;
}

void store_from_double(char* p, DType dtype, double v) {
    uint16_t h;
    switch (dtype) {
        case DType::Float32: { float f = static_cast<float>(v); std::memcpy(p, &f, 4); return; }
        case DType::Float16: h = float_to_half(static_cast<float>(v)); std::memcpy(p, &h, 2); return;
        case DType::BFloat16: h = float_to_bfloat16(static_cast<float>(v)); std::memcpy(p, &h, 2); return;
        case DType::Int64: { int64_t i = static_cast<int64_t>(v); std::memcpy(p, &i, 8); return; }
    }
}

// Calls fn(src_byte_offset) for every element of a strided view in row-major order.
template <typename Fn>
void for_each_offset(const Shape& shape, const Shape& strides, size_t esize, Fn fn) {
    const int64_t n = shape_numel(shape);
    if (n == 0) return;
    std::vector<int64_t> index(shape.size(), 0);
    for (int64_t k = 0; k < n; ++k) {
        int64_t off = 0;
        for (size_t d = 0; d < shape.size(); ++d) off += index[d] * strides[d];
        fn(static_cast<size_t>(off) * esize);
        for (size_t d = shape.size(); d-- > 0;) {
            if (++index[d] < shape[d]) break;
            index[d] = 0;
        }
    }
}

}  // namespace

void Tensor::copy_from(const Tensor& src) {
    STRATA_CHECK(defined() && src.defined(), "copy between undefined tensors");
    STRATA_CHECK(shape_ == src.shape_, "copy of shape ", shape_str(src.shape_),
                 " into shape ", shape_str(shape_));
    STRATA_CHECK(is_contiguous(), "copy into a non-contiguous tensor");
    if (device() == Device::CUDA || src.device() == Device::CUDA) {
        // Same dtype, contiguous: one copy across. Otherwise convert on the host first.
        if (src.dtype_ == dtype_ && src.is_contiguous()) {
            if (nbytes()) device_copy(raw_data(), src.raw_data(), nbytes(), copy_kind(device(), src.device()));
            return;
        }
        STRATA_CHECK(src.device() == Device::CPU, "copy from a ", dtype_name(src.dtype_),
                     (src.is_contiguous() ? "" : " strided"), " cuda tensor into a ", dtype_name(dtype_),
                     " one: move it to the cpu first (to(Device::CPU))");
        Tensor staged = empty(shape_, dtype_);
        staged.copy_from(src);
        copy_from(staged);
        return;
    }
    if (src.dtype_ == dtype_ && src.is_contiguous()) {
        if (nbytes()) std::memmove(raw_data(), src.raw_data(), nbytes());
        return;
    }
    char* dst = static_cast<char*>(raw_data());
    const char* base = static_cast<const char*>(src.raw_data());
    const size_t out_size = dtype_size(dtype_);
    const bool both_float32 = dtype_ == DType::Float32 && src.dtype_ == DType::Float32;
    size_t k = 0;
    for_each_offset(src.shape_, src.strides_, dtype_size(src.dtype_), [&](size_t off) {
        if (both_float32) std::memcpy(dst + k * 4, base + off, 4);
        else if (dtype_ == DType::Int64 && src.dtype_ == DType::Int64) std::memcpy(dst + k * 8, base + off, 8);
        else store_from_double(dst + k * out_size, dtype_, load_as_double(base + off, src.dtype_));
        ++k;
    });
}

Tensor Tensor::clone() const {
    STRATA_CHECK(defined(), "clone() of an undefined tensor");
    STRATA_CHECK(device() == Device::CPU || is_contiguous(), "clone()/contiguous() of a strided ",
                 device_name(device()), " tensor of shape ", shape_str(shape_),
                 ": move it to the cpu first (to(Device::CPU))");
    Tensor out = empty(shape_, dtype_, device());
    out.copy_from(*this);
    return out;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return *this;
    STRATA_CHECK(device() == Device::CPU, "dtype conversion of a ", device_name(device()),
                 " tensor: move it to the cpu first (to(Device::CPU))");
    Tensor out = empty(shape_, dtype);
    out.copy_from(*this);
    return out;
}

Tensor Tensor::to(Device target) const {
    STRATA_CHECK(defined(), "to(", device_name(target), ") of an undefined tensor");
    if (target == device()) return *this;
    // The bytes from the first to the last element the view reaches, strides kept.
    int64_t last = 0;
    for (size_t i = 0; i < shape_.size(); ++i) last += (shape_[i] - 1) * strides_[i];
    const size_t span = numel_ == 0 ? 0 : (static_cast<size_t>(last) + 1) * dtype_size(dtype_);
    auto storage = Storage::allocate(span, target);
    if (span) device_copy(storage->data(), raw_data(), span, copy_kind(target, device()));
    return Tensor(std::move(storage), 0, shape_, strides_, dtype_);
}

Tensor Tensor::view(const Shape& shape) const {
    STRATA_CHECK(is_contiguous(), "view() of a non-contiguous tensor; call contiguous() first");
    STRATA_CHECK(shape_numel(shape) == numel_, "cannot view a tensor of shape ", shape_str(shape_),
                 " as ", shape_str(shape));
    return Tensor(storage_, byte_offset_, shape, contiguous_strides(shape), dtype_);
}

double Tensor::item_at(const std::vector<int64_t>& index) const {
    STRATA_CHECK(device() == Device::CPU, "item_at() of a ", device_name(device()),
                 " tensor: move it to the cpu first (to(Device::CPU))");
    STRATA_CHECK(index.size() == shape_.size(), "index of rank ", index.size(),
                 " for a tensor of rank ", shape_.size());
    int64_t off = 0;
    for (size_t d = 0; d < index.size(); ++d) {
        STRATA_CHECK(index[d] >= 0 && index[d] < shape_[d], "index ", index[d],
                     " out of range for dimension ", d, " of size ", shape_[d]);
        off += index[d] * strides_[d];
    }
    return load_as_double(static_cast<const char*>(raw_data()) + off * dtype_size(dtype_), dtype_);
}

// ---- half / bfloat16 -------------------------------------------------------------------

float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) { mant <<= 1; --exp; }
            mant &= 0x3ffu;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u)  // inf or nan
        return sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u);
    if (absx >= 0x477ff000u) return sign | 0x7c00u;  // rounds to inf
    if (absx < 0x38800000u) {                          // subnormal or zero in half
        if (absx < 0x33000000u) return sign;
        const uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        const int shift = 113 - static_cast<int>(absx >> 23) + 13;
        uint32_t r = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return sign | static_cast<uint16_t>(r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    const uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
}

float bfloat16_to_float(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_bfloat16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // nan
    const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
    return static_cast<uint16_t>((x + rounding) >> 16);
}

}  // namespace strata
