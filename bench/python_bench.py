#!/usr/bin/env python3
"""What Python users have, side by side on one SeaweedFS, in one run: the original
service's aioboto3 pattern (../shared/peerbench/aioboto3_ref.py), obstore, and
stor's Python package (python/).

Workloads, each from one asyncio program:
  small-up     1000 x 64 KiB files uploaded, 64 tasks in flight
  small-down   those 1000 objects downloaded to files, 64 tasks in flight
  big-up       one 512 MiB file uploaded
  big-down     that object downloaded to a file
  presign      10 000 presigned GET URLs

Each (contender, workload) runs in a child process of its own, so its peak RSS
(VmHWM, reported by the child) is its own; the time is the operation's, after the
interpreter started and the client was set up (as peerbench's "in-process op").
Contenders are interleaved and the order rotates each round; one warm-up round,
then BENCH_REPS rounds; medians. Every upload is checked (key set and sizes), every
download's bytes (sha256) against the source, one presigned URL is fetched.

Run by bench/python.sh (which builds the package and starts SeaweedFS).
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ENDPOINT = os.environ["STOR_TEST_SEAWEEDFS"]
KEY_ID = os.environ.get("STOR_TEST_ACCESS_KEY_ID", "stor-test")
SECRET = os.environ.get("STOR_TEST_SECRET_ACCESS_KEY", "stor-test-secret")
REGION = "us-east-1"
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/stor-pybench"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
SMALL_N = int(os.environ.get("BENCH_SMALL_COUNT", "1000"))
SMALL_KIB = int(os.environ.get("BENCH_SMALL_KIB", "64"))
BIG_MIB = int(os.environ.get("BENCH_BIG_MIB", "512"))
PRESIGN_N = int(os.environ.get("BENCH_PRESIGN_N", "10000"))
IN_FLIGHT = 64
PEERBENCH = Path(os.environ.get("PEERBENCH_DIR", Path(__file__).resolve().parents[2] / "shared" / "peerbench"))
CONTENDERS = os.environ.get("BENCH_CONTENDERS", "aioboto3,obstore,stor").split(",")
WORKLOADS = os.environ.get("BENCH_WORKLOADS", "small-up,small-down,big-up,big-down,presign").split(",")
BUCKET = "pybench"


def small_files():
    return sorted((WORK / "small").iterdir())


async def bounded(coros):
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


# ------------------------------------------------------------------ contenders
# Each: async setup() -> client, then the five operations. Keys come in as
# (prefix, ...) so uploads of different runs never collide.

class Aioboto3Ref:
    """The original service's pattern, from peerbench's aioboto3_ref.py: one session,
    one client (max_pool_connections=50, adaptive retries), managed transfers inside
    the 3-try loop, Content-Type guessed."""

    async def setup(self):
        spec = importlib.util.spec_from_file_location("aioboto3_ref", PEERBENCH / "aioboto3_ref.py")
        ref = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ref)
        os.environ.update(AWS_ENDPOINT_URL=ENDPOINT, AWS_ACCESS_KEY_ID=KEY_ID,
                          AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION=REGION)
        self.pool = ref.StorageClientPool()
        await self.pool.init()
        self.s = ref.S3StorageClient(self.pool)

    async def close(self):
        await self.pool.close()

    async def upload_many(self, prefix, files):
        await bounded([self.s.upload_file(BUCKET, prefix + f.name, str(f)) for f in files])

    async def download_many(self, keys, dest):
        await bounded([self.s.download_file(BUCKET, k, str(dest / k.rsplit("/", 1)[1])) for k in keys])

    async def upload_big(self, key, path):
        await self.s.upload_file(BUCKET, key, str(path))

    async def download_big(self, key, path):
        await self.s.download_file(BUCKET, key, str(path))

    async def presign(self, key, n):
        return [await self.s.generate_presigned_url(BUCKET, key) for _ in range(n)]


class Obstore:
    """obstore's own idioms: put_async from a path, get_async then the bytes (small)
    or the chunk stream (big) written to the file, sign() per URL."""

    async def setup(self):
        import obstore
        from obstore.store import S3Store
        self.obs = obstore
        self.store = S3Store(BUCKET, endpoint=ENDPOINT, access_key_id=KEY_ID,
                             secret_access_key=SECRET, region=REGION,
                             virtual_hosted_style_request=False,
                             client_options={"allow_http": True})

    async def close(self):
        pass

    async def upload_many(self, prefix, files):
        await bounded([self.obs.put_async(self.store, prefix + f.name, f) for f in files])

    async def _get_to(self, key, path):
        r = await self.obs.get_async(self.store, key)
        data = await r.bytes_async()
        with open(path, "wb") as out:
            out.write(data)

    async def download_many(self, keys, dest):
        await bounded([self._get_to(k, dest / k.rsplit("/", 1)[1]) for k in keys])

    async def upload_big(self, key, path):
        await self.obs.put_async(self.store, key, path)

    async def download_big(self, key, path):
        r = await self.obs.get_async(self.store, key)
        with open(path, "wb") as out:
            async for chunk in r.stream(min_chunk_size=8 * 1024 * 1024):
                out.write(chunk)

    async def presign(self, key, n):
        from datetime import timedelta
        return [self.obs.sign(self.store, "GET", key, timedelta(hours=1)) for _ in range(n)]


class Stor:
    """stor's package with the original's API and the original's config."""

    async def setup(self):
        from stor import StorageService
        self.S = StorageService
        StorageService.init({"storageConfig": {
            "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET,
            "region_name": REGION, "endpoint_url": ENDPOINT, "default_bucket": BUCKET}})

    async def close(self):
        await self.S.shutdown()

    async def upload_many(self, prefix, files):
        await bounded([self.S.upload_file(None, prefix + f.name, str(f)) for f in files])

    async def download_many(self, keys, dest):
        await bounded([self.S.download_file(None, k, str(dest / k.rsplit("/", 1)[1])) for k in keys])

    async def upload_big(self, key, path):
        await self.S.upload_file(None, key, str(path))

    async def download_big(self, key, path):
        await self.S.download_file(None, key, str(path))

    async def presign(self, key, n):
        return [await self.S.generate_presigned_url(None, key) for _ in range(n)]


