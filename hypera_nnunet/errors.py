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
