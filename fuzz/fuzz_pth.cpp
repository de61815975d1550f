// libFuzzer target: the torch.save reader (zip and legacy containers, the whitelisted unpickler)
// and the pickle machine alone. See fuzz/README.md.
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    strata_fuzz::pth_one(data, size);
    return 0;
}
