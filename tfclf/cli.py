"""What every command-line entry point shares: flagfiles (nested, shipped ones found from
anywhere), a quiet log, and the safety net that turns an exception into one line.

Library modules never read ``FLAGS`` and never import this module; the CLI modules
(``tfclf.train``, ``tfclf.evaluate``, ``tfclf.compress``, ``tfclf.predict``, ``tools/``)
call it and pass plain values on. The training flags themselves are
``tfclf.config_flags``'s, re-exported here for the CLI modules.
"""

from __future__ import annotations

import errno
import logging as std_logging
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

from absl import app, logging

from tfclf.config_flags import (  # noqa: F401  (the CLI modules' flag helpers)
    FLAGS,
    TRAIN_FLAGS,
    absolute_paths,
    config_from_flags,
    define_train_flags,
    given_flags,
    parse_model_args,
    resolved_flagfile,
)
from tfclf.errors import UsageError


class _OwnInfoOnly(std_logging.Filter):
    package_dir = Path(__file__).resolve().parent

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or Path(
            record.pathname
        ).resolve().is_relative_to(self.package_dir)


class _NoUnrestoredValues(std_logging.Filter):
    """TensorFlow lists every value of a checkpoint whose restore failed, one warning each,
    when the half-restored objects are deleted (hundreds of lines at exit). tfclf restores
    strictly and reports a failed restore itself, in one line."""

    def filter(self, record):
        return not (
            record.levelno == std_logging.WARNING
            and Path(record.pathname).name == "checkpoint.py"
            and record.getMessage().startswith(
                ("Detecting that an object", "Value in checkpoint", "An attribute in the")
            )
        )


def check_tool_flags(positive=(), augment: str | None = None) -> None:
    """For the tools: each flag named in ``positive`` is at least 1 and ``augment`` parses,
    or a ``UsageError`` naming the flag (the training CLI checks its own in the config).
    Without ``augment`` nothing imports TensorFlow (``profile_step``'s parent needs none)."""
    for name in positive:
        if FLAGS[name].value < 1:
            raise UsageError(f"--{name} must be positive, got {FLAGS[name].value}")
    if augment is None:
        return
    from tfclf.data.augment import parse_augment

    try:
        parse_augment(augment)
    except ValueError as e:
        raise UsageError(f"--augment: {e}") from None


