"""A program written against the original service's API runs unchanged on stor:
result shapes, default bucket, continuation, metrics names, errors."""
import asyncio
import io
import logging
import urllib.request

import pytest

import stor
from stor import StorageService


async def _setup(cfg, bucket):
    StorageService.init(cfg)
    assert StorageService.is_initialized()
    if not await StorageService.bucket_exists(bucket):
        await StorageService.create_bucket(bucket)


def test_the_original_programs_calls_and_shapes(store, tmp_path):
    cfg, bucket, kind = store
    doc = tmp_path / "article.json"
    doc.write_bytes(b'{"title": "KOSPI closes higher"}')

    async def main():
        await _setup(cfg, bucket)
        # The crawler's call, verbatim.
        result = await StorageService.upload_file(
            bucket=bucket, key="news/2026/a.json", file_path=str(doc),
            extra_args={"ContentType": "application/json",
                        "Metadata": {"source": "crawler", "lang": "en"}})
        assert result.get("success") is True
        assert set(result) == {"success", "attempt", "bucket", "key", "size", "etag", "elapsed"}
        assert (result["bucket"], result["key"], result["size"]) == (bucket, "news/2026/a.json", 32)
        assert result["attempt"] == 1 and result["elapsed"] >= 0 and result["etag"]

        # bucket=None: the default bucket.
        info = await StorageService.get_file_info(None, "news/2026/a.json")
        assert set(info) == {"key", "size", "last_modified", "etag", "content_type", "metadata"}
        assert info["content_type"] == "application/json"
        assert info["metadata"] == {"source": "crawler", "lang": "en"}  # user metadata only
        assert info["last_modified"].endswith("+00:00")
        assert info["etag"] == result["etag"]

        got = tmp_path / "out.json"
        d = await StorageService.download_file(bucket, "news/2026/a.json", str(got))
        assert d == {"success": True, "size": 32, "elapsed": d["elapsed"], "file_path": str(got)}
        assert got.read_bytes() == doc.read_bytes()

        # upload_fileobj: bytes, and a binary file object (streamed).
        r = await StorageService.upload_fileobj(None, "news/b.bin", b"\x00\x01" * 1000)
        assert r["success"] and r["size"] == 2000
        big = bytes(range(256)) * 12000  # 3 MiB: several reads of the file object
        r = await StorageService.upload_fileobj(None, "news/c.bin", io.BytesIO(big),
                                                extra_args={"ContentType": "application/x-test"})
        assert r["size"] == len(big)
        assert await StorageService.download_fileobj(None, "news/b.bin") == b"\x00\x01" * 1000
        sink = io.BytesIO()
        w = await StorageService.download_fileobj(None, "news/c.bin", sink)
        assert w["success"] and w["size"] == len(big) and sink.getvalue() == big

        # list_files with continuation.
        for i in range(5):
            await StorageService.upload_fileobj(None, f"page/{i}.txt", b"x" * i)
        seen, token = [], None
        while True:
            page = await StorageService.list_files(None, prefix="page/", max_keys=2,
                                                   continuation_token=token)
            assert set(page) == {"files", "is_truncated", "next_continuation_token"}
            assert len(page["files"]) <= 2
            for f in page["files"]:
                assert set(f) == {"key", "size", "last_modified", "etag"}
            seen += [(f["key"], f["size"]) for f in page["files"]]
            if not page["is_truncated"]:
                assert page["next_continuation_token"] is None
                break
            token = page["next_continuation_token"]
        assert seen == [(f"page/{i}.txt", i) for i in range(5)]
        everything = await StorageService.list_files(bucket, prefix="")
        assert len(everything["files"]) == 8 and not everything["is_truncated"]

        c = await StorageService.copy_file(bucket, "news/b.bin", None, "copies/b.bin")
        assert c["success"] and c["dst_key"] == "copies/b.bin" and c["dst_bucket"] == bucket
        m = await StorageService.move_file(None, "copies/b.bin", None, "moved/b.bin")
        assert m["success"]
        with pytest.raises(stor.KeyNotFound):
            await StorageService.get_file_info(None, "copies/b.bin")
        assert (await StorageService.get_file_info(None, "moved/b.bin"))["size"] == 2000

        dl = await StorageService.delete_file(bucket, "moved/b.bin")
        assert dl == {"success": True, "bucket": bucket, "key": "moved/b.bin"}

        metrics = StorageService.get_metrics()
        for name in ("total_operations", "successful_operations", "failed_operations",
                     "total_upload_time", "total_download_time", "bytes_uploaded",
                     "bytes_downloaded", "last_operation_time"):
            assert name in metrics, name
        assert metrics["failed_operations"] >= 1  # the KeyNotFound above
        assert metrics["bytes_uploaded"] >= 32 + 2000 + len(big)
        assert isinstance(metrics["last_operation_time"], float)

        health = await StorageService.health_check()
        assert health["healthy"] is True and health["backend"] == kind

        if kind == "s3":
            url = await StorageService.generate_presigned_url(bucket, "news/2026/a.json",
                                                              expiration=600)
            body = await asyncio.get_running_loop().run_in_executor(
                None, lambda: urllib.request.urlopen(url, timeout=30).read())
            assert body == doc.read_bytes()
            put = await StorageService.generate_presigned_url(None, "up.txt", method="PUT")
            req = urllib.request.Request(put, data=b"via url", method="PUT")
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: urllib.request.urlopen(req, timeout=30).read())
            assert await StorageService.download_fileobj(None, "up.txt") == b"via url"
        else:
            with pytest.raises(stor.Unsupported):
                await StorageService.generate_presigned_url(bucket, "news/2026/a.json")

        await StorageService.shutdown()
        assert not StorageService.is_initialized()

    asyncio.run(main())


