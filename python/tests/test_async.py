"""Truly async: many asyncio tasks at once, the loop free while Rust works,
cancellation reaching the Rust side."""
import asyncio
import hashlib

from stor import StorageService


def test_many_tasks_at_once(store):
    cfg, bucket, kind = store

    async def main():
        StorageService.init(cfg)
        if not await StorageService.bucket_exists(bucket):
            await StorageService.create_bucket(bucket)
        bodies = {f"many/{i:03}": hashlib.sha256(str(i).encode()).digest() * 64 for i in range(200)}
        sem = asyncio.Semaphore(64)

        async def up(k, v):
            async with sem:
                return await StorageService.upload_fileobj(None, k, v)

        results = await asyncio.gather(*(up(k, v) for k, v in bodies.items()))
        assert all(r["success"] for r in results)
        got = await asyncio.gather(*(StorageService.download_fileobj(None, k) for k in bodies))
        assert dict(zip(bodies, got)) == bodies
        m = StorageService.get_metrics()
        assert m["bytes_uploaded"] == m["bytes_downloaded"] == 200 * 2048
        await StorageService.shutdown()

    asyncio.run(main())


def test_the_event_loop_runs_while_a_transfer_is_in_flight(store, tmp_path):
    cfg, bucket, kind = store
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x5a" * (24 * 1024 * 1024))

    async def main():
        StorageService.init(cfg)
        if not await StorageService.bucket_exists(bucket):
            await StorageService.create_bucket(bucket)
        upload = asyncio.ensure_future(StorageService.upload_file(None, "big.bin", str(big)))
        ticks = 0
        while not upload.done():
            await asyncio.sleep(0)
            ticks += 1
        assert (await upload)["size"] == 24 * 1024 * 1024
        # A blocking call would have finished before the loop ran this coroutine again.
        assert ticks > 1, ticks
        await StorageService.shutdown()

    asyncio.run(main())


def test_a_cancelled_call_leaves_the_service_usable(store, tmp_path):
    cfg, bucket, kind = store
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * (16 * 1024 * 1024))

    async def main():
        StorageService.init(cfg)
        if not await StorageService.bucket_exists(bucket):
            await StorageService.create_bucket(bucket)
        task = asyncio.ensure_future(StorageService.upload_file(None, "cancelled.bin", str(big)))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        r = await StorageService.upload_fileobj(None, "after.bin", b"still works")
        assert r["success"]
        await StorageService.shutdown()

    asyncio.run(main())


def test_each_event_loop_gets_its_own_bridge(store):
    cfg, bucket, kind = store

    async def once(i):
        StorageService.init(cfg)
        if not await StorageService.bucket_exists(bucket):
            await StorageService.create_bucket(bucket)
        await StorageService.upload_fileobj(None, f"loop/{i}", b"x")
        assert await StorageService.download_fileobj(None, f"loop/{i}") == b"x"

    for i in range(3):
        asyncio.run(once(i))
    asyncio.run(StorageService.shutdown())
