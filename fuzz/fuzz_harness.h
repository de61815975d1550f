// One input through one weight-file reader, exactly as the libFuzzer targets run it and as the
// regression test (tests/test_weight_catalog.cpp) replays fuzz/corpus/ and fuzz/regressions/.
// A reader may accept an input or throw strata::Error; anything else — a crash, a sanitizer
// report, another exception, a hang, a giant allocation — is a finding.
#pragma once
#include <cstddef>
#include <cstdint>

#include "io/pickle.h"
#include "io/pth.h"
#include "io/weights.h"

namespace strata_fuzz {

// Reads the first and the last byte each tensor can reach, so AddressSanitizer reports any view
// that points outside its storage (the bytes in between lie between those two).
inline void touch(const strata::StateDict& state) {
    volatile unsigned char sink = 0;
    for (const auto& item : state) {
        const strata::Tensor& t = item.second;
        if (t.numel() == 0) continue;
        size_t last = 0;
        for (size_t d = 0; d < t.shape().size(); ++d)
            last += static_cast<size_t>(t.shape()[d] - 1) * static_cast<size_t>(t.strides()[d]);
        const auto* first = static_cast<const unsigned char*>(t.storage()->data()) + t.byte_offset();
        sink = sink ^ first[0] ^ first[(last + 1) * strata::dtype_size(t.dtype()) - 1];
    }
    (void)sink;
}

// Hooks that accept every global and persistent id, so the pickle machine itself can be driven
// into every opcode (the torch whitelist stops most inputs at their first global).
class AcceptAllHooks : public strata::pickle::Hooks {
public:
    int32_t find_class(std::string_view, std::string_view) override { return 1; }
    strata::pickle::Id call(strata::pickle::Graph& g, strata::pickle::Id, strata::pickle::Id) override {
        return object(g);
    }
    strata::pickle::Id persistent_load(strata::pickle::Graph& g, strata::pickle::Id) override { return object(g); }
    void build(strata::pickle::Graph&, strata::pickle::Id, strata::pickle::Id) override {}

private:
    static strata::pickle::Id object(strata::pickle::Graph& g) {
        strata::pickle::Value v;
        v.kind = strata::pickle::Kind::Object;
        return g.add(std::move(v));
    }
};

inline void safetensors_one(const uint8_t* data, size_t size) {
    try {
        touch(strata::load_from_memory(data, size, nullptr, "fuzz.safetensors"));
    } catch (const strata::Error&) {
    }
}

inline void pth_one(const uint8_t* data, size_t size) {
    for (const bool verify : {false, true}) {  // without CRC checks, mutations reach the pickle
        strata::PthOptions options;
        options.verify_checksums = verify;
        try {
            touch(strata::read_pth(data, size, nullptr, "fuzz.pth", options));
        } catch (const strata::Error&) {
        }
    }
    try {  // the raw bytes as one pickle, every global allowed
        AcceptAllHooks hooks;
        const strata::pickle::Unpickled u = strata::pickle::unpickle(data, size, hooks, "fuzz.pkl");
        (void)strata::pickle::describe(u.graph, u.root);
    } catch (const strata::Error&) {
    }
}

}  // namespace strata_fuzz
