"""Where every file Onboard keeps lives: one store shared by all hosts.

``STORAGE_URL`` picks the store:

* ``file:///abs/folder`` (default ``file://`` + ``MEDIA_ROOT``): :class:`LocalStore`,
  a local folder, for ``make run`` or one host.
* ``s3://bucket/prefix``: :class:`S3Store`, any S3-compatible store (AWS S3,
  Cloudflare R2, MinIO, SeaweedFS, Ceph) through boto3. Endpoint, credentials
  and region come from boto3's own lookup of the standard variables
  (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, or a role), so Onboard reads
  none of them. ``?addressing_style=path`` forces path-style requests (stores
  reached by a host name without wildcard DNS). The bucket stays private.

Keys are relative POSIX paths made by the app, never by a client:
``originals/<uuid>.<ext>`` (private: the camera's metadata, GPS included),
``derivatives/<token>_<name>.<ext>`` (served to browsers) and
``backups/onboard-<date>.<ext>``. Only ``derivatives/`` ever gets a URL.

Every failure to reach the store (refused connection, time-out, 5xx, bad
credentials) is raised as :class:`StoreUnavailable`; a missing object as
:class:`FileNotFoundError`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app
from s3transfer.exceptions import S3UploadFailedError

ORIGINALS = "originals"
DERIVATIVES = "derivatives"
BACKUPS = "backups"

#: Derivative names carry a random token and never change content, so a browser
#: or CDN may keep them for a year (RFC 8246 ``immutable``).
IMMUTABLE = "public, max-age=31536000, immutable"

#: Copy buffer for streams (bytes): large enough for few syscalls, small enough
#: that a 20 MiB upload is never held in memory.
CHUNK = 1024 * 1024

#: S3 multipart part size (bytes): the smallest S3 allows.
PART = 5 * CHUNK


class StoreUnavailable(OSError):
    """The store could not be reached or refused the request (outage, time-out,
    credentials). Temporary from Onboard's side: retry later."""


@dataclass(frozen=True)
class StoredObject:
    """One object as listed: ``key``, ``size`` in bytes, ``modified`` in epoch seconds."""

    key: str
    size: int
    modified: float


