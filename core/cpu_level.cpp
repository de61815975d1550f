#include "cpu_level.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define STRATA_X86 1
#endif

namespace strata {

namespace {

// What this CPU has, from cpuid; and what the OS saves on a context switch, from XGETBV: a CPU
// with AVX-512 under an OS that does not save the zmm registers must not use them.
struct CpuFeatures {
    bool avx2_fma = false;  // AVX, AVX2 and FMA, with ymm state enabled by the OS
    bool avx512 = false;    // AVX-512 F, BW, DQ and VL, with zmm/opmask state enabled
    std::string missing_avx2, missing_avx512;  // the first missing piece, for messages
    std::string model;
};

#if STRATA_X86
uint64_t xgetbv0() {
    uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures probe() {
    CpuFeatures f;
    f.missing_avx2 = f.missing_avx512 = "not an x86-64 processor";
#if STRATA_X86
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        char brand[49] = {};
        for (unsigned leaf = 0; leaf < 3; ++leaf) {
            __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
            std::memcpy(brand + 16 * leaf, &a, 4);
            std::memcpy(brand + 16 * leaf + 4, &b, 4);
            std::memcpy(brand + 16 * leaf + 8, &c, 4);
            std::memcpy(brand + 16 * leaf + 12, &d, 4);
        }
        f.model = brand;
        while (!f.model.empty() && f.model.back() == ' ') f.model.pop_back();
        while (!f.model.empty() && f.model.front() == ' ') f.model.erase(0, 1);
    }
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        f.missing_avx2 = f.missing_avx512 = "cpuid leaf 1 unavailable";
        return f;
    }
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
    const bool zmm_state = (xcr0 & 0xE6) == 0xE6;          // + opmask, ZMM_Hi256, Hi16_ZMM
    unsigned b7 = 0;
    if (__get_cpuid_max(0, nullptr) >= 7) __cpuid_count(7, 0, a, b7, c, d);
    const bool avx2 = b7 & (1u << 5);
    const bool avx512f = b7 & (1u << 16), avx512dq = b7 & (1u << 17), avx512bw = b7 & (1u << 30),
               avx512vl = b7 & (1u << 31);

    f.missing_avx2 = !avx ? "AVX" : !avx2 ? "AVX2" : !fma ? "FMA"
                   : !ymm_state ? "OS support for the AVX registers (XCR0)" : "";
    f.avx2_fma = f.missing_avx2.empty();
    f.missing_avx512 = !f.avx2_fma ? f.missing_avx2 : !avx512f ? "AVX-512F" : !avx512bw ? "AVX-512BW"
                     : !avx512dq ? "AVX-512DQ" : !avx512vl ? "AVX-512VL"
                     : !zmm_state ? "OS support for the AVX-512 registers (XCR0)" : "";
    f.avx512 = f.missing_avx512.empty();
#endif
    return f;
}

const CpuFeatures& features() {
    static const CpuFeatures f = probe();
    return f;
}

}  // namespace

const char* cpu_level_name(CpuLevel level) {
    switch (level) {
        case CpuLevel::Auto: return "auto";
        case CpuLevel::Baseline: return "baseline";
        case CpuLevel::Avx2: return "avx2";
        case CpuLevel::Avx512: return "avx512";
    }
    return "?";
}

CpuLevel parse_cpu_level(const std::string& name) {
    for (CpuLevel level : {CpuLevel::Auto, CpuLevel::Baseline, CpuLevel::Avx2, CpuLevel::Avx512})
        if (name == cpu_level_name(level)) return level;
    throw Error("unknown CPU level '" + name + "'; expected auto, baseline, avx2 or avx512");
}

CpuLevel detected_cpu_level() {
    return features().avx512 ? CpuLevel::Avx512 : features().avx2_fma ? CpuLevel::Avx2 : CpuLevel::Baseline;
}

bool cpu_supports(CpuLevel level) {
    switch (level) {
        case CpuLevel::Auto:
        case CpuLevel::Baseline: return true;
        case CpuLevel::Avx2: return features().avx2_fma;
        case CpuLevel::Avx512: return features().avx512;
    }
    return false;
}

namespace {
void check_supported(CpuLevel level, const char* who) {
    if (cpu_supports(level)) return;
    const std::string& missing = level == CpuLevel::Avx512 ? features().missing_avx512 : features().missing_avx2;
    throw Error(std::string(who) + cpu_level_name(level) + " needs " + missing + ", which this CPU" +
                (features().model.empty() ? "" : " (" + features().model + ")") + " lacks; it supports up to " +
                cpu_level_name(detected_cpu_level()));
}

// Computed on first use; an invalid STRATA_CPU is reported by every call (not only the first).
struct EnvLevel {
    CpuLevel level = CpuLevel::Auto;
    std::string error;
};
const EnvLevel& env_level() {
    static const EnvLevel e = [] {
        EnvLevel r;
        const char* value = std::getenv("STRATA_CPU");
        if (!value || !*value) {
            r.level = detected_cpu_level();
            return r;
        }
        try {
            r.level = parse_cpu_level(value);
            if (r.level == CpuLevel::Auto) r.level = detected_cpu_level();
            check_supported(r.level, "STRATA_CPU=");
        } catch (const Error& error) {
            r.error = std::string(error.what());
            if (r.error.rfind("STRATA_CPU", 0) != 0) r.error = "STRATA_CPU: " + r.error;
        }
        return r;
    }();
    return e;
}
}  // namespace

CpuLevel default_cpu_level() {
    const EnvLevel& e = env_level();
    if (!e.error.empty()) throw Error(e.error);
    return e.level;
}

CpuLevel resolve_cpu_level(CpuLevel requested) {
    if (requested == CpuLevel::Auto) return default_cpu_level();
    check_supported(requested, "CPU level ");
    return requested;
}

std::string cpu_level_summary() {
    std::string s = std::string(cpu_level_name(default_cpu_level())) + " (detected: " +
                    cpu_level_name(detected_cpu_level());
    if (const char* env = std::getenv("STRATA_CPU"); env && *env) s += std::string("; STRATA_CPU=") + env;
    if (!features().model.empty()) s += "; CPU: " + features().model;
    return s + ")";
}

}  // namespace strata
