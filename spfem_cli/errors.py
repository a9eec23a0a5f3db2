"""The one exception type for errors a user should see as a clean message."""

from __future__ import annotations


class SpfemError(Exception):
    """A problem with the user's input or environment, shown as one line at the CLI edge.

    `exit_code` is what the command line exits with: 2 for bad input or usage,
    3 for a missing dependency or broken installation, 1 for anything else.
    """

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
