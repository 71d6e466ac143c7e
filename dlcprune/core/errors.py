"""Typed errors raised by the scoring engine.

Every error a user can cause with their data or parameters derives from ``ScoringError`` and carries
a stable ``code`` (the service maps it to an HTTP error body) and, where it applies, the file, the
line (1-based) or the archive member that caused it. ``str(err)`` is one line a person can act on.
"""

from __future__ import annotations


class ScoringError(Exception):
    """Base class of every error caused by the input (data, model or parameters)."""

    code = "scoring_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.member = member

    @property
    def location(self) -> str:
        """Where the problem is, as ``file:line`` or ``file[member]``; empty when unknown."""
        loc = self.path or ""
        if self.member is not None:
            loc = f"{loc}[{self.member}]" if loc else self.member
        if self.line is not None:
            loc = f"{loc}:{self.line}" if loc else f"line {self.line}"
        return loc

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: {self.message}" if loc else self.message

    def to_dict(self) -> dict[str, object]:
        """A JSON-able description: code, message (with location), and the location parts."""
        out: dict[str, object] = {"code": self.code, "message": str(self)}
        for key in ("path", "line", "member"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class DatasetError(ScoringError):
    """The dataset cannot be read or does not have the shape its format requires."""

    code = "invalid_dataset"


class UnknownFormatError(DatasetError):
    code = "unknown_format"


class CorruptArchiveError(DatasetError):
    code = "corrupt_archive"


class CorruptImageError(DatasetError):
    code = "corrupt_image"


class InvalidRecordError(DatasetError):
    """A line or row that is not valid (bad JSON, bad UTF-8, wrong type of a field)."""

    code = "invalid_record"


class MissingFieldError(DatasetError):
    """A required column or field (such as the label) is absent."""

    code = "missing_field"


class EmptyDatasetError(DatasetError):
    code = "empty_dataset"


class EmptyClassError(DatasetError):
    code = "empty_class"


class UnsafePathError(DatasetError):
    """A path that would escape the dataset's own folder (``..``, absolute, a link)."""

    code = "unsafe_path"


class LimitExceededError(DatasetError):
    """The dataset is over a configured limit (members, bytes, pixels, array size)."""

    code = "limit_exceeded"


class InvalidColumnsError(DatasetError):
    """A ``columns`` mapping the format cannot take (a role it does not have, or a mapping given
    to a format without columns)."""

    code = "invalid_columns"


class ModelError(ScoringError):
    """The backbone cannot be built or loaded, or does not fit the data."""

    code = "invalid_model"


class ParameterError(ScoringError):
    """A scoring or selection parameter is out of range."""

    code = "invalid_parameter"


class Cancelled(Exception):
    """Raised from a progress callback to stop scoring; the engine restores the weights first."""


class SourceChangedError(DatasetError):
    """A referenced dataset's objects are not those it was registered (pinned) with."""

    code = "source_changed"
