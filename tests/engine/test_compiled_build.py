"""The compiled kernel's build (engine/compiled.py, engine/csrc): a source that does not compile is
reported, not raised; a compiler without OpenMP still builds (single-threaded); without the
extension auto falls back to fused and says why; the vector flags never exceed the CPU, and the
AVX2 build of the tiles matches the reference loop (slow: a second build)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from rnnkit.cells import LSTMCell
from rnnkit.engine import BackendError, ScanSpec, compiled, explain, scan


def test_build_failure_is_reported_not_raised(tmp_path):
    source = tmp_path / "broken.cpp"
    source.write_text("#error this source does not compile\n")
    ops, reason = compiled.build(source, str(tmp_path / "build"), name="rnnkit_broken")
    assert ops is None
    # the second attempt (without OpenMP) is the one reported; torch versions its name
    assert reason.startswith("C++ extension unavailable: RuntimeError: Error building extension "
                             "'rnnkit_broken")
    assert "this source does not compile" in reason


def test_a_compiler_without_openmp_still_builds_single_threaded(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    calls = []

    def load(**kwargs):
        calls.append(kwargs["extra_cflags"])
        if "-fopenmp" in kwargs["extra_cflags"]:
            raise RuntimeError("unsupported option '-fopenmp'")

    monkeypatch.setattr(cpp_extension, "load", load)
    ops, reason = compiled.build(compiled.SOURCE, str(tmp_path))
    assert (ops, reason) == (torch.ops.rnnkit_fused_cells, "")
    arch, _ = compiled.arch_flags()
    assert calls == [[*compiled.CFLAGS, *arch, "-fopenmp"], [*compiled.CFLAGS, *arch]]


def test_without_the_extension_auto_falls_back_to_fused_and_explains(monkeypatch):
    reason = "C++ extension unavailable: RuntimeError: no compiler"
    monkeypatch.setattr(compiled.COMPILED, "_ops", None)
    monkeypatch.setattr(compiled.COMPILED, "_reason", reason)
    cell, x = LSTMCell(3, 4, peephole="full"), torch.randn(2, 3, 3)
    assert scan(cell, x).kernel == "fused"
    spec = ScanSpec(has_mask=False, has_recurrent_mask=False, device=x.device, dtype=x.dtype,
                    batch=2, steps=3)
    assert explain(cell, spec)["compiled"] == reason
    with pytest.raises(BackendError, match=re.escape(reason)):
        scan(cell, x, backend="compiled")


# -- the build's vector flags ---------------------------------------------------------------------
@pytest.mark.parametrize("capability,avx512,avx2,expected", [
    ("AVX512", True, True, "_avx512"),
    # ATEN_CPU_CAPABILITY may name more than the CPU has: the hardware check has the last word
    ("AVX512", False, True, "_avx2"),
    ("AVX2", True, True, "_avx2"),
    ("AVX2", False, False, ""),
    ("DEFAULT", True, True, ""),
])
def test_arch_flags_never_exceed_the_cpu(monkeypatch, capability, avx512, avx2, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: avx512)
    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: avx2)
    flags, suffix = compiled.arch_flags()
    assert suffix == expected
    assert any(f.startswith("-mavx512") for f in flags) == (expected == "_avx512")
    assert ("-mavx2" in flags) == (expected != "")


CHECK_AVX2_BUILD = """
import torch
from rnnkit.cells import GRUCell, LSTMCell, SimpleCell
from rnnkit.engine import compiled, scan
assert compiled.arch_flags()[1] == "_avx2", compiled.arch_flags()
torch.manual_seed(0)
for cell in (SimpleCell(5, 33), LSTMCell(5, 33), GRUCell(5, 9)):
    cell = cell.double()
    x = torch.randn(13, 6, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(13, 6) > 0.3
    runs = {}
    for backend in ("reference", "compiled"):
        out = scan(cell, x, mask=mask, backend=backend)
        loss = (out.outputs * out.outputs.detach().sin()).sum() + out.state[-1].sum()
        runs[backend] = [out.outputs, *torch.autograd.grad(loss, [x, *cell.parameters()])]
        with torch.no_grad():
            runs[backend].append(scan(cell, x, mask=mask, backend=backend).outputs)
    for got, expected in zip(runs["compiled"], runs["reference"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
print("ok")
"""


@pytest.mark.slow  # a second build of the extension: about two minutes of compiling on 2 cores
@pytest.mark.skipif(not torch.cpu._is_avx2_supported(), reason="this CPU has no AVX2")
def test_the_avx2_build_of_the_tiles_matches_reference():
    """A CPU with AVX2 but without AVX-512 builds the tiles 8 floats wide (with 16 vector registers);
    ATEN_CPU_CAPABILITY=avx2 makes this CPU take that build, in a process of its own (one process
    loads one build of the operators). The build (about a minute) is cached beside the main one:
    in a folder of its own under $RNNKIT_EXT_DIR, else in torch's folder for its name."""
    src = os.path.abspath(os.path.join(os.path.dirname(compiled.__file__), "..", ".."))
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    if os.environ.get("RNNKIT_EXT_DIR"):
        env["RNNKIT_EXT_DIR"] = os.path.join(os.environ["RNNKIT_EXT_DIR"], "avx2")
    done = subprocess.run([sys.executable, "-c", CHECK_AVX2_BUILD], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
