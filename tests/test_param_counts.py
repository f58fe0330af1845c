"""Trainable-parameter counts pinned to the reports. The papers' counts of the CIFAR nets
are checked on test_models.py's build of each (``PUBLISHED``), not on a second one."""

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


def _trainable(name, size, classes):
    return model_stats(create_model(name, (size, size, 3), classes)).trainable_params


@pytest.mark.parametrize("name,count", sorted(REPORT_003.items()))
def test_report003_counts_are_exact(name, count):
    assert _trainable(name, 128, 11) == count


def test_report003_depthwise_large_cnn_within_one_percent():
    got = _trainable("report003_cnn_dw", 128, 11)
    assert abs(got - 5_671_785) / 5_671_785 < 0.01, got


def test_report000_final_network_is_under_two_million():
    got = _trainable("report000_resnet", 96, 10)
    assert 0.5e6 < got < 2e6


def test_report001_baseline_is_the_reports_count():
    """Report 001: "The total parameters of baseline is 149,418" (MNIST, 28x28x1)."""
    assert (
        model_stats(create_model("report001_baseline", (28, 28, 1), 10)).trainable_params == 149_418
    )
