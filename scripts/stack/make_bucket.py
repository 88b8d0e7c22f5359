"""The minio-create-bucket job without MinIO's client: refuse placeholders, create the bucket.

    python -m scripts.stack.make_bucket ENDPOINT BUCKET   (credentials: MINIO_ROOT_USER/PASSWORD)
"""

from __future__ import annotations

import os
import sys

import boto3
from botocore.exceptions import ClientError


def main(endpoint: str, bucket: str) -> int:
    user, password = os.environ.get("MINIO_ROOT_USER", ""), os.environ.get("MINIO_ROOT_PASSWORD", "")
    if "change-me" in user + password:
        print("minio-create-bucket: MINIO_ROOT_USER/MINIO_ROOT_PASSWORD still hold .env.example placeholders", file=sys.stderr)
        return 1
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=user, aws_secret_access_key=password,
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    try:
        s3.create_bucket(Bucket=bucket)
        print(f"minio-create-bucket: created bucket {bucket}")
    except ClientError as exc:
        # --ignore-existing
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        print(f"minio-create-bucket: bucket {bucket} already exists")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
