"""Every shipped experiment flagfile parses into a valid training configuration."""

from pathlib import Path

import pytest
from absl import flags

from tfclf import train as train_cli

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.flags"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_and_documented(path):
    text = path.read_text()
    assert text.startswith("#") and "python -m tfclf.train" in text  # says how to run it
    fl = flags.FLAGS
    try:
        fl(["prog", f"--flagfile={path}"])
        cfg, errors = train_cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert errors == []
    assert cfg.stages and all(s.epochs > 0 for s in cfg.stages)


def test_no_flags_is_the_quickstart():
    fl = flags.FLAGS
    try:
        fl(["prog"])
        default, _ = train_cli.config_from_flags(fl)
        fl.unparse_flags()
        fl(["prog", "--flagfile=" + str(CONFIGS[[p.name for p in CONFIGS].index(
            "quickstart.flags")])])
        quick, _ = train_cli.config_from_flags(fl)
    finally:
        fl.unparse_flags()
    assert default == quick
