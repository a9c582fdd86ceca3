"""Errors a person at the console can act on, and how the command line reports them.

A :class:`UsageError` (or a :class:`stream.config.ConfigError`) is a mistake in what was asked:
a config file, key or type, an environment variable, an argument, a service that does not
answer, a port already taken. The command line prints it as one line naming the file, variable
or setting to change, and exits with status 2; the traceback is shown only with
``--log-level debug``. Anything else is a fault of our own and keeps its traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UsageError", "ServiceUnreachable", "USAGE_EXIT_STATUS", "did_you_mean"]

#: Exit status of every user error (argparse uses the same for bad arguments).
USAGE_EXIT_STATUS = 2


class UsageError(Exception):
    """A mistake the person running the command can fix; the message says what to change."""


class ServiceUnreachable(UsageError):
    """Kafka or Redis did not answer within the allowed time; the message names the setting."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