IMPLS = {"aioboto3": Aioboto3Ref, "obstore": Obstore, "stor": Stor}


# ------------------------------------------------------------------ child

async def child(contender, workload, arg):
    c = IMPLS[contender]()
    await c.setup()
    out = {}
    t0 = time.perf_counter()
    if workload == "small-up":
        await c.upload_many(arg, small_files())
    elif workload == "small-down":
        dest = Path(arg)
        dest.mkdir(parents=True)
        await c.download_many([f"src/small/{f.name}" for f in small_files()], dest)
    elif workload == "big-up":
        await c.upload_big(arg, WORK / "big.bin")
    elif workload == "big-down":
        await c.download_big("src/big.bin", Path(arg))
    elif workload == "presign":
        urls = await c.presign("src/small/" + small_files()[0].name, PRESIGN_N)
        out["url"] = urls[-1]
        out["count"] = len(urls)
    out["seconds"] = time.perf_counter() - t0
    await c.close()
    # The child's own peak RSS: VmHWM, which starts afresh at exec (getrusage's
    # ru_maxrss would carry the parent's peak across the exec).
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    out["rss_mib"] = int(hwm.split()[1]) / 1024
    print(json.dumps(out))


# ------------------------------------------------------------------ parent

def boto():
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, region_name=REGION,
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=64))


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_data(s3):
    (WORK / "small").mkdir(parents=True, exist_ok=True)
    if len(list((WORK / "small").iterdir())) != SMALL_N:
        for i in range(SMALL_N):
            (WORK / "small" / f"f{i:05}.bin").write_bytes(os.urandom(SMALL_KIB * 1024))
    big = WORK / "big.bin"
    if not big.exists() or big.stat().st_size != BIG_MIB << 20:
        with open(big, "wb") as f:
            for _ in range(BIG_MIB):
                f.write(os.urandom(1 << 20))
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.ClientError:
        pass
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda f: s3.upload_file(str(f), BUCKET, f"src/small/{f.name}"), small_files()))
    s3.upload_file(str(big), BUCKET, "src/big.bin")
    return {f.name: sha(f) for f in small_files()}, sha(big)


def delete_prefix(s3, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [{"Key": o["Key"]} for p in pages for o in p.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i:i + 1000]})