def quiet_library_info() -> None:
    """Below WARNING, only tfclf's own records reach the log: TensorFlow's and matplotlib's
    INFO records (checkpoint sharding times, SavedModel assets, font cache) would interleave
    with the one line per epoch. Their warnings and errors still show, but for the list of
    a failed checkpoint restore's values (``_NoUnrestoredValues``)."""
    tf_logger = std_logging.getLogger("tensorflow")  # has its own handler
    tf_logger.setLevel(std_logging.WARNING)
    if not any(isinstance(f, _NoUnrestoredValues) for f in tf_logger.filters):
        tf_logger.addFilter(_NoUnrestoredValues())
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
        handler.addFilter(_OwnInfoOnly())


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def disk_full_message(e: BaseException) -> str | None:
    """One line for a write that ran out of space (Python's ``OSError(ENOSPC)`` or
    TensorFlow's op error with the same text), naming the file when the error does."""
    text = str(e)
    if not (
        (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in text
    ):
        return None
    path = getattr(e, "filename", None)
    if not path:
        found = re.search(r"(/[^\s;:'\"]+)", text)
        path = found.group(1) if found else None
        if path and "_temp/" in path:  # TensorFlow's checkpoint scratch: name the checkpoint
            path = path.split("_temp/")[0]
    where = f" while writing {path}" if path else ""
    return (
        f"no space left on device{where}. Files written before it are intact (every "
        "checkpoint, best-weights file and export is written aside and renamed into place): "
        "free some space and rerun the same command; a training run resumes from its last "
        "complete checkpoint"
    )


# Lines for the log from flag parsing (expand_flagfiles), which runs before absl
# logging is set up; guarded() logs them once main starts.
_PARSE_NOTES: list[str] = []


def guarded(main, log_dir=None):
    """``main`` with the safety net: a ``UsageError`` or tfclf's ``DataError`` is one
    ``error:`` line (exit 2); any other exception is one line naming it and the file its
    full traceback went to (``log_dir()`` if it names a writable directory, else a temporary
    file), exit 1. ``TFCLF_TRACEBACK=1`` re-raises instead, showing the traceback."""

    def run(argv):
        from tfclf.data.sources import DataError

        while _PARSE_NOTES:
            logging.info(_PARSE_NOTES.pop(0))
        try:
            return main(argv)
        except (UsageError, DataError) as e:
            return error(str(e))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if os.environ.get("TFCLF_TRACEBACK"):
                raise
            full = disk_full_message(e)
            if full:
                return error(full)
            text = traceback.format_exc()
            path = None
            try:
                where = log_dir() if log_dir else None
                if where and Path(where).is_dir() and os.access(where, os.W_OK):
                    path = Path(where) / "error.log"
                    path.write_text(text)
            except Exception:
                path = None
            if path is None:
                fd, name = tempfile.mkstemp(prefix="tfclf-error-", suffix=".log")
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                path = name
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(
                f"error: {type(e).__name__}: {message[:300]} (full traceback in {path}; "
                "TFCLF_TRACEBACK=1 shows it)",
                file=sys.stderr,
            )
            return 1

    return run


_FLAGFILE = ("--flagfile=", "-flagfile=")
# The shipped experiment flagfiles, inside the package (the repository's configs/ links here)
PACKAGED_CONFIGS = Path(__file__).parent / "configs"
_STAGE = ("--stage=", "-stage=")
_STAGE_ALONE = ("--stage", "-stage")  # its value the next argument


def _flagfile_lines(path: Path, named_in: Path | None, stack: tuple[Path, ...]) -> list[str]:
    """The flags of the flagfile ``path`` in order, nested flagfiles expanded in place, read
    by absl's rules (blank lines and lines starting with # or // skipped). A flagfile named in
    another (``named_in``) is looked for where absl looks, from the working directory, and
    else beside the file that names it: a config that nests another works from anywhere.
    ``configs/NAME.flags`` not found from the working directory is the shipped one, so the
    README's commands work with an installed wheel too."""
    where = f" (named in {named_in})" if named_in else ""
    if named_in and not path.is_absolute() and not path.exists():
        path = named_in.parent / path
    elif not named_in and not path.exists() and path.parts[:1] == ("configs",):
        shipped = PACKAGED_CONFIGS.joinpath(*path.parts[1:])
        path = shipped if shipped.is_file() else path  # an installed wheel's copy
    if path.resolve() in stack:
        raise UsageError(f"--flagfile={path}{where} includes itself")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else e
        raise UsageError(f"--flagfile={path}{where}: {reason}") from None
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if line.startswith(_FLAGFILE):
            nested = Path(os.path.expanduser(line.partition("=")[2].strip()))
            lines += _flagfile_lines(nested, path, (*stack, path.resolve()))
        else:
            lines.append(line)
    return lines


def expand_flagfiles(argv: list[str]) -> list[str]:
    """``argv`` with each ``--flagfile`` replaced by its flags (``_flagfile_lines``); a bad
    flagfile is a ``UsageError`` naming it and the file that names it.

    ``--stage`` is the one repeatable flag, and absl adds a flagfile's stages to the command
    line's. As with every other flag, stages given on the command line replace a flagfile's:
    ``--flagfile=configs/report000_fixres.flags --stage="size=32 epochs=2"`` trains one stage,
    not three."""
    tagged, args = [(argv[0], False)], iter(argv[1:])  # (argument, from a flagfile)
    for a in args:
        if a == "--":  # what follows is positional
            tagged += [(b, False) for b in (a, *args)]
            break
        if a in ("--flagfile", "-flagfile"):
            a = f"--flagfile={next(args, '')}"
        if a.startswith(_FLAGFILE):
            lines = _flagfile_lines(Path(os.path.expanduser(a.partition("=")[2])), None, ())
            tagged += [(line, True) for line in lines]
        else:
            tagged.append((a, False))
    out = [a for a, _ in tagged]
    if not any(a.startswith(_STAGE) or a in _STAGE_ALONE for a, filed in tagged if not filed):
        return out
    kept = [a for a, filed in tagged if not (filed and a.startswith(_STAGE))]
    # logged once main runs: absl logging is not set up while flags parse
    _PARSE_NOTES.append(
        f"--stage on the command line replaces the flagfile's {len(out) - len(kept)} stage(s)"
    )
    return kept


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        argv = expand_flagfiles(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return app.parse_flags_with_usage(argv)


def run(main, log_dir=None, tensorflow: bool = False) -> None:
    """``main`` as a CLI: flagfiles expanded, the safety net (``guarded``); ``tensorflow``:
    TensorFlow is imported first without its start-up lines (``native_stderr``), after the
    flags are parsed (``--help`` and a bad flag stay instant)."""
    if tensorflow:
        plain = main

        def main(argv):
            from tfclf.native_stderr import import_tensorflow_quietly

            import_tensorflow_quietly()
            return plain(argv)

    app.run(guarded(main, log_dir), flags_parser=_parse_flags)
