"""Trainable-parameter counts pinned to the reports and papers."""

import pytest

from tfclf.models import create_model, model_stats

# Report 003 (PyTorch conventions: conv bias, BN affine), 128x128 inputs, 11 classes: exact.
REPORT_003 = {
    "report003_cnn": 12_956_235,
    "mobilenet_student": 256_779,
    "report003_small_cnn": 241_099,
    "report003_small_cnn_dw": 188_971,
    "report003_small_cnn_group4": 200_059,
}

# Published counts, 32x32 inputs, 10 classes: within 2 % (relative tolerance, count).
PAPERS = {
    "wrn28_10": (36.5e6, 0.02),
    "wrn16_8": (11.0e6, 0.02),
    "wrn40_4": (8.9e6, 0.02),
    "resnext29_8x64d": (34.4e6, 0.02),
    "simplenet": (5.48e6, 0.02),
    "resnet20": (0.27e6, 0.02),
    "resnet110": (1.7e6, 0.03),  # the paper rounds 1.73 M to 1.7 M
    "preact_resnet164": (1.7e6, 0.02),
}


def _trainable(name, size, classes):
    return model_stats(create_model(name, (size, size, 3), classes)).trainable_params


@pytest.mark.parametrize("name,count", sorted(REPORT_003.items()))
def test_report003_counts_are_exact(name, count):
    assert _trainable(name, 128, 11) == count


def test_report003_depthwise_large_cnn_within_one_percent():
    got = _trainable("report003_cnn_dw", 128, 11)
    assert abs(got - 5_671_785) / 5_671_785 < 0.01, got


@pytest.mark.parametrize("name,spec", sorted(PAPERS.items()))
def test_paper_counts(name, spec):
    count, tol = spec
    got = _trainable(name, 32, 10)
    assert abs(got - count) / count <= tol, f"{name}: {got:,} vs {count:,.0f}"


def test_report000_final_network_is_under_two_million():
    got = _trainable("report000_resnet", 96, 10)
    assert 0.5e6 < got < 2e6


def test_report001_baseline_is_the_reports_count():
    """Report 001: "The total parameters of baseline is 149,418" (MNIST, 28x28x1)."""
    assert (
        model_stats(create_model("report001_baseline", (28, 28, 1), 10)).trainable_params == 149_418
    )
