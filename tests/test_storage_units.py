"""Pure logic of webapp.storage: key rules, STORAGE_URL parsing, which URL a
derivative gets, and the local folder store's behaviour on a temporary folder."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.unit_config import TEST_CONFIG
from webapp import create_app
from webapp.storage import (LocalStore, S3Store, StoreUnavailable, check_key, open_store,
                            public_url)


@pytest.mark.parametrize("key", ["", "/abs/x.jpg", "a//b", "a/../b", "./a", "a\\b", ".."])
def test_bad_keys_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_open_store_by_scheme(tmp_path: Path) -> None:
    local = open_store(f"file://{tmp_path}")
    assert isinstance(local, LocalStore) and local.root == tmp_path
    s3 = open_store("s3://onboard-media/prod/uploads?addressing_style=path")
    assert isinstance(s3, S3Store) and s3.bucket == "onboard-media"
    assert s3.prefix == "prod/uploads/"
    assert s3.client.meta.config.s3["addressing_style"] == "path"
    for bad in ("file://relative/path", "ftp://host/x", "s3://ab", "/plain/path"):
        with pytest.raises(ValueError, match="STORAGE_URL"):
            open_store(bad)


def test_which_url_a_derivative_gets(tmp_path: Path) -> None:
    app = create_app({**TEST_CONFIG, "MEDIA_ROOT": str(tmp_path),
                      "STORAGE_URL": f"file://{tmp_path}"})
    store = LocalStore(tmp_path)
    with app.app_context():
        assert public_url(store, "derivatives/t_display.jpg") is None  # served by /media
        with pytest.raises(ValueError, match="only derivatives"):
            public_url(store, "originals/x.jpg")
        app.config["MEDIA_URL"] = "https://cdn.example.com/media/"
        assert public_url(store, "derivatives/t_display.jpg") == \
            "https://cdn.example.com/media/derivatives/t_display.jpg"
    store.save("derivatives/t_display.jpg", io.BytesIO(b"x"))
    client = app.test_client()
    resp = client.get("/media/derivatives/t_display.jpg")  # with MEDIA_URL: a redirect there
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://cdn.example.com/media/derivatives/t_display.jpg"
    app.config["MEDIA_URL"] = ""
    assert client.get("/media/derivatives/t_display.jpg").data == b"x"
    assert client.get("/media/originals/t.jpg").status_code == 404


def test_local_store_round_trip_and_failures(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "media")
    assert store.save("originals/a.jpg", io.BytesIO(b"abc")) == 3
    assert store.exists("originals/a.jpg") and not store.exists("originals/b.jpg")
    store.fetch("originals/a.jpg", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"abc"
    with pytest.raises(FileNotFoundError):
        store.fetch("originals/b.jpg", tmp_path / "none")
    assert [o.key for o in store.list("originals/")] == ["originals/a.jpg"]
    store.delete("originals/a.jpg")
    store.delete("originals/a.jpg")  # twice is harmless
    assert list(store.list()) == []
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreUnavailable):
        LocalStore(blocker).save("originals/a.jpg", io.BytesIO(b"abc"))
    with pytest.raises(StoreUnavailable):
        LocalStore(blocker / "sub").check()
