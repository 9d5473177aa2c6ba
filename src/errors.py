"""The one error base the entry points know about.

An `InputError` is caused by the user's input or configuration (a missing file, a bad key, an
empty corpus, a spent API quota): entry points print its message, which names the file, line or
key, as one line and exit with status 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """A failure the user can fix from its message alone."""
