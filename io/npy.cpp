// .npy reader and writer. The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }
#include "npy.h"

#include <cstring>

#include "mapped_file.h"

namespace strata {

namespace {

// The text after `'key':` in a header dict, leading spaces skipped; "" if the key is absent.
std::string value_after(const std::string& header, const std::string& key) {
    const std::string quoted[2] = {"'" + key + "'", "\"" + key + "\""};
    for (const auto& q : quoted) {
        size_t pos = header.find(q);
        if (pos == std::string::npos) continue;
        pos = header.find(':', pos + q.size());
        if (pos == std::string::npos) return "";
        pos = header.find_first_not_of(' ', pos + 1);
        return pos == std::string::npos ? "" : header.substr(pos);
    }
    return "";
}

}  // namespace

Tensor parse_npy(const unsigned char* data, size_t size, const std::string& name) {
    STRATA_CHECK(size >= 10 && std::memcmp(data, "\x93NUMPY", 6) == 0, name,
                 ": not a .npy file (bad magic)");
    const unsigned major = data[6];
    STRATA_CHECK(major >= 1 && major <= 3, name, ": unsupported .npy version ", major);
    size_t header_len, header_start;
    if (major == 1) {
        header_len = data[8] | (static_cast<size_t>(data[9]) << 8);
        header_start = 10;
    } else {
        STRATA_CHECK(size >= 12, name, ": truncated .npy header");
        header_len = data[8] | (static_cast<size_t>(data[9]) << 8) |
                     (static_cast<size_t>(data[10]) << 16) | (static_cast<size_t>(data[11]) << 24);
        header_start = 12;
    }
    STRATA_CHECK(header_len <= size - header_start, name, ": truncated .npy header");
    const std::string header(reinterpret_cast<const char*>(data + header_start), header_len);

    const std::string descr = value_after(header, "descr");
    STRATA_CHECK(!descr.empty(), name, ": .npy header has no 'descr'");
    const std::string dtype = descr.substr(1, descr.find(descr[0], 1) - 1);
    STRATA_CHECK(dtype == "<f4", name, ": .npy dtype is '", dtype,
                 "', strata needs float32 ('<f4'); convert with x.astype(numpy.float32)");
    const std::string fortran = value_after(header, "fortran_order");
    STRATA_CHECK(fortran.rfind("False", 0) == 0, name,
                 ": .npy is Fortran-ordered; save a C-ordered array (numpy.ascontiguousarray)");
    const std::string shape_text = value_after(header, "shape");
    STRATA_CHECK(!shape_text.empty() && shape_text[0] == '(', name, ": .npy header has no shape");
    const size_t close = shape_text.find(')');
    STRATA_CHECK(close != std::string::npos, name, ": .npy shape is not closed");
    Shape shape;
    const std::string dims = shape_text.substr(1, close - 1);
    size_t i = 0;
    while (i < dims.size()) {
        while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
        if (i >= dims.size()) break;
        STRATA_CHECK(dims[i] >= '0' && dims[i] <= '9', name, ": bad .npy shape (", dims, ")");
        int64_t v = 0;
        while (i < dims.size() && dims[i] >= '0' && dims[i] <= '9') {
            STRATA_CHECK(v <= (INT64_MAX - 9) / 10, name, ": .npy shape entry too large");
            v = v * 10 + (dims[i++] - '0');
        }
        shape.push_back(v);
    }
    int64_t numel = 0;
    try {
        numel = shape_numel(shape);
    } catch (const Error& e) {
        STRATA_FAIL(name, ": ", e.what());
    }
    const size_t offset = header_start + header_len;
    const size_t available = size - offset;
    STRATA_CHECK(static_cast<uint64_t>(numel) <= available / 4 &&
                     static_cast<size_t>(numel) * 4 == available,
                 name, ": .npy shape ", shape_str(shape), " needs ",
                 static_cast<uint64_t>(numel) * 4u, " bytes of data but the file has ", available,
                 available < static_cast<uint64_t>(numel) * 4u ? " (truncated)" : "");
    Tensor t = Tensor::empty(shape);
    if (numel) std::memcpy(t.raw_data(), data + offset, static_cast<size_t>(numel) * 4);
    return t;
}

Tensor load_npy(const std::string& path) {
    const auto file = MappedFile::open(path);
    return parse_npy(file->data(), file->size(), path);
}

void save_npy(const Tensor& t_in, const std::string& path) {
    const Tensor t = t_in.to(DType::Float32).contiguous();
    std::string shape = "(";
    for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
    if (t.dim() > 1) shape.erase(shape.size() - 2);  // "(2, 3)" but "(5,)"
    else if (t.dim() == 1) shape.erase(shape.size() - 1);
    shape += ")";
    std::string bytes = npy_preamble("<f4", false, shape);
    bytes.append(static_cast<const char*>(t.raw_data()), t.nbytes());
    write_file_atomically(path, bytes);
}

std::string npy_preamble(const std::string& descr, bool fortran_order, const std::string& shape) {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran_order ? "True" : "False") +
                         ", 'shape': " + shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += '\x01';
    bytes += '\x00';
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>((header.size() >> 8) & 0xff);
    bytes += header;
    return bytes;
}

}  // namespace strata
