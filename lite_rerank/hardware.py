"""What this machine runs well: the one precision rule and the thread count every entry point uses.

bfloat16 halves memory traffic and, on CPUs with bf16 instructions (x86 AVX512-BF16 or AMX, Arm BF16), runs matmuls
several times faster than float32. On other CPUs PyTorch emulates it: a bf16 matmul on an AVX2-only CPU runs at about
1 GFLOP/s against 70-200 GFLOP/s in float32. So `auto` (the default everywhere) picks

    float16 on CUDA; bfloat16 on a CPU that runs it natively; float32 on any other CPU.

"Natively" is decided once per process: the CPU's flags (where the OS lists them) must name a bf16 instruction set
and oneDNN must support bf16 here, and a tiny timed matmul must not show bf16 emulated (flags can be masked or
misreported by hypervisors): emulation runs at about 1/90 of float32, so bf16 under a fifth of float32's speed means
emulated. The margin matters: on a native CPU the probe is noisy on a busy core (an AMX Xeon that runs bf16 at 4× once
measured 117 vs 167 GFLOP/s), and a rule of "at least as fast" flipped a resumed training run from bf16 to float32;
an Intel Xeon with AVX512-BF16 and no AMX runs bf16 matmuls natively at 0.4–0.57× float32, and a threshold of one half
split its processes between the two precisions.
`LITE_NATIVE_BF16=0` (or `1`) overrides the detection: it simulates a CPU without bf16 (or asserts one that has it).
An explicit bfloat16 on a CPU without native support still runs, with a warning that says how much slower it is here
and how to choose float32.
"""

import functools
import os
import platform
import time
import warnings
from pathlib import Path

import torch

from modeling_lite import native_bf16_override

ENV_OVERRIDE = "LITE_NATIVE_BF16"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (/proc/cpuinfo "flags"), Arm ("Features")
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CHOICES = ("auto", *DTYPE_NAMES)
# accelerate's --mixed_precision names for the dtypes above
MIXED_PRECISION = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}
ACCELERATE_DTYPES = {name: dtype for dtype, name in MIXED_PRECISION.items()}
# --mixed-precision's names → --dtype's (auto: the module's rule, for training and inference alike)
DTYPE_OF_MIXED_PRECISION = {**{MIXED_PRECISION[dtype]: name for name, dtype in DTYPE_NAMES.items()}, "auto": "auto"}
# bf16 below this fraction of float32's matmul speed is emulated (about 1/90 on AVX2); native bf16 measures 0.4-6×
# (0.4-0.57 on an Intel Xeon with AVX512-BF16 and no AMX, where a threshold of 0.5 let two processes of one run
# decide differently and disagree on the precision of a shared cache)
EMULATED_BF16_BELOW = 0.2


@functools.cache
def cpu_model_and_flags() -> tuple[str, frozenset[str] | None]:
    """The CPU's model name and its feature flags (None where the OS does not list them, e.g. macOS, Windows)."""
    model, flags = platform.processor() or platform.machine(), None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and value.strip():
                model = value.strip()
            elif key in ("flags", "features") and flags is None:
                flags = frozenset(value.split())
    return model, flags


