"""The errors raised when weights cannot be read, trusted or loaded.

All derive from :class:`WeightsError` (a ``RuntimeError``), so ``except videozoo.hub.WeightsError``
catches every weights problem while programming errors (``TypeError``...) still surface. Every
message names the file or repository involved and says what to do next.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureMismatchError",
    "ChecksumError",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsFormatError",
    "WeightsNotFoundError",
    "WeightsUnavailableError",
]


class WeightsError(RuntimeError):
    """Base class of every weights problem."""


class WeightsFormatError(WeightsError):
    """A file is missing, truncated or not safetensors, or a state dict does not fit the model."""


class WeightsNotFoundError(WeightsFormatError, FileNotFoundError):
    """A local weights path does not exist.

    Also a ``FileNotFoundError``, so code that handles missing files the usual way catches it too. ``path`` is set
    where the message words its advice as Python calls, so that the ``videozoo`` command can word its own.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ChecksumError(WeightsError):
    """A file's sha256 or size differs from the one it was published or saved with (the message gives both)."""

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ArchitectureMismatchError(WeightsError):
    """Weights saved for one architecture are being loaded into another."""


class WeightsUnavailableError(WeightsError):
    """A registered model has no published weights (raised by :func:`videozoo.load`).

    ``model`` names the registry entry, so that a caller other than Python (the ``videozoo`` command) can say
    how to get the weights in its own terms; the message says it in Python's.
    """

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class WeightsDownloadError(WeightsError):
    """The Hub could not be reached or does not hold the file, and no usable cached copy exists."""
