#!/usr/bin/env bash
# Create (or complete) the project's virtual environment in .venv/.
#
# Installs the pinned OpenMMLab 2.x stack that works together on today's machines
# (see docs/en/get_started.md, "Installation"; the docs tools are pinned in
# requirements.txt too). mmcv 2.1.0 has no wheel for current torch, so it is built
# from source once, with its compiled ops, and the wheel is cached outside the repo under
# $MMPETL_WHEEL_CACHE (default ~/.cache/mmpetl/wheels), keyed by mmcv, torch and Python
# versions. A second run reuses the cached wheel and finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE="${MMPETL_WHEEL_CACHE:-$HOME/.cache/mmpetl/wheels}"
STAMP="$VENV/.mmpetl-installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$ROOT/tools/setup_env.sh" ] && [ "$STAMP" -nt "$ROOT/setup.py" ] \
    && [ "$STAMP" -nt "$ROOT/requirements.txt" ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

echo "[setup_env] torch $TORCH_VERSION, torchvision $TORCHVISION_VERSION and build tools"
"${PIP[@]}" --upgrade pip
# setuptools<82: mmcv's setup.py and mmengine's `_base_ = 'pkg::...'` resolution import
# pkg_resources, which setuptools 82 removed.
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    "setuptools>=64,<82" wheel ninja numpy

PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PYTAG"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    echo "[setup_env] building mmcv $MMCV_VERSION with ops (once; about 12 minutes on 2 cores)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
        --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA="${FORCE_CUDA:-0}" \
        "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps \
        -w "$BUILD/dist" "$BUILD/mmcv-$MMCV_VERSION"
    mkdir -p "$WHEEL_DIR"
    mv "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR/"
fi

echo "[setup_env] mmcv (cached wheel), OpenMMLab toolboxes, test and docs tools"
"${PIP[@]}" "$WHEEL_DIR"/mmcv-*.whl
"${PIP[@]}" -r "$ROOT/requirements.txt"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
touch "$STAMP"
echo "[setup_env] ready: $VENV"