def run_one(contender, workload, s3, sums, big_sum, verify):
    run = uuid.uuid4().hex[:8]
    arg = {
        "small-up": f"up/{run}/",
        "small-down": str(WORK / "down" / run),
        "big-up": f"up/{run}/big.bin",
        "big-down": str(WORK / "down" / f"{run}.bin"),
        "presign": "",
    }[workload]
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, __file__, "--child", contender, workload, arg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{contender} {workload} failed:\n{err.decode()[-3000:]}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    # Verify, untimed.
    if workload == "small-up":
        got = {o["Key"].rsplit("/", 1)[1]: o["Size"] for p in s3.get_paginator("list_objects_v2")
               .paginate(Bucket=BUCKET, Prefix=arg) for o in p.get("Contents", [])}
        assert got == {n: SMALL_KIB * 1024 for n in sums}, f"{contender}: {len(got)} objects"
        if verify:
            for n, h in list(sums.items())[:50]:
                body = s3.get_object(Bucket=BUCKET, Key=arg + n)["Body"].read()
                assert hashlib.sha256(body).hexdigest() == h, n
        delete_prefix(s3, arg)
    elif workload == "small-down":
        d = Path(arg)
        assert {f.name: sha(f) for f in d.iterdir()} == sums, contender
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    elif workload == "big-up":
        assert s3.head_object(Bucket=BUCKET, Key=arg)["ContentLength"] == BIG_MIB << 20
        if verify:
            tmp = WORK / "verify.bin"
            s3.download_file(BUCKET, arg, str(tmp))
            assert sha(tmp) == big_sum, contender
            tmp.unlink()
        s3.delete_object(Bucket=BUCKET, Key=arg)
    elif workload == "big-down":
        assert sha(arg) == big_sum, contender
        os.unlink(arg)
    elif workload == "presign":
        assert res["count"] == PRESIGN_N
        body = urllib.request.urlopen(res["url"], timeout=30).read()
        assert len(body) == SMALL_KIB * 1024, contender
    os.sync()
    return res


def throughput(workload, seconds):
    if workload in ("small-up", "small-down"):
        mb = SMALL_N * SMALL_KIB * 1024 / 1e6
        return f"{mb / seconds:.1f} MB/s, {SMALL_N / seconds:.0f} files/s"
    if workload in ("big-up", "big-down"):
        return f"{(BIG_MIB << 20) / 1e6 / seconds:.0f} MB/s"
    return f"{PRESIGN_N / seconds:,.0f} URLs/s"


def main():
    s3 = boto()
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"data: {SMALL_N} x {SMALL_KIB} KiB, {BIG_MIB} MiB, {PRESIGN_N} URLs; "
          f"{REPS} reps after a warm-up; server {ENDPOINT}", flush=True)
    sums, big_sum = make_data(s3)
    results = {(c, w): [] for c in CONTENDERS for w in WORKLOADS}
    rss = {(c, w): 0.0 for c in CONTENDERS for w in WORKLOADS}
    for rnd in range(REPS + 1):
        order = CONTENDERS[rnd % len(CONTENDERS):] + CONTENDERS[:rnd % len(CONTENDERS)]
        for w in WORKLOADS:
            for c in order:
                r = run_one(c, w, s3, sums, big_sum, verify=rnd == 0)
                tag = "warm-up" if rnd == 0 else f"round {rnd}"
                print(f"  {tag:8} {w:10} {c:9} {r['seconds']:8.3f} s  {r['rss_mib']:7.1f} MiB", flush=True)
                if rnd > 0:
                    results[(c, w)].append(r["seconds"])
                rss[(c, w)] = max(rss[(c, w)], r["rss_mib"])
    load = os.getloadavg()[0]
    lines = [
        "",
        f"| workload | contender | median s | min-max s | throughput | x aioboto3 | x obstore | peak RSS MiB | RSS / aioboto3 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for w in WORKLOADS:
        med = {c: statistics.median(results[(c, w)]) for c in CONTENDERS}
        for c in CONTENDERS:
            xs = results[(c, w)]
            vs_a = med["aioboto3"] / med[c] if "aioboto3" in med else float("nan")
            vs_o = med["obstore"] / med[c] if "obstore" in med else float("nan")
            rss_a = rss[(c, w)] / rss[("aioboto3", w)] if "aioboto3" in CONTENDERS else float("nan")
            table[(c, w)] = dict(median=med[c], runs=xs, rss_mib=rss[(c, w)])
            lines.append(f"| {w} | {c} | {med[c]:.3f} | {min(xs):.3f}-{max(xs):.3f} | "
                         f"{throughput(w, med[c])} | {vs_a:.2f}x | {vs_o:.2f}x | "
                         f"{rss[(c, w)]:.0f} | {rss_a:.2f} |")
    lines.append("")
    lines.append("x aioboto3 / x obstore: that contender's median time / this row's "
                 "(2.00x = twice as fast). Load average at the end: %.1f." % load)
    print("\n".join(lines))
    out = WORK / "results.json"
    out.write_text(json.dumps({f"{c}/{w}": v for (c, w), v in table.items()}, indent=1))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(child(*sys.argv[2:5]))
    else:
        main()
