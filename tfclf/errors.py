"""The errors a user can fix: printed by the command-line entry points as one ``error:``
line naming the flag, file or value, with exit code 2 (``tfclf.cli.guarded``)."""


class UsageError(ValueError):
    """A bad flag, file or value: printed as one ``error:`` line, exit code 2."""