def test_errors_are_typed_with_code_retryable_attempts(store):
    cfg, bucket, kind = store

    async def main():
        await _setup(cfg, bucket)
        with pytest.raises(stor.KeyNotFound) as e:
            await StorageService.get_file_info(bucket, "missing.json")
        err = e.value
        assert isinstance(err, stor.StorError)
        assert err.retryable is False and err.attempts >= 1 and err.kind == "KeyNotFound"
        assert err.bucket == bucket and err.key == "missing.json"
        assert err.code in ("NoSuchKey", "NotFound", "KeyNotFound")
        with pytest.raises(stor.BucketNotFound):
            await StorageService.upload_fileobj("no-such-bucket-py-test", "k", b"x")
        with pytest.raises(stor.InvalidInput) as e:
            await StorageService.upload_fileobj(None, "k", b"x", extra_args={"ContentTyp": "a/b"})
        assert "ContentTyp" in str(e.value) and isinstance(e.value, ValueError)
        with pytest.raises(stor.InvalidInput):
            await StorageService.upload_fileobj(None, "", b"x")
        await StorageService.shutdown()
        with pytest.raises(stor.NotInitialized):
            await StorageService.upload_fileobj(None, "k", b"x")

    asyncio.run(main())


def test_config_errors_name_the_key_and_suggest_one(tmp_path):
    with pytest.raises(stor.Config) as e:
        StorageService.init({"storageConfig": {"regoin_name": "x"}})
    assert "did you mean region_name?" in str(e.value)
    path = tmp_path / "storage.json"
    path.write_text('{"storageConfig": {"storage_type": "local", "local_root": "%s"}}' % (tmp_path / "s"))

    async def main():
        await StorageService.init(path)  # a path; awaiting init is allowed
        assert StorageService.is_initialized()
        await StorageService.shutdown()

    asyncio.run(main())


def test_init_and_shutdown_are_logged_at_info(store, caplog):
    cfg, bucket, kind = store
    caplog.set_level(logging.INFO, logger="stor")

    async def main():
        StorageService.init(cfg)
        await StorageService.shutdown()

    asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "stor" and r.levelno == logging.INFO]
    if kind == "s3":
        assert any(l.startswith("config has no storage_type: using s3") for l in lines), lines
        assert f"storage service initialized for region us-east-1 (s3 at " in "\n".join(lines)
    else:
        assert any(l.startswith("storage service initialized (local store at") for l in lines), lines
    assert any(l.startswith("storage service shut down (") and f"bucket {bucket}" in l
               for l in lines), lines
