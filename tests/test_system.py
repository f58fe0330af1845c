"""Kernel and precision choices (issue 12): oneDNN on by default before TensorFlow loads, the
user's own value kept, and ``--precision=auto`` decided from the CPU's flags."""

import os
import platform
import subprocess
import sys

import pytest

from tfclf.system import cpu_has_native_bf16, cpu_isa_name, precision_problem, resolve_precision

PROBE = (
    "import os, tfclf, sys; "
    "assert 'tensorflow' not in sys.modules, 'tfclf imported TensorFlow at package import'; "
    "from tfclf.system import onednn_enabled; "
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), onednn_enabled(), tfclf.ONEDNN_SET_BY_USER)"
)


def probe(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
def test_onednn_is_on_by_default_on_x86():
    assert probe(None) == ["1", "True", "False"]


def test_users_onednn_value_wins():
    assert probe("0") == ["0", "False", "True"]


AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512_vnni", "avx512_bf16"}
AMX = AVX2 | {"amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize(
    "flags, name",
    [
        (AVX2, "AVX2"),
        (AVX512_BF16, "AVX-512"),
        (AVX512_BF16 | AMX, "AVX-512 + AMX"),
        ({"fpu", "sse4_2"}, "x86"),
    ],
)
def test_the_log_names_the_machine_kind(flags, name):
    assert cpu_isa_name(flags) == name


@pytest.fixture(autouse=True)
def _onednn_not_held(monkeypatch):
    """The CPU flags these tests inject decide, not a cap the shell may have set."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (AVX2, "float32"),
        (AVX2 | {"avx512f", "avx512bw"}, "float32"),  # AVX-512 without bf16: emulated, slow
        (AVX512_BF16, "mixed_bfloat16"),
        (AMX, "mixed_bfloat16"),
        (set(), "float32"),  # no /proc/cpuinfo
    ],
)
def test_precision_auto_on_cpu(flags, expected):
    assert cpu_has_native_bf16(flags) == (expected == "mixed_bfloat16")
    assert resolve_precision("auto", flags=flags, has_gpu=False) == expected


@pytest.mark.parametrize(
    "macs, expected",
    [
        (150_000, "float32"),
        (2_400_000, "float32"),
        (9_300_000, "mixed_bfloat16"),
        (None, "mixed_bfloat16"),
    ],
)
def test_precision_auto_keeps_tiny_models_in_float32(macs, expected):
    """Below BF16_MIN_MACS a step is bound by per-op costs and bfloat16 is slower even where it
    is native (docs/decisions/precision-auto.md); GPUs keep float16 whatever the size."""
    assert resolve_precision("auto", flags=AVX512_BF16, has_gpu=False, macs=macs) == expected
    assert resolve_precision("auto", flags=AVX2, has_gpu=False, macs=macs) == "float32"
    assert resolve_precision("auto", flags=AVX512_BF16, has_gpu=True, macs=macs) == "mixed_float16"


@pytest.mark.parametrize(
    "cap, native",
    [
        ("AVX2", False),
        ("avx512_core_vnni", False),
        (" avx2_vnni_2 ", False),
        ("AVX512_CORE_BF16", True),
        ("avx512_core_amx", True),
        ("ALL", True),
    ],
)
def test_precision_auto_follows_a_onednn_isa_cap(monkeypatch, cap, native):
    """ONEDNN_MAX_CPU_ISA below avx512_core_bf16 (how the AVX2 kind is timed on the AVX-512
    kind) leaves bfloat16 emulated: auto must pick float32 there."""
    assert cpu_has_native_bf16(AVX512_BF16, env={"ONEDNN_MAX_CPU_ISA": cap}) is native
    assert cpu_has_native_bf16(AVX512_BF16, env={"DNNL_MAX_CPU_ISA": cap}) is native
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    expected = "mixed_bfloat16" if native else "float32"
    assert resolve_precision("auto", flags=AVX512_BF16, has_gpu=False) == expected


def test_precision_auto_on_gpu_and_explicit():
    assert resolve_precision("auto", flags=AVX512_BF16, has_gpu=True) == "mixed_float16"
    assert resolve_precision("float32", flags=AVX512_BF16, has_gpu=False) == "float32"
    assert resolve_precision("mixed_bfloat16", flags=AVX2, has_gpu=False) == "mixed_bfloat16"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
def test_bfloat16_that_cannot_run_is_refused_and_emulated_bfloat16_is_warned():
    """A oneDNN ISA cap below AVX-512 on an AVX-512 CPU makes TensorFlow's oneDNN bf16 kernels
    fail to build (an abort or a graph error mid-run: measured with ONEDNN_MAX_CPU_ISA=AVX2):
    refused up front. Without native bf16 it runs emulated, 4-8x slower: a warning."""
    cap = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    kind, why = precision_problem("mixed_bfloat16", AVX512_BF16, env=cap)
    assert kind == "error" and "ONEDNN_MAX_CPU_ISA=avx2" in why and "--precision=float32" in why
    assert (
        precision_problem("mixed_bfloat16", AVX512_BF16, env={"ONEDNN_MAX_CPU_ISA": "avx2_vnni_2"})[
            0
        ]
        == "error"
    )
    # oneDNN emulates bf16 on AVX-512 (4x slower than float32, measured): it runs
    core = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    assert precision_problem("mixed_bfloat16", AVX512_BF16, env=core)[0] == "warning"
    assert precision_problem("mixed_bfloat16", AVX2, env={})[0] == "warning"
    assert (
        precision_problem("mixed_bfloat16", AVX2, env=cap)[0] == "warning"
    )  # TF sends bf16 to Eigen
    assert precision_problem("mixed_bfloat16", AVX512_BF16, env={}) is None
    assert (
        precision_problem("mixed_bfloat16", AMX, env={"ONEDNN_MAX_CPU_ISA": "avx512_core_amx"})
        is None
    )
    assert precision_problem("float32", AVX512_BF16, env=cap) is None
    kind, why = precision_problem("mixed_float16", AMX, env={})  # float16 on a CPU
    assert kind == "warning" and "about 90x slower than float32" in why
