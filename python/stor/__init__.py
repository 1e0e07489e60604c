"""stor: the original storage service's ``StorageService`` API on stor's Rust library.

Code written for the original (aioboto3-based) service runs unchanged after
``from stor import StorageService``::

    StorageService.init({"storageConfig": {"region_name": "ap-northeast-2",
                                           "default_bucket": "news", ...}})
    result = await StorageService.upload_file(bucket=None, key="a.json",
                                              file_path="a.json",
                                              extra_args={"ContentType": "application/json",
                                                          "Metadata": {"source": "crawler"}})
    if result.get("success"):
        ...

Every operation is a coroutine: the transfer runs on stor's Tokio runtime, never
holding the GIL, so many asyncio tasks can call it at once (the client-wide pool
bounds requests in flight). ``bucket=None`` means the config's ``default_bucket``.
Failures raise :class:`stor.errors.StorError` subclasses (``KeyNotFound``, ...).
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import IO, Any, Dict, Optional, Union

from . import _stor, errors
from .errors import *  # noqa: F401,F403  (the exception classes are part of the API)

__all__ = ["StorageService", *errors.__all__]
__version__ = _stor.__version__

PathLike = Union[str, "os.PathLike[str]"]
ConfigArg = Union[Dict[str, Any], PathLike]

# One bridge per event loop: it completes the loop's futures when the Rust side
# is done (see python/src/bridge.rs).
_bridges: Dict[asyncio.AbstractEventLoop, _stor.Bridge] = {}


def _bridge() -> _stor.Bridge:
    loop = asyncio.get_running_loop()
    b = _bridges.get(loop)
    if b is None:
        for old in [lp for lp in _bridges if lp.is_closed()]:
            del _bridges[old]
        b = _stor.Bridge(loop)
        loop.add_reader(b.fileno(), b.drain)
        _bridges[loop] = b
    return b


class _Done:
    """What ``init`` returns: nothing to wait for, but ``await`` works too, for code
    that awaited the original's init."""

    __slots__ = ()

    def __await__(self):
        return iter(())

    def __repr__(self) -> str:
        return "<stor: initialized>"


