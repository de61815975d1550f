#!/usr/bin/env python3
"""Renders one benchmarks/run.sh run (the raw JSON lines in its --dir) as benchmarks/RESULTS.md and
a PNG chart. Needs matplotlib for the chart; imports torch only to record its version and build.

    report.py --dir build-bench/bench-run --command "benchmarks/run.sh" --quick 0 --rounds 3 \
        --iters 1:3:30,8:2:8,32:1:3 --rss-reps 3 --md benchmarks/RESULTS.md --png benchmarks/results.png

(benchmarks/run.sh calls it; run it by hand only to re-render a run.)

Inputs in --dir: probe.jsonl (fma_probe per thread count), timing.jsonl (one line per run:
round, side, path, and the bench's JSON as "result" or an "error"), profile.jsonl (`strata bench
--profile` lines), rss.jsonl (peak resident memory of each side's process), checks.jsonl (each
engine's outputs against PyTorch fp32, from `benchmarks/peers.py check`), versions.json (`peers.py
versions`), lscpu.txt.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict

PATHS = ["strata", "eager", "channels_last", "best"]
PATH_TITLES = {"strata": "strata", "eager": "PyTorch eager NCHW", "channels_last": "PyTorch eager channels_last",
               "best": "PyTorch best (jit freeze + optimize_for_inference)"}
SHORT = {"strata": "strata", "eager": "eager", "channels_last": "channels_last", "best": "best"}
# The peers (benchmarks/peers.py), in the goal table's column order after strata.
PEERS = ["ov-f32", "ort", "ncnn", "ov-default"]
PEER_TITLES = {"ov-f32": "OpenVINO f32", "ort": "ONNX Runtime", "ncnn": "ncnn fp32",
               "ov-default": "OpenVINO default precision"}
PEER_PACKAGES = {"ov-f32": "openvino", "ort": "onnxruntime", "ncnn": "ncnn", "ov-default": "openvino"}
PEER_THREADS = {"ov-f32": "`INFERENCE_NUM_THREADS`, 1 stream, LATENCY hint, precision hint f32 (TBB)",
                "ov-default": "`INFERENCE_NUM_THREADS`, 1 stream, LATENCY hint, no precision hint (TBB)",
                "ort": "`intra_op_num_threads`, 1 inter-op thread, sequential, all graph optimisations "
                       "(own thread pool)",
                "ncnn": "`opt.num_threads`, fp16/bf16/int8 off, no Vulkan (GNU OpenMP, bundled)"}
PYTORCH_PATH_NAMES = {"eager": "eager", "channels_last": "channels_last", "best": "jit"}
FULL = "(full model)"
MODEL_TITLES = {FULL: "ResNet-18 (full)", "layer1:feat1,layer3:feat2": "seed getter (layer1 + layer3)"}

# The targets, checked at the largest thread count of the run (2 on the 2-vCPU machine).
LATENCY_VS_BEST = 0.8
LATENCY_VS_EAGER = 0.5
THROUGHPUT_VS_BEST = 1.25
RSS_LIMIT_MB = 80.0
LAYER1_SHARE = 0.40


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(build_dir):
    lscpu = sh("lscpu")
    field = lambda name: next((l.split(":", 1)[1].strip() for l in lscpu.splitlines()
                               if l.startswith(name + ":")), "?")
    flags = field("Flags").split()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2+FMA" if "avx2" in flags and "fma" in flags else "no AVX2")
    mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:")), 0)
    os_name = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                    if l.startswith("PRETTY_NAME=")), platform.system()) if os.path.exists("/etc/os-release") else platform.system()
    cache = {}
    cache_path = os.path.join(build_dir, "CMakeCache.txt")
    if os.path.exists(cache_path):
        for line in open(cache_path):
            m = re.match(r"^(CMAKE_CXX_COMPILER|STRATA_NATIVE|STRATA_OPENMP|CMAKE_BUILD_TYPE):[A-Z]+=(.*)$", line)
            if m:
                cache[m.group(1)] = m.group(2)
    compiler = sh("'%s' --version | head -1" % cache.get("CMAKE_CXX_COMPILER", "c++"))
    return {
        "model_name": field("Model name"),
        "flags": " ".join(flags),
        "cpu": "%s (family %s, model %s), %s, %s socket(s) x %s core(s) x %s thread(s)" % (
            field("Model name"), field("CPU family"), field("Model"), isa, field("Socket(s)"),
            field("Core(s) per socket"), field("Thread(s) per core")),
        "hypervisor": field("Hypervisor vendor"),
        "caches": "L1d %s, L2 %s, L3 %s" % (field("L1d cache"), field("L2 cache"), field("L3 cache")),
        "nproc": sh("nproc"),
        "memory": "%.1f GiB" % (mem_kb / 2**20),
        "os": "%s, kernel %s" % (os_name, platform.release()),
        "compiler": compiler,
        "build": "CMAKE_BUILD_TYPE=%s, STRATA_NATIVE=%s (-march=native), STRATA_OPENMP=%s" % (
            cache.get("CMAKE_BUILD_TYPE", "?"), cache.get("STRATA_NATIVE", "?"), cache.get("STRATA_OPENMP", "?")),
        "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else [],
    }


def torch_info():
    try:
        import torch
        import torchvision
    except ImportError:
        return {"torch": "?", "torchvision": "?", "onednn": "?"}
    show = torch.__config__.show()
    m = re.search(r"(?:oneDNN|MKL-DNN)\s+v?([\d.]+)", show)
    parallel = torch.__config__.parallel_info()
    backend = re.search(r"ATen parallel backend:\s*(.*)", parallel)
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "onednn": m.group(1) if m else "?", "parallel": backend.group(1).strip() if backend else "?",
            "python": platform.python_version()}


def git_info():
    commit = sh("git rev-parse HEAD")
    dirty = sh("git status --porcelain --untracked-files=no")
    return commit + (" (plus uncommitted changes in the working tree)" if dirty else "")


def aggregate(timing):
    """{(threads, batch, layers, path): {...}}: medians of round medians, minima of round minima."""
    runs = defaultdict(list)
    errors = []
    for r in timing:
        if "error" in r:
            errors.append(r)
            continue
        res = r["result"]
        runs[(res["threads"], res["batch"], res["layers"], r["path"])].append(res)
    out = {}
    for key, rs in runs.items():
        med = statistics.median(x["median_ms"] for x in rs)
        pick = lambda f: [x[f] for x in rs if x.get(f) is not None]
        out[key] = {"median_ms": med, "min_ms": min(x["min_ms"] for x in rs),
                    "images_per_s": 1000.0 * key[1] / med, "rounds": len(rs), "iters": rs[0]["iters"],
                    "warmup": rs[0].get("warmup"),
                    "round_medians": [x["median_ms"] for x in rs],
                    "first_ms": statistics.median(pick("first_ms")) if pick("first_ms") else None,
                    "load_ms": statistics.median(pick("load_ms")) if pick("load_ms") else None,
                    "prepare_ms": statistics.median(pick("prepare_ms")) if pick("prepare_ms") else None,
                    "torch": rs[0].get("torch"), "precision": rs[0].get("precision"),
                    "engine_threads": sorted({x["engine_threads"] for x in rs if x.get("engine_threads") is not None})}
    return out, errors


def gflop_per_image(profiles):
    """GFLOP per image of the full model and of the seed getter (children up to layer3)."""
    for p in profiles:
        if p.get("profile"):
            rows = p["profile"]
            batch = p["batch"]
            full = sum(r["gflop"] for r in rows) / batch
            names = [r["child"] for r in rows]
            seed = sum(r["gflop"] for r in rows[:names.index("layer3") + 1]) / batch if "layer3" in names else None
            return {FULL: full, "layer1:feat1,layer3:feat2": seed}
    return {}


def read_json(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def best_pytorch(agg, t, b, layers):
    """PyTorch's fastest path for one configuration: (path, result) or (None, None)."""
    runs = [(p, agg[(t, b, layers, p)]) for p in ("eager", "channels_last", "best") if (t, b, layers, p) in agg]
    return min(runs, key=lambda pr: pr[1]["median_ms"]) if runs else (None, None)


