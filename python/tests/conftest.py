"""Stores for the tests: the embedded local store always, SeaweedFS when
scripts/with-servers.sh runs them (STOR_TEST_SEAWEEDFS); with
STOR_TEST_REQUIRE_SERVERS=1 a missing server fails instead of skipping."""
import os
import uuid

import pytest


def seaweedfs_config(bucket):
    url = os.environ.get("STOR_TEST_SEAWEEDFS")
    if not url:
        if os.environ.get("STOR_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail("STOR_TEST_SEAWEEDFS is not set but STOR_TEST_REQUIRE_SERVERS=1")
        pytest.skip("no SeaweedFS (run under scripts/with-servers.sh)")
    # The original's file, as the platform writes it: no storage_type (so S3),
    # sibling sections of other components beside storageConfig.
    return {
        "storageConfig": {
            "aws_access_key_id": os.environ.get("STOR_TEST_ACCESS_KEY_ID", "stor-test"),
            "aws_secret_access_key": os.environ.get("STOR_TEST_SECRET_ACCESS_KEY", "stor-test-secret"),
            "region_name": "us-east-1",
            "endpoint_url": url,
            "default_bucket": bucket,
            "upload_timeout": 300,
            "download_timeout": 300,
            "max_retries": 3,
        },
        "databaseConfig": {"host": "db.internal", "port": 5432},
    }


def local_config(root, bucket):
    return {"storageConfig": {"storage_type": "local", "local_root": str(root),
                              "default_bucket": bucket}}


@pytest.fixture(params=["local", "seaweedfs"])
def store(request, tmp_path):
    """(config, bucket, kind) of a fresh bucket on each store."""
    bucket = "py-" + uuid.uuid4().hex[:12]
    if request.param == "local":
        return local_config(tmp_path / "store", bucket), bucket, "local"
    return seaweedfs_config(bucket), bucket, "s3"