class StorageService:
    """The process-wide storage service, used through its static methods as the
    original's class was."""

    # ------------------------------------------------------------ lifecycle

    @staticmethod
    def init(config: ConfigArg) -> _Done:
        """Opens the store and makes it the process-wide service (replacing any
        earlier one).

        ``config`` is the original's JSON as a dict (``{"storageConfig": {...}}``,
        sibling sections such as ``databaseConfig`` ignored, or the inner object
        alone) or the path of such a file. Without ``storage_type`` it is ``s3`` when
        any S3 setting is given (credentials, endpoint, region, default bucket),
        else the embedded local store. Raises :class:`stor.Config` naming a bad key.
        Returns at once; awaiting the result is allowed and does nothing.
        """
        if isinstance(config, dict):
            _stor.init_json(json.dumps(config))
        elif isinstance(config, (str, os.PathLike)):
            _stor.init_file(os.fspath(config))
        else:
            raise TypeError(f"config must be a dict or a path, not {type(config).__name__}")
        return _Done()

    @staticmethod
    def is_initialized() -> bool:
        """Whether :meth:`init` was called (and :meth:`shutdown` not since)."""
        return _stor.is_initialized()

    @staticmethod
    async def shutdown() -> None:
        """Waits for operations in flight (up to 30 s), then closes the service."""
        await _stor.shutdown(_bridge())

    # ------------------------------------------------------------ transfers

    @staticmethod
    async def upload_file(bucket: Optional[str], key: str, file_path: PathLike,
                          extra_args: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Uploads a file (multipart above ``multipart_threshold``, 100 MiB).

        ``extra_args`` takes boto3's names: ``ContentType`` (guessed from the file
        name when absent), ``Metadata`` (a dict of str), ``CacheControl``,
        ``ContentDisposition``, ``ContentEncoding``, ``StorageClass``,
        ``ServerSideEncryption`` (``"AES256"``/``"aws:kms"``), ``SSEKMSKeyId``.

        Returns ``{"success": True, "attempt": n, "bucket", "key", "size", "etag",
        "elapsed"}``.
        """
        return await _stor.upload_file(_bridge(), bucket, key, os.fspath(file_path), extra_args)

    @staticmethod
    async def upload_fileobj(bucket: Optional[str], key: str,
                             fileobj: Union[bytes, bytearray, memoryview, IO[bytes]],
                             extra_args: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Uploads bytes, or everything a binary file object's ``read()`` yields
        (streamed, read on a worker thread). Same result as :meth:`upload_file`."""
        if isinstance(fileobj, (bytes, bytearray, memoryview)):
            data = fileobj if isinstance(fileobj, bytes) else bytes(fileobj)
            return await _stor.upload_bytes(_bridge(), bucket, key, data, extra_args)
        if not hasattr(fileobj, "read"):
            raise TypeError("fileobj must be bytes or a binary file object with read()")
        return await _stor.upload_reader(_bridge(), bucket, key, fileobj, extra_args)

    @staticmethod
    async def download_file(bucket: Optional[str], key: str, file_path: PathLike) -> Dict[str, Any]:
        """Downloads an object to a file: written beside it and renamed into place
        only when complete and verified, so ``file_path`` never holds a partial file.

        Returns ``{"success": True, "size", "elapsed", "file_path"}``.
        """
        return await _stor.download_file(_bridge(), bucket, key, os.fspath(file_path))

    @staticmethod
    async def download_fileobj(bucket: Optional[str], key: str,
                               fileobj: Optional[IO[bytes]] = None) -> Union[bytes, Dict[str, Any]]:
        """Without ``fileobj``: returns the object's bytes. With a binary file
        object: writes the object into it (streamed, on a worker thread) and
        returns ``{"success": True, "size", "elapsed"}``."""
        if fileobj is None:
            return await _stor.download_bytes(_bridge(), bucket, key)
        if not hasattr(fileobj, "write"):
            raise TypeError("fileobj must be a binary file object with write()")
        return await _stor.download_to_fileobj(_bridge(), bucket, key, fileobj)

    # ------------------------------------------------------------ objects

    @staticmethod
    async def delete_file(bucket: Optional[str], key: str) -> Dict[str, Any]:
        """Deletes an object (a missing key succeeds, as in S3).
        Returns ``{"success": True, "bucket", "key"}``."""
        return await _stor.delete_file(_bridge(), bucket, key)

    @staticmethod
    async def list_files(bucket: Optional[str] = None, prefix: str = "", max_keys: int = 1000,
                         continuation_token: Optional[str] = None) -> Dict[str, Any]:
        """One page of keys under ``prefix`` (at most 1000, as S3 answers).

        Returns ``{"files": [{"key", "size", "last_modified", "etag"}, ...],
        "is_truncated", "next_continuation_token"}``; pass the token back as
        ``continuation_token`` for the next page.
        """
        return await _stor.list_files(_bridge(), bucket, prefix, max_keys, continuation_token)

    @staticmethod
    async def get_file_info(bucket: Optional[str], key: str) -> Dict[str, Any]:
        """``{"key", "size", "last_modified", "etag", "content_type", "metadata"}``;
        ``metadata`` holds the user metadata only. Raises ``KeyNotFound``."""
        return await _stor.get_file_info(_bridge(), bucket, key)

    @staticmethod
    async def copy_file(src_bucket: Optional[str], src_key: str, dst_bucket: Optional[str],
                        dst_key: str) -> Dict[str, Any]:
        """Server-side copy. Returns ``{"success": True, "src_bucket", "src_key",
        "dst_bucket", "dst_key", "size", "etag"}``."""
        return await _stor.copy_file(_bridge(), src_bucket, src_key, dst_bucket, dst_key, False)

    @staticmethod
    async def move_file(src_bucket: Optional[str], src_key: str, dst_bucket: Optional[str],
                        dst_key: str) -> Dict[str, Any]:
        """Copy, confirmed, then the source deleted. Same result as :meth:`copy_file`."""
        return await _stor.copy_file(_bridge(), src_bucket, src_key, dst_bucket, dst_key, True)

    @staticmethod
    async def generate_presigned_url(bucket: Optional[str], key: str, expiration: int = 3600,
                                     method: str = "GET") -> str:
        """A presigned URL for ``GET`` (download) or ``PUT`` (upload), valid for
        ``expiration`` seconds (1 s to 7 days). Needs an S3 store."""
        url = _stor.generate_presigned_url(_bridge(), bucket, key, int(expiration), method)
        if type(url) is str:
            return url
        return await url

    # ------------------------------------------------------------ service

    @staticmethod
    def get_metrics() -> Dict[str, Any]:
        """Counters under the original's names: ``total_operations``,
        ``successful_operations``, ``failed_operations``, ``total_upload_time``,
        ``total_download_time``, ``bytes_uploaded``, ``bytes_downloaded``,
        ``last_operation_time`` (epoch seconds), plus ``retries`` and ``throttled``."""
        return _stor.get_metrics()

    @staticmethod
    async def health_check() -> Dict[str, Any]:
        """Probes the store: ``{"healthy": bool, "backend", "endpoint", "latency",
        "error", "consecutive_failures", "last_success", "clock_skew_seconds"}``."""
        return await _stor.health_check(_bridge())

    # ------------------------------------------------------------ buckets (stor's)

    @staticmethod
    async def create_bucket(bucket: str) -> Dict[str, Any]:
        """Creates a bucket. Returns ``{"success": True, "bucket"}``."""
        return await _stor.create_bucket(_bridge(), bucket)

    @staticmethod
    async def bucket_exists(bucket: str) -> bool:
        """Whether the bucket exists."""
        return await _stor.bucket_exists(_bridge(), bucket)
