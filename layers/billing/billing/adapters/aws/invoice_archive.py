"""The month's invoice CSV in S3 (``invoices/YYYY-MM.csv``); an unchanged body is never rewritten."""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.aws.clients import s3_client


class S3InvoiceArchive:
    """The month's CSV in S3. Written only when absent or different, so a re-run changes nothing."""

    def __init__(self, bucket: str, client: Any = None):
        self.bucket = bucket
        self.client = client or s3_client()

    @staticmethod
    def key(month: str) -> str:
        return f"invoices/{month}.csv"

    def put(self, month: str, body: bytes) -> bool:
        key = self.key(month)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if head.get("ETag", "").strip('"') == hashlib.md5(body).hexdigest():
                return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv")
        return True

    def get(self, month: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(month))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
