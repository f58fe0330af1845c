"""What this machine runs on: CPU kernels (oneDNN or Eigen), numeric precision, strategy.

``--precision=auto`` picks mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bf16
(AVX512_BF16 or AMX: 2-2.5x faster than float32 at batch 128 there) and float32 elsewhere
(bf16 is emulated without them, 5-8x slower: docs/decisions/precision-auto.md). Models under
``BF16_MIN_MACS`` multiply-accumulates an image train in float32 even with native bf16: their
steps are bound by per-op costs, which bf16's casts and narrow-channel kernels add to (0.5-0.7x
float32's speed measured for 0.2 M and 2.4 M MACs, 1.1-1.25x for 9-31 M).
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

import tfclf


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(cpuinfo) as f:
            return set(f.read().split())
    except OSError:
        return set()


# oneDNN's ISAs below avx512_core_bf16, the first with bfloat16 arithmetic (avx2_vnni_2 only
# converts): holding oneDNN to one of them (ONEDNN_MAX_CPU_ISA) makes bf16 emulated.
NO_BF16_ISAS = frozenset(
    {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"}
)


def onednn_isa_cap(env=None) -> str | None:
    """The ISA oneDNN is held to by ``ONEDNN_MAX_CPU_ISA`` (or its older name
    ``DNNL_MAX_CPU_ISA``), lower-case; None when it is not set. Holding an AVX-512 machine to
    AVX2 this way is how docs/benchmarks/cpu-speed.md times the AVX2 kind's kernels on the other kind."""
    env = os.environ if env is None else env
    value = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    return value.strip().lower() if value else None


def cpu_has_native_bf16(flags: set[str] | None = None, env=None) -> bool:
    """The CPU computes in bfloat16 (AVX512_BF16 or AMX) and oneDNN is allowed to use it."""
    if onednn_isa_cap(env) in NO_BF16_ISAS:
        return False
    return bool((cpu_flags() if flags is None else flags) & {"avx512_bf16", "amx_bf16"})


# ... and the ones below AVX-512, where oneDNN cannot even emulate bf16 (avx512_core can).
NO_ONEDNN_BF16_ISAS = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2"})


def precision_problem(
    policy: str, flags: set[str] | None = None, env=None
) -> tuple[str, str] | None:
    """Why ``policy`` should not train on this CPU: ("error", why) when it cannot run at all,
    ("warning", why) when it runs emulated; None when it is native, float32 or on a GPU.
    float16 has no fast CPU kernels at all (SE-ResNet-8 at 28x28x1, batch 64: 16 images/s
    against 1,414 in float32, Intel AMX kind, 2026-12-02). bfloat16 is emulated without
    ``avx512_bf16``/AMX, and cannot run under a oneDNN ISA cap below AVX-512 on an AVX-512
    CPU: TensorFlow sends bf16 to oneDNN there (it checks the CPU, not the cap), and oneDNN
    fails to build the kernels (measured with ONEDNN_MAX_CPU_ISA=AVX2 and AVX2_VNNI_2;
    AVX512_CORE ran, 4x slower than float32)."""
    if policy not in ("mixed_bfloat16", "mixed_float16") or tf.config.list_physical_devices("GPU"):
        return None
    if policy == "mixed_float16":
        return "warning", (
            "--precision=mixed_float16 without a GPU: CPUs have no fast float16 kernels, so "
            "it trains about 90x slower than float32 (it is meant for GPUs; --precision=auto "
            "picks float32 or bfloat16 on a CPU)"
        )
    flags = cpu_flags() if flags is None else flags
    if cpu_has_native_bf16(flags, env):
        return None
    cap = onednn_isa_cap(env)
    if cap in NO_ONEDNN_BF16_ISAS and "avx512f" in flags and onednn_enabled():
        return "error", (
            f"--precision={policy} cannot run with ONEDNN_MAX_CPU_ISA={cap}: TensorFlow sends "
            f"bfloat16 to oneDNN on this AVX-512 CPU, and oneDNN held to {cap} cannot build "
            "those kernels; use --precision=float32 (or auto) or unset ONEDNN_MAX_CPU_ISA"
        )
    return "warning", (
        f"--precision={policy} on a CPU without native bfloat16: it is emulated, 4-8x slower "
        "than float32 (--precision=auto picks float32 here)"
    )


BF16_MIN_MACS = 5_000_000


def resolve_precision(
    precision: str,
    *,
    flags: set[str] | None = None,
    has_gpu: bool | None = None,
    macs: int | None = None,
) -> str:
    """The Keras mixed-precision policy for ``precision`` (``auto`` decided as above;
    ``macs``, the model's multiply-accumulates an image, when known)."""
    if precision != "auto":
        return precision
    if has_gpu is None:
        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    if has_gpu:
        return "mixed_float16"
    if macs is not None and macs < BF16_MIN_MACS:
        return "float32"
    return "mixed_bfloat16" if cpu_has_native_bf16(flags) else "float32"


def onednn_enabled() -> bool:
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def cpu_isa_name(flags: set[str] | None = None) -> str:
    """The widest vector ISA the CPU reports, and AMX (matrix tiles, which oneDNN's bfloat16
    and int8 kernels use) when present: the machine kinds docs/results.md names."""
    flags = cpu_flags() if flags is None else flags
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "x86"
    return f"{isa} + AMX" if "amx_tile" in flags else isa


def machine_kind(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The machine a result was measured on, as docs/results.md names kinds: the CPU's
    vendor and model and its ISA, e.g. "AMD EPYC, AVX-512, bf16" or "GPU" when one trained."""
    if tf.config.list_physical_devices("GPU"):
        return "GPU"
    model = ""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    flags = cpu_flags(cpuinfo)
    vendor = next((v for v in ("AMD EPYC", "Intel Xeon", "AMD", "Intel") if v in model), model)
    isa = cpu_isa_name(flags).replace(" + ", ", ")
    return f"{vendor or 'CPU'}, {isa}" + (", bf16" if cpu_has_native_bf16(flags) else "")


def describe_kernels() -> str:
    """One line: which CPU kernels TensorFlow uses and who chose them."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    who = (
        f"TF_ENABLE_ONEDNN_OPTS={value} set by the user"
        if tfclf.ONEDNN_SET_BY_USER
        else "turned on by tfclf"
        if value == "1"
        else "TensorFlow's default"
    )
    kind = "oneDNN" if onednn_enabled() else "Eigen"
    if value == "1" and kind == "Eigen":
        who += ", but TensorFlow was imported before tfclf: import tfclf first"
    isa = cpu_isa_name()
    if cap := onednn_isa_cap():
        isa += f", oneDNN held to {cap.upper()} (ONEDNN_MAX_CPU_ISA)"
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"CPU kernels: {kind} ({who}); {isa}, {bf16}"


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
