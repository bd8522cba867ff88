"""User-facing errors.

Every problem a user can cause (a missing env variable, an unknown setting, a dataset that was never
preprocessed) raises :class:`HyperaError` with one sentence that names the file or setting. The CLI
prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class HyperaError(Exception):
    """An error caused by input or environment, reported to the user as one clear message."""


class ConfigError(HyperaError, ValueError):
    """An unknown or invalid setting in a HYPERA configuration."""


def exit_with_error(e: Exception) -> None:
    """From inside ``nnUNetv2_train`` (no CLI of ours around it): one line on stderr, exit status 2."""
    import sys

    print(f"hypera-nnunet: error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
