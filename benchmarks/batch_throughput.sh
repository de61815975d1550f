#!/usr/bin/env bash
# Batch mode's throughput against `strata bench` at the same batch and threads (issue 15 item 3:
# `features --input DIR` must reach at least 80% of bench's images/s).
#
#   benchmarks/batch_throughput.sh [--strata build/apps/strata] [--dir /tmp/strata_batch_photos]
#                                  [--count 512] [--batch 8] [--threads 2] [--layers layer1,layer4]
#
# 1. Makes --count JPEGs (once; reused while the folder holds them) from the committed photos
#    (tests/fixtures/images/) at varied sizes, longer side 300 to 1200 px, quality 75 to 95, with
#    Debian's python3-pil (/usr/bin/python3).
# 2. Runs `strata bench` (a fixed 224x224 input, forward calls only: the ceiling; images/s from
#    its median call and from its mean one), then
#    `strata features --input DIR --out OUT` (decode, preprocess to 224x224, forward, write shards;
#    its summary line's images/s is measured from the first image to the last shard written), then
#    bench again, all with the same --batch, --threads and --layers, and the default packing
#    (fast) of both. Prints both figures, the ratio to the mean of the two bench runs, the CPU time
#    of each command per image and the load average before and after (the figures are only
#    comparable on a quiet machine; CPU time per image is less sensitive to other load).
set -euo pipefail
cd "$(dirname "$0")/.."
strata=build/apps/strata dir=/tmp/strata_batch_photos count=512 batch=8 threads=2 layers=layer1,layer4
while [ $# -gt 0 ]; do
  case "$1" in
    --strata) strata=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$strata" ] || { echo "no strata binary at $strata (build first, or pass --strata)" >&2; exit 2; }

have=$( (find "$dir" -maxdepth 1 -name 'photo-*.jpg' 2>/dev/null || true) | wc -l)
if [ "$have" -ne "$count" ]; then
  rm -rf "$dir" && mkdir -p "$dir"
  /usr/bin/python3 - "$dir" "$count" <<'PY'
import glob, random, sys
from PIL import Image
out, count = sys.argv[1], int(sys.argv[2])
sources = [Image.open(p).convert("RGB") for p in sorted(glob.glob("tests/fixtures/images/*"))
           if p.endswith((".jpg", ".png")) and "refuse" not in p]
rng = random.Random(2024)
for i in range(count):
    img = sources[i % len(sources)]
    longer = rng.randint(300, 1200)
    scale = longer / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img.resize(size, Image.BICUBIC).save(f"{out}/photo-{i:04d}.jpg", quality=rng.randint(75, 95))
PY
fi
echo "photos: $(find "$dir" -maxdepth 1 -name 'photo-*.jpg' | wc -l) JPEGs in $dir ($(du -sh "$dir" | cut -f1))"
echo "cpu: $("$strata" --version | tail -1); nproc $(nproc)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# user+sys CPU seconds of a command (GNU time's format when present, else bash's times).
cpu_of() { awk '/^cpu /{print $2 + $3}' "$1"; }
timed() {  # timed LOG cmd...: runs cmd, writes "cpu USER SYS" to LOG
  local log=$1; shift
  /usr/bin/env bash -c 'TIMEFORMAT="cpu %U %S"; time "$@"' _ "$@" 2>"$log.err" >"$log.out" || { cat "$log.err" >&2; exit 1; }
  grep '^cpu ' "$log.err" | tail -1 >"$log"
}
timed "$tmp/b1" "$strata" bench --batch "$batch" --threads "$threads" --layers "$layers" --warmup 2 --iters 20
timed "$tmp/f" "$strata" features --input "$dir" --out "$tmp/out" --batch "$batch" --threads "$threads" --layers "$layers"
timed "$tmp/b2" "$strata" bench --batch "$batch" --threads "$threads" --layers "$layers" --warmup 2 --iters 20
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

bench1=$(grep -o '"images_per_s":[0-9.e+-]*' "$tmp/b1.out" | cut -d: -f2)
bench2=$(grep -o '"images_per_s":[0-9.e+-]*' "$tmp/b2.out" | cut -d: -f2)
mean1=$(grep -o '"mean_ms":[0-9.e+-]*' "$tmp/b1.out" | cut -d: -f2)
mean2=$(grep -o '"mean_ms":[0-9.e+-]*' "$tmp/b2.out" | cut -d: -f2)
summary=$(grep '^features: ' "$tmp/f.err")
feat=$(echo "$summary" | sed -E 's/.* ([0-9.]+) images\/s.*/\1/')
images=$(echo "$summary" | sed -E 's/^features: ([0-9]+) images.*/\1/')
iters=$(( (20 + 2) * batch ))  # bench's images, warm-up included, for its CPU time per image
echo "$summary"
awk -v b1="$bench1" -v b2="$bench2" -v m1="$mean1" -v m2="$mean2" -v f="$feat" -v n="$images" -v cb1="$(cpu_of "$tmp/b1")" \
    -v cb2="$(cpu_of "$tmp/b2")" -v cf="$(cpu_of "$tmp/f")" -v bi="$iters" -v batch="$batch" -v threads="$threads" \
    -v layers="$layers" 'BEGIN {
  b = (b1 + b2) / 2
  printf "batch %d, threads %d, layers %s\n", batch, threads, layers
  bm = (1000 * batch / m1 + 1000 * batch / m2) / 2
  cb = 1000 * (cb1 + cb2) / (2 * bi); cfi = 1000 * cf / n
  printf "bench:            %.1f images/s from the median call (runs: %.1f, %.1f), %.1f from the mean call; %.1f ms CPU per image (model set-up and warm-up included)\n", b, b1, b2, bm, cb
  printf "features (batch): %.1f images/s (%d images, first image to last shard written); %.1f ms CPU per image (decoding, writing and model set-up included)\n", f, n, cfi
  printf "ratio:            %.1f%% of the bench median, %.1f%% of the bench mean, %.1f%% by CPU time per image (target: at least 80%%)\n", 100 * f / b, 100 * f / bm, 100 * cb / cfi
}'
