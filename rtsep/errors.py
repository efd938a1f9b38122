"""One exception hierarchy, so the CLI can tell a user's mistake from our own bug.

Every subclass of :class:`RtsepError` is a user-facing failure: the CLI prints its message as a
single line and exits non-zero. Anything else escaping is an internal error (please report).
"""


class RtsepError(Exception):
    """Base class: a failure the user can act on; its message is one line."""


class AudioInputError(RtsepError):
    """Missing, unreadable, corrupt, empty or non-finite input audio."""


class AudioOutputError(RtsepError):
    """The output cannot be written (folder not writable, disk full...)."""


class ModelError(RtsepError):
    """A model file or its card is missing, broken or does not match what it claims."""


class ConfigError(RtsepError):
    """Invalid options: unknown stem, bad block size, unsupported channel count..."""


class DeviceError(RtsepError):
    """An audio device is unknown, busy, or cannot do what was asked."""


class MissingExtraError(RtsepError):
    """A subcommand needs an optional dependency (TensorFlow for training/conversion)."""
