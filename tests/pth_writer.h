// Test-only writers for torch.save files: a zip writer of stored entries and a protocol-2
// pickler laid out as torch writes a state_dict. Tests build valid files with them and then
// break one field at a time (tests/test_weight_catalog.cpp). The torch-written files in
// tests/fixtures/pth/ are the ground truth for the format; tests/test_pth.cpp checks that files
// from this writer load the same way (and python3 -c "torch.load(...)" reads them too).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/zip_reader.h"
#include "strata.h"

namespace pth_test {

inline void put16(std::string& s, uint64_t v) {
    for (int i = 0; i < 2; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void put32(std::string& s, uint64_t v) {
    for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void put64(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
inline uint32_t crc_of(const std::string& s) {
    return strata::crc32(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

// ---- zip ------------------------------------------------------------------------------------
struct ZipEntrySpec {
    std::string name, data;
    uint16_t method = 0;          // 0 stored; the data is written as given whatever the method
    uint16_t flags = 0x0808;      // data descriptor + UTF-8 names, as torch writes
    bool zip64 = false;           // sizes and offset in zip64 extra fields
    size_t align = 64;            // pad the local extra field so the data starts at a multiple
};

struct ZipLayout {
    std::string bytes;
    std::vector<size_t> header_offsets, data_offsets, central_offsets;  // per entry
    size_t cd_offset = 0, cd_size = 0, end_offset = 0;  // central directory, end record
};

inline ZipLayout make_zip(const std::vector<ZipEntrySpec>& entries, bool zip64_end = true) {
    ZipLayout z;
    std::string& out = z.bytes;
    for (const ZipEntrySpec& e : entries) {
        const uint32_t crc = crc_of(e.data);
        const bool descriptor = e.flags & 8;
        z.header_offsets.push_back(out.size());
        std::string extra;
        if (e.zip64) {
            put16(extra, 1);
            put16(extra, 16);
            put64(extra, e.data.size());
            put64(extra, e.data.size());
        }
        // torch's padding: an extra field "FB" of 'Z's up to the alignment.
        const size_t before_pad = out.size() + 30 + e.name.size() + extra.size();
        if (e.align > 1) {
            size_t pad = (e.align - (before_pad + 4) % e.align) % e.align;
            put16(extra, 0x4246);
            put16(extra, pad);
            extra += std::string(pad, 'Z');
        }
        put32(out, 0x04034b50);
        put16(out, e.zip64 ? 45 : 20);
        put16(out, e.flags);
        put16(out, e.method);
        put32(out, 0);  // time, date
        put32(out, descriptor ? 0 : crc);
        put32(out, descriptor ? 0 : (e.zip64 ? 0xffffffffu : e.data.size()));
        put32(out, descriptor ? 0 : (e.zip64 ? 0xffffffffu : e.data.size()));
        put16(out, e.name.size());
        put16(out, extra.size());
        out += e.name + extra;
        z.data_offsets.push_back(out.size());
        out += e.data;
        if (descriptor) {
            put32(out, 0x08074b50);
            put32(out, crc);
            if (e.zip64) {
                put64(out, e.data.size());
                put64(out, e.data.size());
            } else {
                put32(out, e.data.size());
                put32(out, e.data.size());
            }
        }
    }
    z.cd_offset = out.size();
    for (size_t i = 0; i < entries.size(); ++i) {
        const ZipEntrySpec& e = entries[i];
        std::string extra;
        if (e.zip64) {
            put16(extra, 1);
            put16(extra, 24);
            put64(extra, e.data.size());
            put64(extra, e.data.size());
            put64(extra, z.header_offsets[i]);
        }
        z.central_offsets.push_back(out.size());
        put32(out, 0x02014b50);
        put16(out, 0x031e);
        put16(out, e.zip64 ? 45 : 20);
        put16(out, e.flags);
        put16(out, e.method);
        put32(out, 0);
        put32(out, crc_of(e.data));
        put32(out, e.zip64 ? 0xffffffffu : e.data.size());
        put32(out, e.zip64 ? 0xffffffffu : e.data.size());
        put16(out, e.name.size());
        put16(out, extra.size());
        put16(out, 0);   // comment
        put16(out, 0);   // disk
        put16(out, 0);   // internal attributes
        put32(out, 0);   // external attributes
        put32(out, e.zip64 ? 0xffffffffu : z.header_offsets[i]);
        out += e.name + extra;
    }
    z.cd_size = out.size() - z.cd_offset;
    if (zip64_end) {
        const size_t record = out.size();
        put32(out, 0x06064b50);
        put64(out, 44);
        put16(out, 0x031e);
        put16(out, 45);
        put32(out, 0);
        put32(out, 0);
        put64(out, entries.size());
        put64(out, entries.size());
        put64(out, z.cd_size);
        put64(out, z.cd_offset);
        put32(out, 0x07064b50);
        put32(out, 0);
        put64(out, record);
        put32(out, 1);
    }
    z.end_offset = out.size();
    put32(out, 0x06054b50);
    put16(out, 0);
    put16(out, 0);
    put16(out, entries.size());
    put16(out, entries.size());
    put32(out, z.cd_size);
    put32(out, z.cd_offset);
    put16(out, 0);
    return z;
}

// ---- pickle (protocol 2, torch's layout) -----------------------------------------------------
struct Pickler {
    std::string out;
    Pickler() { out = "\x80\x02"; }  // PROTO 2
    Pickler& op(char c) { out += c; return *this; }
    Pickler& global(const std::string& module, const std::string& name) {
        out += 'c' + module + '\n' + name + '\n';
        return *this;
    }
    Pickler& str(const std::string& s) {  // BINUNICODE
        out += 'X';
        put32(out, s.size());
        out += s;
        return *this;
    }
    Pickler& integer(int64_t v) {
        if (v >= 0 && v < 256) {
            out += 'K';
            out += static_cast<char>(v);
        } else if (v >= INT32_MIN && v <= INT32_MAX) {
            out += 'J';
            put32(out, static_cast<uint64_t>(v));
        } else {
            out += "\x8a\x08";  // LONG1, 8 bytes
            put64(out, static_cast<uint64_t>(v));
        }
        return *this;
    }
    Pickler& int_tuple(const std::vector<int64_t>& values) {
        out += '(';
        for (int64_t v : values) integer(v);
        out += 't';
        return *this;
    }
    Pickler& stop() { out += '.'; return *this; }
};

struct TensorSpec {
    std::string key;
    std::string storage_type = "FloatStorage";
    std::string storage_key = "0";
    int64_t storage_numel = 0;
    int64_t offset = 0;
    std::vector<int64_t> shape, strides;
};

// OrderedDict([(key, _rebuild_tensor_v2(persistent storage, offset, shape, strides, False,
// OrderedDict())) ...]). `legacy`: the persistent id has the 6th field (view_metadata None).
inline void pickle_tensor(Pickler& p, const TensorSpec& t, bool legacy = false) {
    p.global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.op('(').str("storage").global("torch", t.storage_type).str(t.storage_key).str("cpu").integer(t.storage_numel);
    if (legacy) p.op('N');
    p.op('t').op('Q');  // TUPLE, BINPERSID
    p.integer(t.offset).int_tuple(t.shape).int_tuple(t.strides).op('\x89');  // NEWFALSE
    p.global("collections", "OrderedDict").op(')').op('R');                    // OrderedDict()
    p.op('t').op('R');
}

inline std::string state_dict_pickle(const std::vector<TensorSpec>& tensors, bool legacy = false) {
    Pickler p;
    p.global("collections", "OrderedDict").op(')').op('R').op('(');
    for (const TensorSpec& t : tensors) {
        p.str(t.key);
        pickle_tensor(p, t, legacy);
    }
    p.op('u').stop();
    return p.out;
}

inline const char* storage_type(strata::DType dtype) {
    switch (dtype) {
        case strata::DType::Float32: return "FloatStorage";
        case strata::DType::Float16: return "HalfStorage";
        case strata::DType::BFloat16: return "BFloat16Storage";
        case strata::DType::Int64: return "LongStorage";
    }
    return "?";
}

// One storage per tensor, keys "0", "1", ..., data contiguous.
inline std::vector<TensorSpec> specs_of(const strata::StateDict& state) {
    std::vector<TensorSpec> specs;
    for (const auto& [key, t] : state) {
        TensorSpec s;
        s.key = key;
        s.storage_type = storage_type(t.dtype());
        s.storage_key = std::to_string(specs.size());
        s.storage_numel = t.numel();
        s.shape = t.shape();
        s.strides = strata::contiguous_strides(t.shape());
        specs.push_back(s);
    }
    return specs;
}

inline std::string bytes_of(const strata::Tensor& t) {
    const strata::Tensor c = t.contiguous();
    return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// The zip torch.save writes for `state` (entries: data.pkl, data/<key>..., version).
inline std::vector<ZipEntrySpec> torch_zip_entries(const strata::StateDict& state,
                                                   const std::string& prefix = "archive") {
    std::vector<ZipEntrySpec> entries;
    entries.push_back({prefix + "/data.pkl", state_dict_pickle(specs_of(state))});
    size_t i = 0;
    for (const auto& item : state)
        entries.push_back({prefix + "/data/" + std::to_string(i++), bytes_of(item.second)});
    entries.push_back({prefix + "/version", "3\n"});
    return entries;
}

inline std::string torch_zip(const strata::StateDict& state, const std::string& prefix = "archive") {
    return make_zip(torch_zip_entries(state, prefix)).bytes;
}

// The legacy format: five pickles, then each storage as int64 count + bytes.
inline std::string torch_legacy(const strata::StateDict& state) {
    std::string out;
    out += "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";  // magic number
    out += std::string("\x80\x02M\xe9\x03.", 6);                         // 1001
    Pickler info;
    info.op('}').op('(').str("protocol_version").integer(1001).str("little_endian").op('\x88');
    info.str("type_sizes").op('}').op('(').str("short").integer(2).str("int").integer(4).str("long").integer(4);
    info.op('u').op('u').stop();
    out += info.out;
    out += state_dict_pickle(specs_of(state), /*legacy=*/true);
    Pickler keys;
    keys.op(']').op('(');
    for (size_t i = 0; i < state.size(); ++i) keys.str(std::to_string(i));
    keys.op('e').stop();
    out += keys.out;
    for (const auto& item : state) {
        put64(out, static_cast<uint64_t>(item.second.numel()));
        out += bytes_of(item.second);
    }
    return out;
}

}  // namespace pth_test
