"""One exception family for bad input, so every entry point can answer it the same way.

The CLI turns a `WorkbenchError` into a one-line message and exit code 2; the app shows it with
`st.error`. Anything else that escapes is a bug or a training failure, never the user's fault.
"""

from __future__ import annotations


class WorkbenchError(ValueError):
    """Bad input from a user: the message says what is wrong and what to do, on one line."""


class ConfigError(WorkbenchError):
    """A training configuration that cannot run (unknown method, rank <= 0, bad combination...)."""


class ModelError(WorkbenchError):
    """A model name or model file that cannot be used with the chosen dataset."""


class DataError(WorkbenchError):
    """Bad input data. Message is ONE line: what is wrong + what to do, ending with 'Received: ...' when useful."""


class UsageError(WorkbenchError):
    """A command line that argparse cannot read (a misspelt flag, 'three' for a number)."""


def received(**values: object) -> str:
    """Keras-style tail for error messages: 'Received: rank=0'."""
    return "Received: " + ", ".join(f"{k}={v!r}" for k, v in values.items())