def _matmul_gflops(dtype: torch.dtype, size: int = 256, repeats: int = 5) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up (kernel selection, first-touch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@functools.cache
def matmul_gflops() -> dict[str, float]:
    """A 256 × 256 matmul's throughput here in float32 and bfloat16 (GFLOP/s; tens of milliseconds at most)."""
    with torch.inference_mode():
        return {name: round(_matmul_gflops(DTYPE_NAMES[name]), 1) for name in ("float32", "bfloat16")}


def onednn_runs_bf16() -> bool:
    """oneDNN (PyTorch's CPU kernels for bf16 linear layers) has bf16 primitives on this CPU."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


@functools.cache
def native_bf16() -> tuple[bool, str]:
    """(whether this CPU runs bfloat16 natively, why), decided once per process."""
    try:
        override = native_bf16_override()
    except ValueError as error:  # a value it does not understand: one line, naming the variable, from any entry point
        raise SystemExit(f"error: {error}") from None
    if override is not None:
        return override, f"{ENV_OVERRIDE}={os.environ[ENV_OVERRIDE]}"
    _, flags = cpu_model_and_flags()
    if flags is not None and not flags & set(NATIVE_BF16_FLAGS):
        return False, f"no bf16 instructions among the CPU flags ({', '.join(NATIVE_BF16_FLAGS)})"
    if not onednn_runs_bf16():
        return False, "oneDNN has no bf16 kernels for this CPU"
    speed = matmul_gflops()
    if speed["bfloat16"] < EMULATED_BF16_BELOW * speed["float32"]:
        return False, f"bf16 matmul emulated here ({speed['bfloat16']} vs float32 {speed['float32']} GFLOP/s)"
    return True, f"bf16 instructions, bf16 matmul {speed['bfloat16']} vs float32 {speed['float32']} GFLOP/s"


def describe(device="cpu") -> dict:
    """What results files record about the hardware a number was measured on."""
    device = torch.device(device)
    if device.type == "cuda":
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(device)}
    model, flags = cpu_model_and_flags()
    native, reason = native_bf16()
    return {
        "device": "cpu",
        "cpu": model,
        "bf16_flags": sorted(flags & set(NATIVE_BF16_FLAGS)) if flags is not None else None,
        "native_bf16": native,
        "native_bf16_reason": reason,
        "threads": torch.get_num_threads(),
    }


def choose_dtype(requested: str, device="cpu") -> torch.dtype:
    """The dtype for `--dtype REQUESTED` on `device` (see the module's rule); warns when an explicit bfloat16 will be
    emulated on this CPU."""
    if requested not in CHOICES:
        raise ValueError(f"precision must be one of {list(CHOICES)}, got {requested!r}")
    device = torch.device(device)
    if requested == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and native_bf16()[0]:
            return torch.bfloat16
        return torch.float32
    dtype = DTYPE_NAMES[requested]
    if dtype == torch.bfloat16 and device.type == "cpu":
        warn_if_emulated_bf16()
    return dtype


def warn_if_emulated_bf16():
    native, reason = native_bf16()
    if native:
        return
    speed = matmul_gflops()
    slower = speed["float32"] / max(speed["bfloat16"], 1e-3)
    warnings.warn(
        f"bfloat16 was asked for, but this CPU ({cpu_model_and_flags()[0]}) does not run it natively ({reason}): "
        f"a bf16 matmul runs {slower:.0f}× slower than float32 here ({speed['bfloat16']} vs {speed['float32']} "
        "GFLOP/s). Choose float32 (--dtype float32 / --mixed-precision no) or auto, which picks it on this CPU.",
        stacklevel=3,
    )


def choose_mixed_precision(requested: str, device_type: str) -> str:
    """accelerate's mixed-precision name ("no", "bf16", "fp16") for train_accelerate.py's --mixed-precision."""
    if requested not in DTYPE_OF_MIXED_PRECISION:
        raise ValueError(f"mixed precision must be one of {list(DTYPE_OF_MIXED_PRECISION)}, got {requested!r}")
    return MIXED_PRECISION[choose_dtype(DTYPE_OF_MIXED_PRECISION[requested], device_type)]


def set_threads(threads: int | None = None, log=print) -> int:
    """Use `threads` intra-op threads (None: PyTorch's default, one per core) and say how many: two heavy jobs on
    two cores should get one each (OpenMP threads spinning against each other slow both far more than 2×)."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    if log is not None:
        log(f"threads: {used} (of {os.cpu_count()} cores; --threads N to change)")
    return used


def add_arguments(parser, dtype_flag: str = "--dtype", what: str = "the model computes in"):
    """`--dtype` (auto / float32 / bfloat16 / float16) and `--threads` for an entry point's parser."""
    parser.add_argument(
        dtype_flag,
        default="auto",
        choices=CHOICES,
        help=f"dtype {what} (auto: float16 on CUDA, bfloat16 on a CPU that runs it natively, else float32)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: one per core; one each for two jobs at once)"
    )


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def precision_note(dtype: torch.dtype, requested: str, device="cpu") -> str:
    """One line for the log: what was chosen, from what, and why."""
    line = f"precision: {dtype_name(dtype)} on {torch.device(device).type} (asked: {requested}"
    if torch.device(device).type == "cpu" and dtype != torch.float16:
        line += f"; native bf16: {'yes' if native_bf16()[0] else 'no'}, {native_bf16()[1]}"
    return line + ")"
