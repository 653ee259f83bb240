#!/usr/bin/env bash
# The kernel and precision tests as an AVX2-only CPU (AMD Zen 3: no AVX-512, no bf16) runs them:
# oneDNN capped at AVX2, ATen's kernels at AVX2 and the compiled extension built for AVX2 (its
# own cached library, "_avx2"; the first build takes minutes). Green on an AVX-512 machine then
# means green on AVX2 (issue 19). Runs after `make test`, in its .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
# the settings must really be in effect, or this step would only repeat `make test`
.venv/bin/python - <<'PY'
import torch
from rnnkit.engine import compiled
assert torch.backends.cpu.get_cpu_capability() == "AVX2", torch.backends.cpu.get_cpu_capability()
assert not torch.ops.mkldnn._is_mkldnn_bf16_supported(), "oneDNN still offers bf16 (AVX-512)"
assert compiled.arch_flags()[1] in ("_avx2", ""), compiled.arch_flags()
PY
# whole files where the vector code or oneDNN's choice differs between ISAs; of the kernel files
# the float32 comparisons (float64 adds no AVX2-only code) and the refusals: about two minutes
.venv/bin/pytest -q -p no:cacheprovider tests/training/test_precision.py tests/engine/test_cpu_features.py \
    tests/engine/test_compiled_tiles.py tests/engine/test_native_multi.py
.venv/bin/pytest -q -p no:cacheprovider tests/engine/test_kernels.py tests/engine/test_compiled_kernel.py \
    -k "float32 or inference_loop or native_matches or parallel_matches or explicit"
