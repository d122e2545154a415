"""Errors that name the problem and what to do about it.

Everything user-facing raises a subclass of `SDPoseError`, so the CLI and the app can show the
message without a traceback.
"""

from __future__ import annotations


class SDPoseError(Exception):
    """Base class: the message is meant for a person, not a stack trace."""


class DataError(SDPoseError, ValueError):
    """An annotation file, image or box that cannot be used."""


class CheckpointError(SDPoseError, ValueError):
    """A checkpoint that does not fit the model (wrong variant, missing or extra weights)."""


class ConfigError(SDPoseError, ValueError):
    """An unknown model name or an inconsistent configuration."""


class AccessError(SDPoseError, PermissionError):
    """A path, file or address the server does not serve (public mode): the message says what is allowed."""


class LimitError(SDPoseError, ValueError):
    """Input over one of the server's limits (size, pixels, length, people): the message names the limit."""
