#!/usr/bin/env bash
# The Ray stage (CI runs it after scripts/test_python.sh, whose venv and installed strata it uses):
# installs ray[data] (pinned; pyarrow and pandas come with it) into build-python/venv, keeping the
# numpy the venv already has, and runs examples/ray/test_ray_recipe.py: a two-node Ray cluster on
# 127.0.0.1 (one CPU each) extracts features of 240 generated images on 2 actors, bit-equal to
# strata in one process, also with an actor killed mid-run. Every Ray process it starts lives
# under its own temp dir and is stopped at the end, pass or fail (never `ray stop`, which would
# stop other Ray processes of the user). Prints its duration.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage_start=$SECONDS
venv="${STRATA_PY_VENV:-build-python/venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import strata" 2>/dev/null; then
  echo "ray stage: no strata in $venv: run scripts/test_python.sh first" >&2
  exit 1
fi
export RAY_USAGE_STATS_ENABLED=0
install_start=$SECONDS
# ray[data] would upgrade numpy to 2.x in the venv, over the numpy strata was tested with.
constraints="$(mktemp)"
temp="$(mktemp -d /tmp/srXXXXXX)"   # short: Ray's unix sockets live under it
cleanup() {
  # Any process still naming our temp dir is one of ours (the test stops the nodes itself).
  for pid in $(grep -l -- "$temp" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$pid" != "$$" ] && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$temp" "$constraints"
}
trap cleanup EXIT
# pyarrow 22 and later import only with numpy 2: keep 21 where the venv has numpy 1 (Debian 12's).
"$venv/bin/python" -c "import numpy; v = numpy.__version__; print('numpy==' + v)
if int(v.split('.')[0]) < 2: print('pyarrow<22')" > "$constraints"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "ray[data]==2.60.0"
echo "ray stage: pip install ray[data] took $((SECONDS - install_start)) s"
"$venv/bin/python" -c "import ray, ray.data, pyarrow.parquet, PIL" # a failed import fails the stage

# HOME in the temp dir too: a local ray.init() (examples/ray/bench.py, any other Ray user of this
# account) leaves ~/.ray/auth_token, which makes `ray start` demand a token its driver lacks.
mkdir -p "$temp/home"
HOME="$temp/home" STRATA_RAY_TEMP="$temp" timeout -k 10 900 \
  "$venv/bin/python" -m pytest examples/ray/test_ray_recipe.py -q -rs -s -p no:cacheprovider
echo "ray stage: $((SECONDS - stage_start)) s"
