"""The machine a run happened on: the facts that decide which kernels a library runs, and so its arithmetic.

The same torch build computes bfloat16 gradients differently on an AVX2 CPU (its native kernels, bfloat16 sums
across the batch) and on an AVX-512 one (oneDNN, float32 sums); a verdict is only as portable as the facts it names.
``cpu()`` reads the processor (model, vendor, the ISA features that select kernels) without importing any library;
``blas()`` asks threadpoolctl which BLAS numpy loaded and which kernels it chose; a backend adds its own facts
through its optional ``environment()`` method (torch: its dispatch capability and whether oneDNN takes
bfloat16/float16). ``summary()`` is the one line that rows and reproductions carry.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from typing import Any

#: CPU features that select kernels in numpy's BLAS, torch's ATen and oneDNN (x86) or their Arm counterparts
ISA_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "avx_ne_convert",
                "asimd", "asimdhp", "fphp", "sve", "sve2", "bf16", "i8mm")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


@lru_cache(maxsize=1)
def cpu() -> dict[str, str]:
    """Model, vendor and kernel-selecting ISA features of this processor."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or platform.processor() or platform.machine()
    vendor = info.get("vendor_id") or info.get("CPU implementer") or ""
    return {"cpu_model": model, "cpu_vendor": vendor, "arch": platform.machine(),
            "isa": " ".join(f for f in ISA_FEATURES if f in flags)}


@lru_cache(maxsize=1)
def blas() -> str:
    """numpy's BLAS: library, version and the kernels it chose for this CPU (threadpoolctl)."""
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl inspects)
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i.get('internal_api')} {i.get('version') or ''} ({i.get('architecture') or '?'} kernels)"
                     .replace("  ", " ") for i in libs) or "none found"


def backend_facts(backend: Any) -> dict[str, str]:
    """A backend's own machine facts (its optional ``environment()``); a failing probe is a fact too."""
    probe = getattr(backend, "environment", None)
    if not callable(probe):
        return {}
    try:
        return {str(k): str(v) for k, v in dict(probe()).items()}
    except Exception as exc:  # never take a run down for a description
        return {"environment()": f"raised {type(exc).__name__}: {exc}"}


@lru_cache(maxsize=1)
def summary() -> str:
    """One line: the CPU and its kernel-selecting features, for rows and reproductions."""
    c = cpu()
    return f"{c['cpu_model']} ({c['arch']}; {c['isa'] or 'no listed ISA features'})"


def facts() -> dict[str, str]:
    """Every machine fact of the run header and the report's environment table."""
    return {**cpu(), "blas": blas()}
