"""An S3-compatible endpoint for tests: a real `moto_server` process on a free loopback port.

`MotoServer.stop()` / `.start()` make faults real (the endpoint is gone, connections are
refused); the same port is reused on restart. moto keeps buckets in memory, so a restart
starts empty — recreate the bucket (`create_bucket()`) after one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3

MOTO = Path(sys.executable).with_name("moto_server")
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION, **CREDENTIALS)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"tl-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def storage_settings(self, bucket: str) -> dict:
        """STORAGES["cold"] pointing at this endpoint (fast failure when it is down)."""
        from botocore.config import Config

        return {
            "BACKEND": "threads.storage.cold.ColdS3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": self.url,
                "region_name": REGION,
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
                "file_overwrite": True,
                "default_acl": None,
                "client_config": Config(
                    connect_timeout=1,
                    read_timeout=5,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                ),
            },
        }
