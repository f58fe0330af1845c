"""Runs tfclf CLIs on many argument lists in one process, as ``python -m MODULE ARGS``
would, and prints each run's exit code, stdout and stderr as JSON lines.

``python tests/cli_runner.py CASES.json``: CASES.json is a list of ``[module, [args...]]``;
a module may also be a script's path (``tools/plot_lr.py``), run as ``python PATH ARGS``.
One process for many cases keeps the bad-input tables fast: TensorFlow is imported once,
not once per case. Each case goes through ``absl.app.run`` and tfclf's safety net exactly
as on the command line; only the flag values are reset between cases.

A module's cases come together: the module is imported at its first case, and after its
last its own flags are deleted and the module forgotten, so that the next CLI may define
flags of the same names (``tfclf.evaluate``'s and ``tfclf.compress``'s ``--out``). The
training flags (``config_flags``) stay once defined, and ``define_train_flags`` skips a name
already taken: ``tfclf.predict``'s ``--model`` is no training flag, so CLIs without the
training flags come first.
"""

import contextlib
import importlib
import io
import json
import runpy
import sys
from pathlib import Path

from absl import flags

from tfclf import cli


def module_name(name: str) -> str:
    """A CLI module's name, or for a script (``tools/plot_lr.py``) the name it is run as."""
    return Path(name).stem if name.endswith(".py") else name


def entry_point(name: str):
    """What ``python -m name`` (or ``python name.py``) runs. A script's module-level code
    (its flags) runs here once and its ``main`` with each case, through ``cli.run`` (TensorFlow,
    once imported, serves every later case)."""
    if name.endswith(".py"):
        main = runpy.run_path(name, run_name=module_name(name))["main"]
        return lambda: cli.run(main)
    module = importlib.import_module(name)
    return getattr(module, "run", None) or (lambda: cli.run(module.main))


def forget(name: str) -> None:
    """Deletes the flags the module ``name`` defined itself, and the module."""
    for flag in list(flags.FLAGS.flags_by_module_dict().get(module_name(name), [])):
        delattr(flags.FLAGS, flag.name)
    sys.modules.pop(name, None)


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    modules = [m for i, (m, _) in enumerate(cases) if i == 0 or cases[i - 1][0] != m]
    assert len(modules) == len(set(modules)), f"a module's cases must come together: {modules}"
    results = []
    for module in modules:
        entry = entry_point(module)
        for args in [args for m, args in cases if m == module]:
            flags.FLAGS.unparse_flags()
            sys.argv = [module, *args]
            err, out = io.StringIO(), io.StringIO()
            code = 0
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    entry()
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            results.append(
                {"args": args, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
            )
        forget(module)
    print("\n".join(json.dumps(r) for r in results))


if __name__ == "__main__":
    main()
