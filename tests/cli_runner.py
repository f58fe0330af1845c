"""Runs tfclf CLIs on many argument lists in one process, as ``python -m MODULE ARGS``
would, and prints each run's exit code, stdout and stderr as JSON lines.

``python tests/cli_runner.py CASES.json``: CASES.json is a list of ``[module, [args...]]``.
One process for many cases keeps the bad-input table fast: TensorFlow is imported once,
not once per case. The modules of one file must define no flag twice (``tfclf.predict`` and
``tfclf.models`` can share a process; the training flags' CLIs cannot share one with
``tfclf.predict``'s ``--model`` or each other's ``--out``). Each case goes through
``absl.app.run`` and tfclf's safety net exactly as on the command line; only the flag
values are reset between cases.
"""

import contextlib
import importlib
import io
import json
import sys

from absl import flags

from tfclf import cli


def entry_point(module_name: str):
    module = importlib.import_module(module_name)
    return getattr(module, "run", None) or (lambda: cli.run(module.main))


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    entries = {module: entry_point(module) for module in dict.fromkeys(m for m, _ in cases)}
    results = []
    for module, args in cases:
        flags.FLAGS.unparse_flags()
        sys.argv = [module, *args]
        err, out = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                entries[module]()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        results.append(
            {"args": args, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
        )
    print("\n".join(json.dumps(r) for r in results))


if __name__ == "__main__":
    main()