def peer_precision(agg, checks, engine):
    """The precision an engine ran at: from its timed runs, else from its check."""
    for k, r in agg.items():
        if k[3] == engine and r.get("precision"):
            return r["precision"]
    return checks.get(engine, {}).get("precision")


def peers_section(L, agg, checks, versions, threads_list, tinfo):
    """The engines (version, precision, threads, check against PyTorch) and the goal tables."""
    L.append("## strata and its peers")
    L.append("")
    L.append("Each engine ran the same ResNet-18 (the weights above) exported once by `benchmarks/peers.py`: "
             "ONNX (opset 17, TorchScript exporter, dynamic batch) for ONNX Runtime; OpenVINO IR converted from "
             "that ONNX file with fp32 weights (`compress_to_fp16=False`), reshaped to the static batch and "
             "compiled for it; ncnn from the TorchScript trace through pnnx (`fp16=0`). The seed getter "
             "(layer1 + layer3) is exported as its own model, torchvision's IntermediateLayerGetter returning "
             "both maps, so every engine truncates after layer3 (strata and PyTorch run the getter directly). "
             "ncnn has no batch axis: a batch of N is N extractions in one call.")
    L.append("")
    L.append("Before anything is timed, each engine's outputs on a 2x3x224x224 random input are compared with "
             "PyTorch fp32 eager: relative error = max |engine - torch| / max |torch|, the worst output (logits; "
             "feat1 and feat2 for the getter). An fp32 engine over 1e-4, or one that could not run, is not timed.")
    L.append("")
    L.append("| engine | version | precision | threads set by | max rel. error, full | max rel. error, getter "
             "| check |")
    L.append("|---|---|---|---|---|---|---|")

    def errs(engine):
        c = checks.get(engine)
        if not c:
            return "not run", "not run", "not run"
        cells = []
        for tag in ("full", "getter"):
            m = c.get("models", {}).get(tag, {})
            cells.append("%.1e" % m["max_rel_err"] if "max_rel_err" in m else m.get("error", c.get("error", "n/a")))
        status = "ok" if c.get("ok") else "**failed: not timed**"
        if c.get("ok") and not c.get("fp32", True):
            status = "ok (reduced precision: labelled, not held to 1e-4)"
        return cells[0], cells[1], status

    rows = [("strata", "strata", "(this commit)", "f32", "`--threads` (GNU OpenMP)")]
    for path in ("eager", "channels_last", "best"):
        rows.append(("torch-" + path, "PyTorch " + PYTORCH_PATH_NAMES[path], tinfo.get("torch", "?"), "f32",
                     "`torch.set_num_threads` (GNU OpenMP)"))
    for e in PEERS:
        rows.append((e, PEER_TITLES[e], versions.get(PEER_PACKAGES[e]) or "not installed",
                     peer_precision(agg, checks, e) or "?", PEER_THREADS[e]))
    for key, title, version, prec, threads in rows:
        full, getter, status = errs(key)
        L.append("| %s | %s | %s | %s | %s | %s | %s |" % (title, version, prec, threads, full, getter, status))
    L.append("")
    if versions.get("pnnx"):
        L.append("Exporters: torch %s (`torch.onnx.export`, `torch.jit.trace`), onnx %s, pnnx %s; OpenVINO reports "
                 "the CPU as \"%s\" with capabilities %s (its default precision here: %s)." % (
                     versions.get("torch"), versions.get("onnx"), versions.get("pnnx"),
                     versions.get("openvino_cpu", "?"), ", ".join(versions.get("openvino_cpu_capabilities", [])),
                     versions.get("openvino_default_precision", "?")))
        L.append("")

    off = sorted({"%s at %d threads reported %s" % (PEER_TITLES.get(k[3], k[3]), k[0], r["engine_threads"])
                  for k, r in agg.items() if r.get("engine_threads") and r["engine_threads"] != [k[0]]})
    if off:
        L.append("**Warning:** an engine did not take the thread count it was given: %s." % "; ".join(off))
        L.append("")
    L.append("Median time per call; in brackets, engine time / strata time (above 1: strata faster). Only ratios "
             "within this run mean anything: the machine is shared.")
    L.append("")
    for layers, title in [(FULL, "ResNet-18, full model"), ("layer1:feat1,layer3:feat2", "seed getter (layer1 + layer3)")]:
        L.append("### %s" % title)
        L.append("")
        ov_default_prec = peer_precision(agg, checks, "ov-default") or "?"
        L.append("| threads | batch | strata | OpenVINO f32 | ONNX Runtime | ncnn fp32 | PyTorch best path "
                 "| OpenVINO default (%s) |" % ov_default_prec)
        L.append("|---|---|---|---|---|---|---|---|")
        for t in threads_list:
            for b in sorted({k[1] for k in agg if k[0] == t and k[2] == layers}):
                s_r = agg.get((t, b, layers, "strata"))

                def cell(r, label=""):
                    if r is None:
                        return "n/a"
                    text = "%.2f ms" % r["median_ms"] if r["median_ms"] < 100 else "%.0f ms" % r["median_ms"]
                    if label:
                        text += ", " + label
                    if s_r and r is not s_r:
                        text += " (%.2fx)" % (r["median_ms"] / s_r["median_ms"])
                    return text

                bp, br = best_pytorch(agg, t, b, layers)
                strata_cell = cell(s_r)
                if s_r and b > 1:
                    strata_cell += ", %.1f img/s" % s_r["images_per_s"]
                L.append("| %d | %d | %s | %s | %s | %s | %s | %s |" % (
                    t, b, strata_cell, cell(agg.get((t, b, layers, "ov-f32"))), cell(agg.get((t, b, layers, "ort"))),
                    cell(agg.get((t, b, layers, "ncnn"))), cell(br, PYTORCH_PATH_NAMES.get(bp, "")),
                    cell(agg.get((t, b, layers, "ov-default")))))
        L.append("")


