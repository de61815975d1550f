#!/usr/bin/env bash
# The Python stage (CI runs it after scripts/test.sh; the C++ build and tests never need Python):
# installs the Debian packages it needs if any is missing, makes a virtual environment that sees
# Debian's numpy and pytest (--system-site-packages), `pip install ./python` into it (builds
# strata's C++ library and the extension module with scikit-build-core and pybind11, both pinned
# in python/pyproject.toml, from PyPI), and runs pytest on python/tests. No test collected
# (pytest's exit 5) fails the stage like a failed test.
#   --torch  also installs Debian's python3-torchvision (about 350 packages, 255 MB to download,
#            up to 1 GB installed), so the in-process parity tests against torchvision run
#            instead of being skipped. Without it they run wherever torch is already importable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_torch=0
for arg in "$@"; do
  case "$arg" in
    --torch) with_torch=1 ;;
    *) echo "usage: scripts/test_python.sh [--torch]" >&2; exit 2 ;;
  esac
done

stage_start=$SECONDS
packages=(build-essential cmake libeigen3-dev nlohmann-json3-dev libjpeg62-turbo-dev libpng-dev python3-venv python3-dev python3-numpy python3-pytest)
[ "$with_torch" = 1 ] && packages+=(python3-torchvision)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "python stage: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's interpreter, whatever else is first on PATH (pyenv, conda): its numpy, pytest and
# (where installed) torch are the ones the venv sees.
python="${STRATA_PYTHON_EXE:-/usr/bin/python3}"
venv="${STRATA_PY_VENV:-build-python/venv}"
[ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
install_start=$SECONDS
"$venv/bin/pip" install --quiet --disable-pip-version-check ./python
echo "python stage: pip install ./python took $((SECONDS - install_start)) s"

# From the repository root, so `import strata` is the installed package (python/strata has no
# compiled module). -rs prints each skip's reason (the torch parity tests where torch is absent).
"$venv/bin/python" -m pytest python/tests -q -rs -p no:cacheprovider
echo "python stage: $((SECONDS - stage_start)) s"
