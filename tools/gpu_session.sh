#!/usr/bin/env bash
# The GPU checks of bionas_bench in one prepared script, for a session that is lent a
# GPU machine (the workplace's `device` tool: one H100/H200, torch preinstalled, no
# package index, ~15 minutes of device time in all, at most 10 minutes a command).
#
#   bash tools/gpu_session.sh fetch    # here: wheels of the packages the GPU image lacks -> .whl/
#   bash tools/gpu_session.sh run      # there: tests, farm benchmark, paper-scale store -> $OUT
#
# `fetch` runs on the CPU machine: it downloads, for CPython 3.12 on x86-64 Linux, the
# versions installed in the current environment of every dependency the GPU image does
# not hold (zarr, dask, distributed, optuna, biopython, pyjaspar and their own needs), and
# adds .whl/ to .git/info/exclude. Then call the device tool with carry [".whl"] and the
# command `bash tools/gpu_session.sh run` (timeout_s 600).
#
# `run`, on the GPU machine, in the repository root, writing everything under $OUT:
#   1. installs the wheels into /tmp/site; prints the GPU and the package versions;
#   2. the training tests on the GPU (replicate-batched == alone on cuda, float32/64);
#   3. the farm benchmark, batched vs one model at a time, on cuda (models/s ratio);
#   4. the paper-scale store: every architecture of bionas-conv1d x 20 replicates of
#      myc-single with the default manifest, on cuda, for at most STORE_SECONDS (default
#      360 s). The store is resumable: a next call that carries .gpu/ continues it.
# $OUT gets log.txt, bench.json, info.json (store info) and myc-single.tar.gz (the store,
# to unpack into .gpu/ here; at most 16 MiB comes back per file).
# A dry run on the CPU machine checks the script itself in a few minutes (its store goes
# to $OUT/dry-run/, never into .gpu/):
#   OUT=/tmp/gpu-out DEVICE=cpu SKIP_INSTALL=1 STORE_SECONDS=30 bash tools/gpu_session.sh run
set -euo pipefail

PACKAGES="zarr numcodecs google-crc32c donfig dask distributed partd locket zict tblib tornado
optuna alembic sqlalchemy colorlog mako biopython pyjaspar"

fetch() {
    local pins=()
    for name in $PACKAGES; do
        version=$(python -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
        if [ -z "$version" ]; then
            echo "gpu_session fetch: $name is not installed here; install bionas-bench first" >&2
            exit 1
        fi
        pins+=("$name==$version")
    done
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .whl "${pins[@]}"
    slim_pyjaspar
    du -sh .whl
}

# pyjaspar's wheel holds every JASPAR release (57 MB); keep the one bionas_bench pins, so
# that all the wheels fit the device tool's 64 MiB of carried files.
slim_pyjaspar() {
    python - <<'PY'
import glob, zipfile
from bionas_bench.data.motifs import DEFAULT_JASPAR_RELEASE as keep
(path,) = glob.glob(".whl/pyjaspar-*.whl")
with zipfile.ZipFile(path) as src:
    items = [(i, src.read(i)) for i in src.infolist()]
drop = {i.filename for i, _ in items if i.filename.endswith(".sqlite") and keep not in i.filename}
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
    for info, data in items:
        if info.filename in drop:
            continue
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(line for line in lines if line.split(",")[0] not in drop).encode()
        dst.writestr(info, data)
print(f"pyjaspar: kept {keep}, dropped {len(drop)} other releases")
PY
}

run() {
    : "${OUT:?run on the device machine, where OUT is set}"
    local seconds=${STORE_SECONDS:-360} device=${DEVICE:-cuda}
    # the paper-scale store lives in .gpu/ (carried from call to call); a dry run on
    # another device trains into $OUT, so that it never mixes into the GPU store
    local stores=.gpu
    [ "$device" = cuda ] || stores="$OUT/dry-run"
    mkdir -p "$OUT" "$stores"
    exec > >(tee "$OUT/log.txt") 2>&1
    if [ -z "${SKIP_INSTALL:-}" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    fi
    export PYTHONUNBUFFERED=1
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    fi
    python3 -c 'import torch, numba, zarr, dask; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
        "numba", numba.__version__, "zarr", zarr.__version__, "dask", dask.__version__)'

    echo "== training tests (on the GPU where there is one)"
    python3 -m pytest -q -p no:cacheprovider tests/test_train_batched.py tests/test_train_ops.py \
        tests/test_train_memory.py || true

    echo "== farm benchmark on $device"
    BIONAS_BENCH_DEVICE=$device python3 -m pytest -q -s -p no:cacheprovider tests/benchmarks/test_bench_farm.py \
        --benchmark-enable --benchmark-json "$OUT/bench.json" || true

    echo "== paper-scale store (myc-single x 20 replicates, default manifest) on $device, up to $seconds s"
    local start=$SECONDS
    timeout "$seconds" python3 -m bionas_bench train --space bionas-conv1d --dataset myc-single \
        --training default --out "$stores/myc-single.zarr" --device "$device" --scheduler none --quiet || true
    echo "store: $((SECONDS - start)) s of training this call"
    python3 -m bionas_bench store info "$stores/myc-single.zarr" --json > "$OUT/info.json" || true
    tar -czf "$OUT/myc-single.tar.gz" -C "$stores" myc-single.zarr
    ls -l "$OUT"
}

case "${1:-}" in
    fetch) fetch ;;
    run) run ;;
    *) echo "usage: bash tools/gpu_session.sh fetch|run (see the comments at the top)" >&2; exit 2 ;;
esac
