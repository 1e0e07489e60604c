"""stor's errors: one base class, one subclass per kind.

Every exception stor raises is a :class:`StorError` whose class names what went
wrong (``except stor.KeyNotFound:``), with:

* ``code`` -- the S3 error code the server sent (``"NoSuchKey"``), else the kind;
* ``retryable`` -- whether trying again may help (timeouts, throttling, 5xx);
* ``attempts`` -- how many requests were made before giving up;
* ``kind``, ``status`` (HTTP), ``operation``, ``bucket``, ``key`` -- where.

Credentials never appear in messages.
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "StorError", "BucketNotFound", "KeyNotFound", "AccessDenied", "InvalidInput", "Config",
    "AlreadyExists", "BucketNotEmpty", "PreconditionFailed", "Timeout", "Throttled",
    "Transient", "Integrity", "Io", "Unsupported", "NotInitialized", "Cancelled", "Other",
]


class StorError(Exception):
    """Base class of every stor error."""

    def __init__(self, message: str, *, kind: str = "Other", code: Optional[str] = None,
                 retryable: bool = False, attempts: int = 0, status: Optional[int] = None,
                 operation: Optional[str] = None, bucket: Optional[str] = None,
                 key: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.code = code or kind
        self.retryable = retryable
        self.attempts = attempts
        self.status = status
        self.operation = operation
        self.bucket = bucket
        self.key = key


class BucketNotFound(StorError):
    """The bucket does not exist."""


class KeyNotFound(StorError):
    """The bucket exists but the key does not."""


class AccessDenied(StorError):
    """Credentials were refused or lack permission (also bad signatures)."""


class InvalidInput(StorError, ValueError):
    """An argument was invalid (bucket name, key, extra_args, expiry). Nothing was written."""


class Config(StorError, ValueError):
    """The configuration is invalid; the message names the key."""


class AlreadyExists(StorError):
    """The bucket already exists."""


class BucketNotEmpty(StorError):
    """The bucket is not empty."""


class PreconditionFailed(StorError):
    """A precondition failed, e.g. the object changed mid-transfer."""


class Timeout(StorError):
    """The operation took longer than its configured timeout."""


class Throttled(StorError):
    """The server asked to slow down (503 SlowDown, 429)."""


class Transient(StorError):
    """A transient server or network failure (5xx, connection reset)."""


class Integrity(StorError):
    """Data did not match its checksum or declared size."""


class Io(StorError):
    """A local file system error (disk full, permission denied)."""


class Unsupported(StorError):
    """The backend does not support this operation (e.g. presigning on the local store)."""


class NotInitialized(StorError):
    """StorageService was used before init() or after shutdown()."""


class Cancelled(StorError):
    """The operation was cancelled."""


class Other(StorError):
    """Anything the server said that maps to no other kind."""
