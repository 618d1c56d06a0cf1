"""The command line's plumbing: argparse held to the one-line refusal contract, a quiet engine import.

Kept apart from `workbench.cli` (the commands) so each reads on its own. Nothing here imports
TensorFlow: a refused flag must cost a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from workbench.config import example_value
from workbench.errors import ConfigError, UsageError, received


class Parser(argparse.ArgumentParser):
    """argparse, held to the refusal contract: one line naming the problem and the fix, exit code 2.

    Why: argparse prints the full usage (~30 lines for `train`) before its message and exits from
    inside `parse_args`; here `error` raises a `UsageError` that `main` prints as one line.
    """

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # point at the subcommand's own flags and help, not the top-level ones
            command = self._subcommand(parsed)
            flag = extras[0].split("=")[0]
            options = {o.lstrip("-"): o for a in command._actions for o in a.option_strings}
            close = difflib.get_close_matches(flag.lstrip("-"), options, n=1, cutoff=0.7)
            guess = f"did you mean {options[close[0]]}? " if close else ""
            raise UsageError(f"unrecognized arguments: {' '.join(extras)}: {guess}see `{command.prog} --help`. "
                             f"{received(argument=extras[0])}")
        return parsed

    def _subcommand(self, parsed: argparse.Namespace) -> Parser:
        parser: Parser = self
        for dest in ("command", "runs_command"):
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction) and a.dest == dest]
            if subs and getattr(parsed, dest, None) in subs[0].choices:
                parser = subs[0].choices[getattr(parsed, dest)]
        return parser

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        if "Received:" in text:  # our own converters already say the fix and the value
            raise UsageError(text)
        choice = re.search(r"argument (\S+): invalid choice: (.+?) \(choose from", text)
        if choice:
            raise UsageError(f"{text.split(' (choose from')[0]}: pick one of {_choices(text)}, see "
                             f"`{self.prog} --help`. Received: {choice.group(1)}={choice.group(2)}")
        if "expected one argument" in text:
            raise UsageError(f"{text}: give it a value, see `{self.prog} --help`.")
        if "required" in text:
            raise UsageError(f"{text}: give them, see `{self.prog} --help`.")
        raise UsageError(f"{text}: see `{self.prog} --help`.")


def _choices(text: str) -> str:
    found = re.search(r"\(choose from (.*)\)", text)
    return found.group(1) if found else "the listed values"


def converter(kind: type, name: str, command: str) -> Any:
    """An argparse `type` whose refusal names the flag, the fix and the value (one line)."""
    flag = "--" + name.replace("_", "-")
    example = example_value(name)
    noun = "a whole number" if kind is int else "a number"

    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}: give e.g. {flag} {example}, see "
                                             f"`{command} --help`. {received(**{name: text})}") from None

    return convert


def seed_list(text: str) -> list[int]:
    """`--seeds 0,1,2` as an argparse `type`: the seeds, or a one-line refusal ending with the value."""
    from workbench.seed_groups import parse_seeds

    try:
        return parse_seeds(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextlib.contextmanager
def quiet_engine_import() -> Iterator[None]:
    """Keep the native libraries' start-up lines off stderr while TensorFlow/Keras load.

    Why: TensorFlow's C++ side writes "All log messages before absl::InitializeLog()…", oneDNN and
    CUDA-stub lines straight to file descriptor 2 on import; TF_CPP_MIN_LOG_LEVEL does not silence
    them, so a refusal after the engine loads would not be the one line the contract promises. Fd 2
    points at a temporary file for the import only; if the import fails, what was written is
    replayed. TF_CPP_MIN_LOG_LEVEL=0 (asking for every log line) turns this off.
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    try:
        sys.stderr.flush()
        sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the `finally` below)
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding host) or no temp space: stay as we are
        yield
        return
    try:
        os.dup2(sink.fileno(), 2)
        yield
    except BaseException:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sink.seek(0)
        sys.stderr.write(sink.read().decode("utf-8", "replace"))
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sink.close()


# -- what the commands print for people ------------------------------------------------------------
def describe(summary: dict[str, Any]) -> str:
    """The text summary; the data lines say what cleaning and fitting did (as `check-data` would)."""
    keys = ("status", "train_loss", "val_loss", "val_accuracy", "test_accuracy", "test_accuracy_before", "test_loss", "test_mae",
            "trainable_params", "total_params", "wall_s", "steps_per_s", "device", "data_report")
    lines = [f"{k:>16}: {summary[k]}" for k in keys if summary.get(k) is not None]
    return "\n".join(lines + [f"{'data note':>16}: {note}" for note in summary.get("data_notes") or []])


TIMES = ("created", "updated", "started", "ended", "stop_requested")


def shown(key: str, value: Any) -> str:
    """A value of `runs show` for people: local timestamps, JSON for tables."""
    if key in TIMES and isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if key == "wall_s" and isinstance(value, float):
        return f"{value:.1f}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
