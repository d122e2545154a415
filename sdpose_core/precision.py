"""Which device and floating-point precision training, evaluation and prediction run in on this machine.

    from sdpose_core.precision import cpu_has_native_bf16, resolve_amp, resolve_device
    resolve_device("auto")                     # cuda:0 when CUDA is there, else cpu; "cuda" without CUDA: ConfigError
    cpu_has_native_bf16()                      # False on an AVX2-only CPU
    choice = resolve_amp(None, torch.device("cpu"))
    choice.dtype, choice.reason                # None (fp32), "fp32: this CPU (...) has no native bf16 ..."

bf16 autocast on a CPU only pays where the CPU computes in bf16 itself: x86 with AVX512-BF16 or AMX-BF16,
ARM with the BF16 extension. Elsewhere oneDNN / torch emulate it by converting to and from fp32 around
every kernel, which makes bf16 autocast several times slower than fp32 (`sdpose benchmark` measures it in
"torch single pass speed-ups", which still times bf16 and marks it "not native here"; README, "Backends
and precision"). So bf16 is used only where it is native; an explicit request for it elsewhere (`--amp`,
recipe `"amp": true`) runs fp32 and the log line says why. CUDA keeps its own rule (fp16 + GradScaler for training).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from sdpose_core.errors import ConfigError

CPUINFO_PATH = Path("/proc/cpuinfo")
# /proc/cpuinfo flags that mean the CPU runs bf16 arithmetic in hardware (x86 "flags", ARM "Features")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# x86 flags of an integer dot-product instruction that sums u8 x s8 products into 32 bits (VNNI, AMX);
# without one, int8 kernels pair products in 16-bit lanes, which saturate (sdpose_core.deploy.quantize)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags(cpuinfo_text: str | None = None) -> set[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where it cannot be read)."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO_PATH.read_text()
        except OSError:
            return set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def cpu_name(cpuinfo_text: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO_PATH.read_text()
        except OSError:
            cpuinfo_text = ""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "cpu model", "hardware"):
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _native_from_flags(flags: set[str]) -> bool:
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def _native_here() -> bool:
    return _native_from_flags(cpu_flags())


def cpu_has_native_bf16(cpuinfo_text: str | None = None) -> bool:
    """True when this CPU computes bf16 in hardware (avx512_bf16 / amx_bf16, or ARM's bf16).

    Read from /proc/cpuinfo (`CPUINFO_PATH`), or from `cpuinfo_text` when given. Where cpuinfo cannot be
    read, torch's own check decides (`torch.backends.cpu.get_cpu_capability()` names no bf16 level, so the
    mkldnn bf16 probe is the only other source), and False when that fails too.
    """
    if cpuinfo_text is not None:
        return _native_from_flags(cpu_flags(cpuinfo_text))
    if not CPUINFO_PATH.is_file():
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and "AVX512" in (
                torch.backends.cpu.get_cpu_capability())
        except (AttributeError, RuntimeError):
            return False
    return _native_here()


def cpu_has_int8_dot(flags: set[str] | None = None) -> bool:
    """True where u8 x s8 products accumulate in 32 bits (VNNI / AMX); `flags` default: this CPU's."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in INT8_DOT_FLAGS)


def cpu_summary(flags: set[str] | None = None) -> str:
    """'AMD EPYC, 2 cores, AVX2, no VNNI, no native bf16': the CPU class that speed figures depend on (int8 and
    bf16 most of all), for benchmark and measurement output."""
    flags = cpu_flags() if flags is None else flags
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    int8 = "VNNI/AMX" if cpu_has_int8_dot(flags) else "no VNNI"
    bf16 = "native bf16" if _native_from_flags(flags) else "no native bf16"
    return f"{cpu_name()}, {os.cpu_count()} cores, {simd}, {int8}, {bf16}"


def cpu_description() -> str:
    """'AMD EPYC, AVX2': the CPU's name and the SIMD level torch's kernels use on it."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown SIMD"
    return f"{cpu_name()}, {capability}"


def resolve_device(device: str | torch.device, local_rank: int = 0) -> torch.device:
    """The torch device to run on: 'auto' -> cuda:LOCAL_RANK when CUDA is there, else cpu; a CUDA device
    without CUDA, or a name torch does not know, is a ConfigError saying what to pass instead."""
    if str(device) == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(device)!r} requested but CUDA is not available here; "
                              "use the CPU (--device cpu, device='cpu')")
        if resolved.index is None:
            resolved = torch.device(f"cuda:{local_rank}")
    return resolved


@dataclass(frozen=True)
class AmpChoice:
    """The autocast dtype to use (None: plain fp32) and the sentence saying why, for logs and reports."""

    dtype: torch.dtype | None
    reason: str

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, str(self.dtype))


def resolve_amp(requested: bool | None, device: torch.device | str, purpose: str = "training") -> AmpChoice:
    """The precision for `purpose` on `device`: `requested` True (--amp), False (--no-amp) or None (default).

    CPU: bf16 autocast where the CPU has native bf16 (requested or by default), fp32 elsewhere and
    whenever `requested` is False. CUDA: fp16 autocast for training (with GradScaler) when requested or
    by default; bf16 for evaluation / prediction only when requested. Other devices: fp32.
    """
    device = torch.device(device)
    if requested is False:
        return AmpChoice(None, f"{purpose} in fp32 (mixed precision turned off)")
    if device.type == "cuda":
        if requested is None and purpose != "training":
            return AmpChoice(None, f"{purpose} in fp32 on {device} (--amp for bf16 autocast)")
        dtype = torch.float16 if purpose == "training" else torch.bfloat16
        return AmpChoice(dtype, f"{purpose} under {'fp16' if dtype == torch.float16 else 'bf16'} autocast on "
                                f"{device}")
    if device.type != "cpu":
        if requested:
            return AmpChoice(None, f"{purpose} in fp32: mixed precision is not supported on {device}")
        return AmpChoice(None, f"{purpose} in fp32 on {device}")
    if cpu_has_native_bf16():
        return AmpChoice(torch.bfloat16, f"{purpose} under bf16 autocast: this CPU ({cpu_description()}) "
                                         "computes bf16 natively")
    asked = "bf16 was asked for, but " if requested else ""
    return AmpChoice(None, f"{purpose} in fp32: {asked}this CPU ({cpu_description()}) has no native bf16 "
                           "(avx512_bf16 / amx_bf16), where bf16 autocast is emulated and runs several times "
                           "slower than fp32 (README, \"Backends and precision\")")