class Store(Protocol):
    """The operations Onboard needs from a store (see the module docstring)."""

    url: str

    def save(self, key: str, stream: BinaryIO, content_type: str | None = None) -> int: ...
    def put_file(self, src: Path, key: str, content_type: str | None = None,
                 cache_control: str | None = None) -> int: ...
    def fetch(self, key: str, dest: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> Iterator[StoredObject]: ...
    def presign(self, key: str, max_age: int, now: float | None = None) -> str | None: ...
    def check(self) -> str: ...


def check_key(key: str) -> str:
    """``key`` if it is a clean relative path; ``ValueError`` otherwise (absolute,
    empty parts, ``.``/``..``, backslashes)."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad storage key {key!r}")
    return key


class LocalStore:
    """Objects as files under a local folder (``file://`` URLs).

    Args:
        root: the folder; created on first write.

    Writes go to a hidden temporary file beside the target and are renamed into
    place, so a reader never sees half a file; :meth:`list` skips hidden names.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.url = "file://" + str(self.root)

    def path(self, key: str) -> Path:
        """The file of ``key``; ``ValueError`` for keys that would leave the root."""
        return self.root.joinpath(*check_key(key).split("/"))

    def _write(self, key: str, copy: Any) -> int:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".up-", dir=path.parent)
        except OSError as exc:  # not a folder, read-only, full: the store is unusable
            raise StoreUnavailable(f"{self.root}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                copy(out)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, StoreUnavailable):
                raise StoreUnavailable(f"{self.root}: {exc}") from exc
            raise
        return path.stat().st_size

    def save(self, key: str, stream: BinaryIO, content_type: str | None = None) -> int:
        """Copy ``stream`` from its current position to ``key`` in 1 MiB chunks;
        returns the bytes stored. On error nothing is left behind and a disk
        error is raised as :class:`StoreUnavailable`."""
        return self._write(key, lambda out: shutil.copyfileobj(stream, out, CHUNK))

    def put_file(self, src: Path, key: str, content_type: str | None = None,
                 cache_control: str | None = None) -> int:
        """Copy the local file ``src`` to ``key``; returns its bytes."""
        with open(src, "rb") as f:
            return self.save(key, f)

    def fetch(self, key: str, dest: Path) -> None:
        """Copy ``key`` to the local file ``dest``; ``FileNotFoundError`` if missing."""
        shutil.copyfile(self.path(key), dest)

    def exists(self, key: str) -> bool:
        """True if ``key`` is stored."""
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing one is fine (deleting twice is harmless)."""
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``, in no set order; hidden
        files and folders (writes in progress) are skipped."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = path.stat()
                        yield StoredObject(key, st.st_size, st.st_mtime)

    def presign(self, key: str, max_age: int, now: float | None = None) -> str | None:
        """None: a local folder has no URL of its own (``GET /media`` serves it)."""
        return None

    def check(self) -> str:
        """Raises :class:`StoreUnavailable` unless the folder exists or can be made
        and is writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"{self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"{self.root} is not writable")
        return f"folder {self.root} writable"


class RoundedS3SigV4QueryAuth(S3SigV4QueryAuth):  # type: ignore[misc]
    """botocore's S3 SigV4 query signer, signing at ``signed_at`` instead of now.

    A presigned URL holds its signing time (``X-Amz-Date``); signing at the start
    of a time window gives the same URL to every render, process and host in the
    window, so the browser's cache keeps working.
    """

    def __init__(self, *args: Any, signed_at: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signed_at = signed_at

    def _modify_request_before_signing(self, request: Any) -> None:
        # add_auth stamped "now" just before; the canonical request and the
        # signature both read this stamp after this call.
        request.context["timestamp"] = self._signed_at.strftime("%Y%m%dT%H%M%SZ")
        super()._modify_request_before_signing(request)


class S3Store:
    """Objects in an S3 bucket under an optional prefix (``s3://bucket/prefix``).

    Args:
        url: ``s3://bucket[/prefix][?addressing_style=path|virtual|auto]``.
        session: a ``boto3.session.Session``; by default a new one, which reads
            boto3's standard configuration (environment, config files, role).
        client: an S3 client of that session; by default one with 5 s connect
            and 60 s read time-outs.

    Raises:
        ValueError: the URL has no bucket, or a bucket name under 3 characters.
    """

    def __init__(self, url: str, session: Any = None, client: Any = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or len(parts.netloc) < 3:
            raise ValueError(f"STORAGE_URL {url!r}: expected s3://bucket/prefix (bucket 3+ characters)")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = unquote(parts.path).strip("/")
        if self.prefix:
            self.prefix += "/"
        self.session = session or boto3.session.Session()
        if client is None:
            style = parse_qs(parts.query).get("addressing_style", ["auto"])[0]
            client = self.session.client("s3", config=Config(
                connect_timeout=5, read_timeout=60, signature_version="s3v4",
                s3={"addressing_style": style}))
        self.client = client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextlib.contextmanager
    def _errors(self, key: str = "") -> Iterator[None]:
        """Map boto errors: a missing object → FileNotFoundError, anything else
        from the store or the network → StoreUnavailable."""
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise StoreUnavailable(f"{self.url}: {code or 'error'}: {exc}") from exc
        except (BotoCoreError, S3UploadFailedError) as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def _transfer_config(self) -> Any:
        # One part of 5 MiB (S3's smallest) in flight at a time: a 20 MiB upload
        # peaks near 6 MiB of memory (tests/uploads/test_object_store.py), and
        # the web's threads are not multiplied by s3transfer's ten.
        return TransferConfig(use_threads=False, multipart_chunksize=PART,
                              multipart_threshold=PART)

    def save(self, key: str, stream: BinaryIO, content_type: str | None = None) -> int:
        """Stream the seekable file ``stream`` (from its current position) to
        ``key``; returns bytes stored. Large bodies go up as multipart parts of 5 MiB, one at a time; a
        failed multipart upload is aborted by s3transfer, so nothing is left."""
        start = stream.tell()
        size = stream.seek(0, os.SEEK_END) - start  # s3transfer closes the stream
        stream.seek(start)
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(key):
            self.client.upload_fileobj(stream, self.bucket, self._key(key), ExtraArgs=extra,
                                       Config=self._transfer_config())
        return size

    def put_file(self, src: Path, key: str, content_type: str | None = None,
                 cache_control: str | None = None) -> int:
        """Upload the local file ``src`` to ``key``; returns its bytes."""
        extra = {k: v for k, v in (("ContentType", content_type),
                                   ("CacheControl", cache_control)) if v}
        with self._errors(key):
            self.client.upload_file(str(src), self.bucket, self._key(key), ExtraArgs=extra,
                                    Config=self._transfer_config())
        return Path(src).stat().st_size

    def fetch(self, key: str, dest: Path) -> None:
        """Download ``key`` into the local file ``dest`` (streamed to disk)."""
        with self._errors(key):
            self.client.download_file(self.bucket, self._key(key), str(dest),
                                      Config=self._transfer_config())

    def exists(self, key: str) -> bool:
        """True if ``key`` is stored (a HEAD request)."""
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Delete ``key``; S3 answers the same for a missing key, so twice is harmless."""
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under ``prefix`` (keys without the store's own prefix),
        listed 1,000 a page."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield StoredObject(obj["Key"][len(self.prefix):], obj["Size"],
                                       obj["LastModified"].timestamp())

    def presign(self, key: str, max_age: int, now: float | None = None) -> str:
        """A GET URL for ``key`` valid at least ``max_age // 2`` seconds from ``now``.

        Signed at the start of the current ``max_age // 2`` window and valid
        ``max_age`` seconds from there, so every call in one window returns the
        same URL (cacheable) and each URL lives between ``max_age / 2`` and
        ``max_age`` seconds. SigV4 caps ``max_age`` at 7 days (604,800 s).
        Signing is local: no request goes to the store.
        """
        window = max(1, max_age // 2)
        now = time.time() if now is None else now
        signed_at = datetime.fromtimestamp(now - now % window, timezone.utc)
        credentials = self.session.get_credentials()
        if credentials is None:
            raise StoreUnavailable("no AWS credentials found (AWS_ACCESS_KEY_ID, a role, ...)")
        # boto3 builds the URL (endpoint, addressing style, key quoting); its own
        # signature is dropped and the request signed again at the rounded time.
        with self._errors(key):
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=max_age)
        request = AWSRequest(method="GET", url=urlsplit(url)._replace(query="").geturl())
        auth = RoundedS3SigV4QueryAuth(credentials.get_frozen_credentials(), "s3",
                                     self.client.meta.region_name or "us-east-1",
                                     expires=max_age, signed_at=signed_at)
        auth.add_auth(request)
        return request.url

    def check(self) -> str:
        """A HEAD on the bucket; raises :class:`StoreUnavailable` when it fails."""
        try:
            with self._errors():
                self.client.head_bucket(Bucket=self.bucket)
        except FileNotFoundError as exc:  # HEAD has no body: a bare 404
            raise StoreUnavailable(f"{self.url}: bucket not found (404)") from exc
        return f"HEAD s3://{self.bucket} answered"


def open_store(url: str) -> Store:
    """The store for ``url`` (``file://…`` or ``s3://…``).

    Raises:
        ValueError: another scheme, a relative ``file://`` path, or a bad s3 URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.netloc + parts.path)
        if not os.path.isabs(path):
            raise ValueError(f"STORAGE_URL {url!r}: file:// needs an absolute path")
        return LocalStore(path)
    if parts.scheme == "s3":
        return S3Store(url)
    raise ValueError(f"STORAGE_URL {url!r}: expected file:///folder or s3://bucket/prefix")


def get_store() -> Store:
    """The store of the current app (``STORAGE_URL``), made once per app and URL
    (a boto3 client is thread-safe and keeps its connection pool)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    url = app.config["STORAGE_URL"]
    cached = app.extensions.get("onboard_store")
    if cached is None or cached.url != url:
        cached = app.extensions["onboard_store"] = open_store(url)
    return cached


def public_url(store: Store, key: str) -> str | None:
    """The absolute URL a browser fetches the derivative ``key`` from, or None
    when the web serves it (a local store without ``MEDIA_URL``).

    ``MEDIA_URL`` (a CDN or public base URL in front of ``derivatives/``) wins;
    otherwise an S3 store presigns (``UPLOAD_URL_MAX_AGE`` seconds).

    Raises:
        ValueError: ``key`` is not under ``derivatives/`` (originals carry GPS
            and are never given a URL).
    """
    if not check_key(key).startswith(DERIVATIVES + "/"):
        raise ValueError(f"only derivatives get a URL, not {key!r}")
    cfg = current_app.config
    if cfg["MEDIA_URL"]:
        return cfg["MEDIA_URL"].rstrip("/") + "/" + quote(key)
    return store.presign(key, cfg["UPLOAD_URL_MAX_AGE"])


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A fresh temporary folder under ``INSTANCE_DIR/scratch`` for one task's
    files (a downloaded original, derivatives, a dump before upload).

    Use it as a context manager: the folder and everything in it is removed when
    the block ends, also on error. Under ``INSTANCE_DIR`` rather than ``/tmp`` so
    an operator (and the tests) can see that a worker keeps nothing.
    """
    root = Path(current_app.config["INSTANCE_DIR"]) / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="task-", dir=root)
