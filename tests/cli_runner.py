"""Runs one tfclf CLI on many argument lists in one process, as ``python -m MODULE ARGS``
would, and prints each run's exit code and stderr as JSON lines.

``python tests/cli_runner.py MODULE CASES.json``: CASES.json is a list of argument lists.
One process per CLI keeps the bad-input table fast: TensorFlow is imported once, not once
per case. Each case goes through ``absl.app.run`` and tfclf's safety net exactly as on the
command line; only the flag values are reset between cases.
"""

import contextlib
import importlib
import io
import json
import sys

from absl import flags

from tfclf import cli


def main():
    module_name, cases_path = sys.argv[1:3]
    module = importlib.import_module(module_name)
    entry = getattr(module, "run", None) or (lambda: cli.run(module.main))
    with open(cases_path) as f:
        cases = json.load(f)
    results = []
    for args in cases:
        flags.FLAGS.unparse_flags()
        sys.argv = [module_name, *args]
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                entry()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        results.append({"args": args, "code": code, "stderr": err.getvalue()})
    print("\n".join(json.dumps(r) for r in results))


if __name__ == "__main__":
    main()
