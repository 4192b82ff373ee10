"""Verdicts that hold on other machines: the main job over torch CPU, green under each CPU class this machine can
emulate with torch's own switches (``ATEN_CPU_CAPABILITY`` picks ATen's kernels, ``ONEDNN_MAX_CPU_ISA`` caps
oneDNN), and the machine facts that say which class a run was on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import child_env

from conformance.backends import machine

torch = pytest.importorskip("torch", reason="torch is not installed (the torch extra): no torch kernels to emulate")

#: CPU classes by what torch runs on them: (id, environment, the features the host needs to emulate it, the kernels
#: torch then runs for bfloat16)
CLASSES = [
    ("avx2", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, ("avx2", "fma"), "native"),
    ("avx512-no-bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, ("avx512f", "avx512bw", "avx512vl"), "onednn-emulated"),
    ("avx512-bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, ("avx512_bf16",), "onednn-avx512bf16"),
    ("this-machine", {}, (), None),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, env, needs, kernels", CLASSES, ids=[c[0] for c in CLASSES])
def test_the_main_job_over_torch_cpu_is_green_on_each_cpu_class(tmp_path: Path, name: str, env: dict[str, str],
                                                                needs: tuple[str, ...], kernels: str | None) -> None:
    """``python -m conformance run`` (with the built-ins' known failures) over torch CPU's half-precision dtypes, where
    its kernels differ between CPUs, exits 0: each class's declared profiles and known failures are right for it."""
    missing = [f for f in needs if f not in machine.cpu()["isa"].split()]
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(missing)}: it cannot run the {name} class's kernels")
    full = {k: v for k, v in child_env().items() if not k.startswith(("ATEN_CPU", "ONEDNN_"))} | env
    # conv2d and conv_transpose2d: each class's kernels (conv1d runs conv2d's; conv3d and the other transposed ranks
    # were checked per class against the oracle when they were declared, README "Implementations")
    cmd = [sys.executable, "-m", "conformance", "run", "-k", "torch-cpu", "--dtypes", "bfloat16,float16",
           "--ranks", "2", "--max-examples", "10", "--results", str(tmp_path / "res"),
           "--out", str(tmp_path / "r.html")]
    out = subprocess.run(cmd, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    header = next(json.loads(line) for f in (tmp_path / "res").rglob("*.jsonl") for line in f.open()
                  if '"type": "run"' in line)
    facts = next(d for d in header["impls"] if d["name"] == "torch-cpu")["environment"]
    if kernels is not None:
        assert facts["torch_bf16"] == kernels, facts
    assert header["environment"]["cpu_model"] and header["environment"]["isa"]


def test_machine_facts_name_the_cpu_and_its_kernel_selecting_features() -> None:
    facts = machine.facts()
    assert facts["cpu_model"] and facts["arch"]
    assert set(facts["isa"].split()) <= set(machine.ISA_FEATURES)
    assert machine.summary().startswith(facts["cpu_model"])
    assert "kernels" in machine.blas() or "not installed" in machine.blas() or machine.blas() == "none found"