def fmt(v, digits=1, unit=""):
    return "n/a" if v is None else ("%.*f%s" % (digits, v, unit))


def render(args):
    probes = read_jsonl(os.path.join(args.dir, "probe.jsonl"))
    timing = read_jsonl(os.path.join(args.dir, "timing.jsonl"))
    profiles = read_jsonl(os.path.join(args.dir, "profile.jsonl"))
    rss = read_jsonl(os.path.join(args.dir, "rss.jsonl"))
    engine_checks = {c["engine"]: c for c in read_jsonl(os.path.join(args.dir, "checks.jsonl"))}
    versions = read_json(os.path.join(args.dir, "versions.json"))
    agg, errors = aggregate(timing)
    peak = {p["threads"]: p["gflops"] for p in probes}
    flop = gflop_per_image(profiles)
    threads_list = sorted({k[0] for k in agg})
    top_t = max(threads_list) if threads_list else None
    machine = machine_info(args.build_dir)
    tinfo = torch_info()
    iters = {int(b): (int(w), int(i)) for b, w, i in (x.split(":") for x in args.iters.split(","))}
    batches_run = {k[1] for k in agg}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    L = []
    L.append("# strata vs PyTorch, OpenVINO, ONNX Runtime and ncnn on CPU: ResNet-18, fp32, 224x224")
    L.append("")
    if args.quick:
        L.append("> **QUICK CHECK RUN (`benchmarks/run.sh --quick`)**: %d round, timed calls per run: %s, on a "
                 "machine that was not quiet. These numbers only show that the script works end to end; they are "
                 "**not** the benchmark's results. The full run is `benchmarks/run.sh` on a quiet machine." % (
                     args.rounds, ", ".join("%d at batch %d" % (iters[b][1], b) for b in sorted(batches_run))))
        L.append("")
    L.append("Generated by `benchmarks/report.py` from one run of `benchmarks/run.sh` (raw JSON lines in "
             "`%s/`)." % os.path.relpath(args.dir))
    L.append("")
    L.append("## Run")
    L.append("")
    L.append("- Date: %s; wall time of the run: %d min %d s" % (now, args.elapsed_s // 60, args.elapsed_s % 60))
    L.append("- Command: `%s`" % args.command)
    L.append("- Commit: `%s`" % git_info())
    L.append("- Machine: %s; %s vCPU(s) (hypervisor: %s); %s; memory %s" % (
        machine["cpu"], machine["nproc"], machine["hypervisor"], machine["caches"], machine["memory"]))
    L.append("- OS: %s; compiler: %s; strata build: %s" % (machine["os"], machine["compiler"], machine["build"]))
    L.append("- CPU model name (lscpu): %s; `nproc`: %s; flags: `%s`" % (
        machine["model_name"], machine["nproc"], machine["flags"]))
    L.append("- PyTorch %s, torchvision %s (PyPI, in `.venv`), oneDNN %s, parallel backend %s, Python %s" % (
        tinfo["torch"], tinfo["torchvision"], tinfo["onednn"], tinfo.get("parallel", "?"), tinfo.get("python", "?")))
    if versions and (engine_checks or any(k[3] in PEERS for k in agg)):
        L.append("- Peers (PyPI, in `.venv`, pinned in `benchmarks/requirements.txt`): %s" % ", ".join(
            "%s %s" % (pkg, versions[pkg]) for pkg in ("onnxruntime", "openvino", "ncnn", "onnx", "pnnx", "numpy")
            if versions.get(pkg)))
    if args.loadavg_start:
        L.append("- Load average (1, 5, 15 min) at start: %s; at the end: %s" % (
            args.loadavg_start, " ".join(machine["loadavg"])))
    for p in probes:
        L.append("- fp32 FMA peak (`benchmarks/fma_probe`, %s, best of %d reps): **%.1f GFLOP/s on %d thread(s)** "
                 "(%.1f per thread)" % (p["isa"], p["reps"], p["gflops"], p["threads"], p["gflops_per_thread"]))
    one = peak.get(1)
    for t, g in sorted(peak.items()):
        if one and t > 1 and g < 0.8 * t * one:
            L.append("- **Warning:** the probe on %d threads reached only %.2fx the 1-thread figure: other work "
                     "was running on the cores during the probe (and probably during the run), so shares of "
                     "peak at %d threads are overstated and times are unreliable." % (t, g / one, t))
    L.append("")
    L.append("## Protocol")
    L.append("")
    L.append("- Same work for every engine: fp32 (except OpenVINO's default precision, labelled), input "
             "`[batch, 3, 224, 224]` filled with 0.5, the same weights (torchvision's initialisation, "
             "`torch.manual_seed(0)`, saved with `torch.save(state_dict)` for PyTorch, converted by "
             "`tools/export_torchvision.py` to safetensors for strata and exported by `benchmarks/peers.py` for "
             "the peers), `model.eval()` and `torch.inference_mode()` on the PyTorch side.")
    L.append("- Threads pinned the same way for every engine: each process runs under `taskset` on the same T "
             "logical CPUs, one per physical core, and is told T threads (`--threads`, `torch.set_num_threads`, "
             "ONNX Runtime's `intra_op_num_threads`, OpenVINO's `INFERENCE_NUM_THREADS`, ncnn's `num_threads`); "
             "`OMP_PROC_BIND=close OMP_PLACES=cores` binds the GNU OpenMP engines' threads (strata, PyTorch, "
             "ncnn); unpinned threads on this VM sometimes share one vCPU.")
    L.append("- Each measurement is a fresh process: `strata bench`, `benchmarks/torch_bench.py` or "
             "`benchmarks/peers.py bench`. Per batch size (warm-up calls, timed calls) per round: %s. %d round(s); "
             "in each round the runs of a configuration follow each other (strata, PyTorch eager NCHW, eager "
             "channels_last, best, then ONNX Runtime, OpenVINO f32, OpenVINO default, ncnn), so the engines "
             "alternate through the run. Reported: the median of the round medians, the minimum over all timed "
             "calls, images/s = batch / median." % (
                 ", ".join("batch %d: (%d, %d)" % (b, w, i) for b, (w, i) in sorted(iters.items())
                           if b in batches_run), args.rounds))
    L.append("- PyTorch's best CPU path is `torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m)))`; "
             "its preparation is not timed as inference (see `prepare_ms` below). channels_last converts the "
             "model and the input once, outside the timing.")
    L.append("- Speedup = PyTorch's median time / strata's median time: above 1, strata is faster.")
    L.append("")
    if engine_checks or any(k[3] in PEERS for k in agg):
        peers_section(L, agg, engine_checks, versions, threads_list, tinfo)

    # ---- main tables
    L.append("## strata vs PyTorch's three paths")
    L.append("")
    for t in threads_list:
        pk = peak.get(t)
        L.append("### %d thread%s (fp32 peak %s GFLOP/s)" % (t, "" if t == 1 else "s", fmt(pk)))
        L.append("")
        L.append("| model | batch | strata | PyTorch eager NCHW | eager channels_last | best (jit) | speedup vs eager "
                 "| vs channels_last | vs best | strata % of peak | best % of peak |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for layers in [FULL, "layer1:feat1,layer3:feat2"]:
            for b in sorted({k[1] for k in agg if k[0] == t}):
                row = {p: agg.get((t, b, layers, p)) for p in PATHS}
                if not any(row.values()):
                    continue

                def cell(r):
                    if r is None:
                        return "failed"
                    if b == 1:
                        return "%.2f ms (min %.2f)" % (r["median_ms"], r["min_ms"])
                    return "%.1f img/s (%.0f ms)" % (r["images_per_s"], r["median_ms"])

                def speed(p):
                    s, o = row["strata"], row[p]
                    return "%.2fx" % (o["median_ms"] / s["median_ms"]) if s and o else "n/a"

                def share(p):
                    r, g = row[p], flop.get(layers)
                    if not r or not g or not pk:
                        return "n/a"
                    return "%.0f%%" % (100.0 * g * r["images_per_s"] / pk)

                L.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    MODEL_TITLES.get(layers, layers), b, cell(row["strata"]), cell(row["eager"]),
                    cell(row["channels_last"]), cell(row["best"]), speed("eager"), speed("channels_last"),
                    speed("best"), share("strata"), share("best")))
        L.append("")
    if flop:
        L.append("Work per image (from the profile's shape pass): full model %.3f GFLOP, seed getter %.3f GFLOP "
                 "(2 x multiply-adds of convolutions and fc)." % (flop.get(FULL, 0), flop.get("layer1:feat1,layer3:feat2") or 0))
        L.append("")
    if errors:
        L.append("Failed runs: " + "; ".join("round %d %s %s: %s" % (e["round"], e["side"], e["path"], e["error"])
                                            for e in errors))
        L.append("")

    # ---- cold costs
    L.append("## Loading, first call, memory")
    L.append("")
    if top_t is not None:
        L.append("%d thread%s, batch 1, full model; medians over rounds. Load = `strata::load` + `load_state_dict` "
                 "(safetensors, memory-mapped) vs `torch.load` + `load_state_dict` (.pth), model already "
                 "constructed, file in the page cache. First call = the first forward call of the process "
                 "(strata packs its weights there; PyTorch creates its oneDNN primitives / runs the JIT's "
                 "profiling pass)." % (top_t, "" if top_t == 1 else "s"))
        L.append("")
        peers_run = [e for e in PEERS if (top_t, 1, FULL, e) in agg]
        if peers_run:
            L.append("For the peers, load = reading the exported model and building the engine's runnable form "
                     "(ONNX Runtime session, OpenVINO `compile_model`, ncnn `load_param` + `load_model`), the "
                     "engine's Python module already imported.")
            L.append("")
        cols = PATHS + peers_run
        L.append("| | strata | PyTorch eager NCHW | eager channels_last | best (jit) |%s" % "".join(
            " %s |" % PEER_TITLES[e] for e in peers_run))
        L.append("|---|---|---|---|---|%s" % ("---|" * len(peers_run)))
        row = {p: agg.get((top_t, 1, FULL, p)) for p in cols}
        for field, title in [("load_ms", "weight load (ms)"), ("prepare_ms", "path preparation (ms)"),
                             ("first_ms", "first inference (ms)")]:
            L.append("| %s | %s |" % (title, " | ".join(
                fmt(row[p].get(field) if row[p] else None, 1) if not (p == "strata" and field == "prepare_ms")
                else "(in first call)" for p in cols)))
    mem = defaultdict(list)
    for r in rss:
        if r.get("peak_rss_kb") is not None:
            mem[(r["side"], r["layers"])].append(r["peak_rss_kb"] * 1024 / 1e6)
    mem_med = {k: statistics.median(v) for k, v in mem.items()}
    L.append("")
    L.append("Peak resident memory of the whole process (`/usr/bin/time -f %%M`, MB = 10^6 bytes, median of %d), "
             "batch 1, the input read from the same `x.npy`: `strata features --weights resnet18.safetensors` vs "
             "`benchmarks/torch_features.py --weights resnet18.pth` (torch.load + model + one forward; the "
             "PyPI wheel's CUDA libraries are loaded by `import torch` even on CPU). `features` packs weights "
             "for the direct kernel only (`--packing lean`, its default: one call, so Winograd's weight "
             "transform would cost more than it saves); `--packing fast` also keeps the Winograd-transformed "
             "3x3 weights, as `strata bench` and a long-running process do." % args.rss_reps)
    L.append("")
    L.append("| request | strata features | strata features --packing fast | PyTorch |")
    L.append("|---|---|---|---|")
    for layers, title in [("fc:logits", "full model (`--layers fc:logits`)"),
                          ("layer1:feat1,layer3:feat2", "seed getter (layer1 + layer3)"),
                          ("import only", "baseline: `import torch, torchvision` only")]:
        L.append("| %s | %s | %s | %s MB |" % (
            title, *("-" if layers == "import only" else fmt(mem_med.get((side, layers)), 1) + " MB"
                     for side in ("strata", "strata-fast")),
            fmt(mem_med.get(("pytorch", layers)), 1)))
    L.append("")

    # ---- targets
    checks = []
    if top_t is not None:
        s1, b1, e1 = (agg.get((top_t, 1, FULL, p)) for p in ("strata", "best", "eager"))
        s8, b8 = (agg.get((top_t, 8, FULL, p)) for p in ("strata", "best"))
        if s1 and b1:
            v = s1["median_ms"] / b1["median_ms"]
            checks.append(("batch 1 latency <= %.1fx PyTorch best" % LATENCY_VS_BEST, "%.2fx (%.2f vs %.2f ms)" % (
                v, s1["median_ms"], b1["median_ms"]), v <= LATENCY_VS_BEST,
                "strata needs %.0f%% less time" % (100 * (1 - LATENCY_VS_BEST / v))))
        if s1 and e1:
            v = s1["median_ms"] / e1["median_ms"]
            checks.append(("batch 1 latency <= %.1fx PyTorch eager (NCHW)" % LATENCY_VS_EAGER,
                           "%.2fx (%.2f vs %.2f ms)" % (v, s1["median_ms"], e1["median_ms"]), v <= LATENCY_VS_EAGER,
                           "strata needs %.0f%% less time" % (100 * (1 - LATENCY_VS_EAGER / v))))
        if s8 and b8:
            v = s8["images_per_s"] / b8["images_per_s"]
            checks.append(("batch 8 throughput >= %.2fx PyTorch best" % THROUGHPUT_VS_BEST,
                           "%.2fx (%.1f vs %.1f img/s)" % (v, s8["images_per_s"], b8["images_per_s"]),
                           v >= THROUGHPUT_VS_BEST,
                           "strata needs %.0f%% more throughput" % (100 * (THROUGHPUT_VS_BEST / v - 1))))
    m = mem_med.get(("strata", "fc:logits"))
    if m is not None:
        checks.append(("peak RSS of `strata features`, full model, batch 1 <= %.0f MB" % RSS_LIMIT_MB,
                       "%.1f MB (PyTorch: %s MB)" % (m, fmt(mem_med.get(("pytorch", "fc:logits")), 1)),
                       m <= RSS_LIMIT_MB, "%.1f MB over" % (m - RSS_LIMIT_MB)))
    top_profile = next((p for p in profiles if p["threads"] == top_t and p["batch"] == 1 and p.get("profile")), None)
    if top_profile:
        rows = {r["child"]: r for r in top_profile["profile"]}
        whole = top_profile["profile"][-1]["truncated_median_ms"]
        if "layer1" in rows and whole > 0:
            v = rows["layer1"]["truncated_median_ms"] / whole
            checks.append(("getter truncated after layer1 <= %.0f%% of the full model's time" % (100 * LAYER1_SHARE),
                           "%.0f%% (%.2f of %.2f ms)" % (100 * v, rows["layer1"]["truncated_median_ms"], whole),
                           v <= LAYER1_SHARE, "%.0f points over" % (100 * (v - LAYER1_SHARE))))
    L.append("## Targets (%s thread%s, fp32)" % (top_t, "" if top_t == 1 else "s"))
    L.append("")
    L.append("| target | measured | result |")
    L.append("|---|---|---|")
    for name, measured, ok, _ in checks:
        L.append("| %s | %s | %s |" % (name, measured, "PASS" if ok else "**FAIL**"))
    L.append("")

    # ---- profile
    L.append("## Where strata's time goes (per-child profile)")
    L.append("")
    L.append("`strata bench --profile`: the model truncated after each direct child (an IntermediateLayerGetter "
             "returning that child), median of the same number of calls each; a child's time is the difference of "
             "consecutive medians (so it includes what stopping there changes: a BatchNorm or ReLU fused into the "
             "convolution when the model continues costs its own pass when the model stops there, and small "
             "children can come out slightly negative). GFLOP from the module tree and a shape pass, counted as a "
             "direct convolution would do them (a Winograd kernel does fewer multiplies, so its share can pass "
             "100%); % of peak against the FMA probe at the same thread count.")
    L.append("")
    for p in profiles:
        if not p.get("profile"):
            continue
        L.append("### %d thread%s, batch %d (%d calls per truncation; full model forward in the same process: "
                 "%.2f ms)" % (p["threads"], "" if p["threads"] == 1 else "s", p["batch"], p["iters"], p["median_ms"]))
        L.append("")
        L.append("| child | type | output | truncated here (ms) | child (ms) | share | GFLOP | GFLOP/s | % of peak |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for r in p["profile"]:
            L.append("| %s | %s | %s | %.2f | %.2f | %.1f%% | %.3f | %s | %s |" % (
                r["child"], r["type"], "x".join(str(d) for d in r["out_shape"]), r["truncated_median_ms"], r["ms"],
                100 * r["share"], r["gflop"], fmt(r["gflops"], 1),
                "n/a" if r["peak_share"] is None else "%.0f%%" % (100 * r["peak_share"])))
        total_gflop = sum(r["gflop"] for r in p["profile"])
        whole = p["profile"][-1]["truncated_median_ms"]
        pk = p.get("peak_gflops")
        L.append("| **total** | | | %.2f | | 100%% | %.3f | %.1f | %s |" % (
            whole, total_gflop, total_gflop / (whole * 1e-3),
            "%.0f%%" % (100 * total_gflop / (whole * 1e-3) / pk) if pk else "n/a"))
        L.append("")

    # ---- closing note
    L.append("## Closing note")
    L.append("")
    failed = [c for c in checks if not c[2]]
    if args.quick:
        L.append("Quick check run: the PASS/FAIL lines above are computed the same way as in a full run, but from "
                 "too few calls on a busy machine to mean anything.")
        L.append("")
    if not checks:
        L.append("No target could be checked (see the failed runs above).")
    elif not failed:
        L.append("All targets met in this run.")
    else:
        L.append("Out of reach in this run:")
        L.append("")
        for name, measured, _, gap in failed:
            L.append("- %s: measured %s; %s." % (name, measured, gap))
        if top_profile:
            rows = top_profile["profile"]
            whole = rows[-1]["truncated_median_ms"]
            heavy = sorted((r for r in rows if r["gflop"] > 0.01 and r["ms"] > 0), key=lambda r: -r["ms"])
            light = [r for r in rows if r["gflop"] <= 0.01]
            L.append("")
            L.append("Where the time goes (%d threads, batch 1, %.2f ms): %s; the children without convolutions (%s) "
                     "add %.2f ms. The whole forward runs at %.0f%% of the FMA peak." % (
                         top_profile["threads"], whole,
                         "; ".join("%s %.2f ms (%.0f%%) at %s of peak" % (
                             r["child"], r["ms"], 100 * r["share"],
                             "n/a" if r["peak_share"] is None else "%.0f%%" % (100 * r["peak_share"])) for r in heavy),
                         ", ".join(r["child"] for r in light), sum(r["ms"] for r in light),
                         100 * sum(r["gflop"] for r in rows) / (whole * 1e-3) / top_profile["peak_gflops"]
                         if top_profile.get("peak_gflops") else float("nan")))
    L.append("")
    L.append("![strata vs PyTorch](results.png)")
    L.append("")
    with open(args.md, "w") as f:
        f.write("\n".join(L))

    chart(args, agg, threads_list, profiles, top_t)


CHART_ENGINES = ["strata", "ov-f32", "ort", "ncnn", "pytorch-best", "ov-default"]
CHART_COLORS = {"strata": "#d62728", "ov-f32": "#9467bd", "ort": "#2ca02c", "ncnn": "#ff7f0e",
                "pytorch-best": "#1f77b4", "ov-default": "#c5b0d5"}
CHART_LABELS = {"strata": "strata", "pytorch-best": "PyTorch best path", **PEER_TITLES}


def chart_result(agg, t, b, layers, engine):
    if engine == "pytorch-best":
        return best_pytorch(agg, t, b, layers)[1]
    return agg.get((t, b, layers, engine))


def chart(args, agg, threads_list, profiles, top_t):
    """Images/s of every engine (rows: full model, seed getter; a column per thread count), then
    strata's per-child profile and each engine's time relative to strata's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof = next((p for p in profiles if p["threads"] == top_t and p["batch"] == 1 and p.get("profile")), None)
    engines = [e for e in CHART_ENGINES
               if any(chart_result(agg, k[0], k[1], k[2], e) for k in agg)]
    ncols = max(len(threads_list), 2 if prof else 1)
    nrows = 3 if prof else 2
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.5 * nrows), squeeze=False)
    width = 0.8 / max(len(engines), 1)
    for row, (layers, title) in enumerate([(FULL, "ResNet-18 full"), ("layer1:feat1,layer3:feat2", "seed getter")]):
        for col in range(ncols):
            ax = axes[row][col]
            if col >= len(threads_list):
                ax.axis("off")
                continue
            t = threads_list[col]
            bs = sorted({k[1] for k in agg if k[0] == t and k[2] == layers})
            for i, e in enumerate(engines):
                vals = [(chart_result(agg, t, b, layers, e) or {}).get("images_per_s", 0) for b in bs]
                ax.bar([x + (i - (len(engines) - 1) / 2) * width for x in range(len(bs))], vals, width,
                       label=CHART_LABELS[e], color=CHART_COLORS[e])
            ax.set_xticks(range(len(bs)))
            ax.set_xticklabels(["batch %d" % b for b in bs])
            ax.set_ylabel("images/s (higher is better)")
            ax.set_title("%s, fp32 224x224, %d thread%s" % (title, t, "" if t == 1 else "s"))
            ax.legend(fontsize=7)
    if prof:
        ax = axes[2][0]
        rows = prof["profile"]
        ax.bar([r["child"] for r in rows], [r["ms"] for r in rows], color="#d62728")
        for i, r in enumerate(rows):
            if r["peak_share"] is not None:
                ax.annotate("%.0f%%\npeak" % (100 * r["peak_share"]), (i, max(r["ms"], 0)), ha="center",
                            va="bottom", fontsize=7)
        ax.set_ylabel("ms per child (strata)")
        ax.set_title("strata per-child profile, %d threads, batch 1" % prof["threads"])
        ax.tick_params(axis="x", labelsize=8, rotation=45)
        ax.margins(y=0.2)
        ratio_panel(axes[2][1], agg, top_t, [e for e in engines if e != "strata"])
        for extra in axes[2][2:]:
            extra.axis("off")
    if args.quick:
        fig.suptitle("QUICK CHECK RUN (--quick): not final numbers", color="#d62728")
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)


def ratio_panel(ax, agg, t, engines):
    """Each engine's median time / strata's at `t` threads, per configuration (> 1: strata faster)."""
    configs = [(layers, b) for layers in [FULL, "layer1:feat1,layer3:feat2"]
               for b in sorted({k[1] for k in agg if k[0] == t})]
    width = 0.8 / max(len(engines), 1)
    for i, e in enumerate(engines):
        vals = []
        for layers, b in configs:
            s, o = agg.get((t, b, layers, "strata")), chart_result(agg, t, b, layers, e)
            vals.append(o["median_ms"] / s["median_ms"] if s and o else 0)
        ax.bar([x + (i - (len(engines) - 1) / 2) * width for x in range(len(configs))], vals, width,
               label=CHART_LABELS[e], color=CHART_COLORS[e])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels(["%s\nbatch %d" % ("full" if layers == FULL else "seed getter", b) for layers, b in configs],
                       fontsize=8)
    ax.set_ylabel("engine time / strata time (> 1: strata faster)")
    ax.set_title("relative to strata, %d threads" % t)
    ax.legend(fontsize=7)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--quick", type=int, default=0)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--iters", required=True, help="batch:warmup:iters,...")
    ap.add_argument("--rss-reps", type=int, default=1)
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--elapsed-s", type=int, default=0)
    ap.add_argument("--loadavg-start", default="")
    ap.add_argument("--md", required=True)
    ap.add_argument("--png", required=True)
    render(ap.parse_args())


if __name__ == "__main__":
    main()
