// libFuzzer target: the safetensors reader (through strata::load_from_memory). See fuzz/README.md.
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    strata_fuzz::safetensors_one(data, size);
    return 0;
}
