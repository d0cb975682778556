"""The quantized CPU kernels (csrc/: qmatmul.cpp, decode.cpp, qkernel.h), built on first use.

``q4_matmul`` / ``q8_matmul`` run one quantized linear layer; ``DecodePlan``
runs a whole batch-1 decode step of a quantized Llama-style model (see
``fast_decode``). The C++ source ships with the package and is compiled once per machine with
``torch.utils.cpp_extension`` (about 40 s with gcc; the build is cached under
``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``, keyed by the
source's hash so an edited kernel rebuilds). Without a compiler, on a CPU
without AVX2/FMA/F16C, or with ``LLMKIT_QKERNEL=0``, ``kernels()`` returns None
and QuantLinear falls back to dequantize-then-matmul (same results, slower).
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / "qmatmul.cpp", CSRC / "decode.cpp"]
HEADERS = [CSRC / "qkernel.h"]
_FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"]  # -fopenmp: at::parallel_for is an OpenMP pragma
_state: dict[str, object] = {}


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return None


def _cpu_ok() -> bool:
    flags = _cpu_flags()
    if flags is None:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    return {"avx2", "fma", "f16c"} <= flags


def build_flags() -> list[str]:
    """Compiler flags for this machine: AVX2 + FMA + F16C, plus the dot-product instruction (vpdpbusd)
    of AVX-512 VNNI or AVX-VNNI when the CPU has one (``LLMKIT_QKERNEL_VNNI=0`` leaves it out). The
    build is cached per flag set, so a machine without VNNI never loads a VNNI build."""
    flags = _cpu_flags() or set()
    extra: list[str] = []
    if os.environ.get("LLMKIT_QKERNEL_VNNI", "1") != "0":
        if {"avx512f", "avx512vl", "avx512_vnni"} <= flags:
            extra = ["-mavx512f", "-mavx512vl", "-mavx512vnni"]
        elif "avx_vnni" in flags:
            extra = ["-mavxvnni"]
    return _FLAGS + extra


def _ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the pip-installed one sits beside this interpreter, not always on PATH."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def kernels():
    """The compiled extension module (q4_matmul, q8_matmul, DecodePlan), or None when it cannot be used here."""
    if "mod" in _state:
        return _state["mod"]
    mod = None
    if os.environ.get("LLMKIT_QKERNEL", "1") != "0" and _cpu_ok():
        code = b"".join(p.read_bytes() for p in SOURCES + HEADERS)
        flags = build_flags()
        digest = hashlib.sha256(code + " ".join(flags).encode()).hexdigest()[:10]
        try:
            from torch.utils.cpp_extension import load

            _ninja_on_path()

            mod = load(f"llmkit_qmatmul_{digest}", [str(p) for p in SOURCES], extra_cflags=flags,
                       extra_include_paths=[str(CSRC)], extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as e:  # no compiler / headers: the torch fallback still gives the same numbers
            warnings.warn(f"llmkit: quantized CPU kernel unavailable ({type(e).__name__}: {str(e)[:200]}); "
                          "using dequantize + matmul", RuntimeWarning, stacklevel=2)
    _state["mod"] = mod
    return mod
