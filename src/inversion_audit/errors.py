"""Exceptions shared by the core. Every message names the offending file or subject."""

from __future__ import annotations

__all__ = [
    "InversionAuditError",
    "VolumeError",
    "CohortError",
    "CheckpointError",
    "ConfigError",
    "StudyError",
    "OutputError",
    "JobCancelled",
]


class InversionAuditError(Exception):
    """Base class for all errors raised by this package."""


class VolumeError(InversionAuditError, ValueError):
    """A volume file is missing, unreadable, truncated or holds invalid values."""


class CohortError(InversionAuditError, ValueError):
    """A cohort is malformed: a missing subject or file, duplicate ids, mismatched grids."""


class CheckpointError(InversionAuditError, ValueError):
    """A checkpoint is missing, untrusted, or does not match the requested model."""


class ConfigError(InversionAuditError, ValueError):
    """A configuration file or object is invalid."""


class StudyError(InversionAuditError, ValueError):
    """A study folder is missing, incomplete, or holds a malformed table; names the folder or file."""


class OutputError(InversionAuditError, OSError):
    """An output could not be written (disk full, quota exceeded); names the file."""


class JobCancelled(InversionAuditError):
    """Raised by a progress callback to cancel a running job; outputs stay untouched."""
