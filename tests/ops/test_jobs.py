"""Each operations job's effect on real rows and files, on SQLite and PostgreSQL.

Jobs run on the shared stack's real worker (``send_task``) where their effect is
visible in the database or on disk; the daily statistics are recorded in-process
(the row) and mailed by the real worker through the outbox and SMTP sink.
"""
from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
from sqlalchemy import select

from tests.conftest import new_email
from tests.harness.databases import PG_ADMIN_URL
from tests.harness.mail import text_body
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp.extensions import db
from webapp.models import DailyStats, OutboxMessage, UsedToken, User, utcnow
from webapp.ops import purge, stats
from webapp.storage import LocalStore

T = "webapp.tasks.periodic."


def add_user(stack: Stack, *, age_days: float, verified: bool, **extra: object) -> tuple[int, str]:
    email = new_email("ops")
    created = utcnow() - timedelta(days=age_days)
    with stack.app.app_context():
        user = User(email=email, password_hash="x", created_at=created,
                    verified_at=created if verified else None, **extra)
        db.session.add(user)
        db.session.flush()
        db.session.add(OutboxMessage(kind="verify", to_address=email, user_id=user.id,
                                     created_at=created, context={}))
        db.session.commit()
        return user.id, email


def user_exists(stack: Stack, user_id: int) -> bool:
    with stack.app.app_context():
        found = db.session.get(User, user_id) is not None
        db.session.rollback()
        return found


def outbox_count(stack: Stack, email: str) -> int:
    with stack.app.app_context():
        n = len(db.session.scalars(select(OutboxMessage.id).where(OutboxMessage.to_address == email)).all())
        db.session.rollback()
        return n


def test_purge_unverified(stack: Stack) -> None:
    old_id, old_email = add_user(stack, age_days=8, verified=False)
    young_id, young_email = add_user(stack, age_days=6, verified=False)
    verified_id, _ = add_user(stack, age_days=30, verified=True)

    stack.celery.send_task(T + "purge_unverified")
    wait_until(lambda: not user_exists(stack, old_id), 30, what="old unverified account purged")

    assert outbox_count(stack, old_email) == 0  # its mails went with it
    assert user_exists(stack, young_id) and outbox_count(stack, young_email) == 1
    assert user_exists(stack, verified_id)
    with stack.app.app_context():  # idempotent: a second run finds nothing of ours
        purge.purge_unverified()
        assert user_exists(stack, young_id) and user_exists(stack, verified_id)


def test_purge_tokens(stack: Stack) -> None:
    old, recent = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
    with stack.app.app_context():
        lifetime = purge.longest_token_lifetime(stack.app.config)
        db.session.add_all([
            UsedToken(jti=old, purpose="verify", used_at=utcnow() - timedelta(seconds=lifetime + 60)),
            UsedToken(jti=recent, purpose="verify", used_at=utcnow() - timedelta(seconds=lifetime - 600)),
        ])
        db.session.commit()

    def gone() -> bool:
        with stack.app.app_context():
            found = db.session.get(UsedToken, old)
            db.session.rollback()
            return found is None

    stack.celery.send_task(T + "purge_tokens")
    wait_until(gone, 30, what="spent token purged")
    with stack.app.app_context():
        assert db.session.get(UsedToken, recent) is not None


def test_longest_token_lifetime_reads_every_token_setting() -> None:
    assert purge.longest_token_lifetime({"VERIFY_TOKEN_MAX_AGE": 86400,
                                         "PASSWORD_RESET_MAX_AGE": 3600,
                                         "EMAIL_CHANGE_CODE_MAX_AGE": 172800,
                                         "SEND_FILE_MAX_AGE_DEFAULT": 10**9}) == 172800


def test_orphan_files_deleted_by_age_and_reference(tmp_path: Path) -> None:
    now = time.time()
    files = {"derivatives/kept.webp": now - 7200, "derivatives/orphan.webp": now - 7200,
             "derivatives/young.webp": now - 60, "originals/orphan.jpg": now - 86400,
             "backups/onboard-2000-01-01.sqlite3": now - 86400,
             "originals/.up-in-progress": now - 86400}
    for rel, mtime in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        os.utime(path, (mtime, mtime))
    store = LocalStore(tmp_path)
    deleted = purge.purge_orphan_files(store, {"derivatives/kept.webp"}, 3600, now=now)
    assert sorted(deleted) == ["derivatives/orphan.webp", "originals/orphan.jpg"]
    # Referenced, young, backups and hidden (a write in progress) stay.
    assert sorted(o.key for o in store.list()) == [
        "backups/onboard-2000-01-01.sqlite3", "derivatives/kept.webp", "derivatives/young.webp"]
    assert (tmp_path / "originals/.up-in-progress").exists()
    assert purge.purge_orphan_files(store, {"derivatives/kept.webp"}, 3600, now=now) == []


def test_daily_stats_row_and_mail(stack: Stack) -> None:
    day = date(2001, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    other = noon + timedelta(days=1)
    with stack.app.app_context():
        for i in range(3):  # 3 sign-ups on the day, 2 verified, 1 logged in
            db.session.add(User(email=new_email("st"), password_hash="x", created_at=noon,
                                verified_at=noon if i < 2 else None,
                                last_login_at=noon if i == 0 else other))
        db.session.add(User(email=new_email("st"), password_hash="x", created_at=other))
        for sent, failed in ((noon, None), (noon, None), (None, noon), (other, None)):
            db.session.add(OutboxMessage(kind="verify", to_address="x@example.com", context={},
                                         created_at=noon, sent_at=sent, failed_at=failed))
        db.session.commit()

        admins = [new_email("admin"), new_email("admin")]
        stack.app.config["ADMINS"] = admins
        try:
            row = stats.record(day)
            assert row is not None
            assert stats.record(day) is None  # second beat: unique day, nothing mailed
        finally:
            stack.app.config["ADMINS"] = []
        stored = db.session.scalar(select(DailyStats).where(DailyStats.day == day))
        expected = {"day": day.isoformat(), "signups": 3, "verifications": 2, "logins": 1,
                    "uploads": 0, "bytes_saved": 0, "mails_sent": 2, "mails_failed": 1}
        assert stored.day == day
        assert {key: getattr(stored, key) for key in expected if key != "day"} == \
            {key: value for key, value in expected.items() if key != "day"}
        assert stats.compute(day) == expected

    # The beat task itself, on the worker: stores the row of the given day once.
    later = day + timedelta(days=5000)
    for _ in range(2):
        stack.celery.send_task(T + "daily_stats", args=[later.isoformat()])

    def stored_rows() -> int:
        with stack.app.app_context():
            n = len(db.session.scalars(select(DailyStats.id).where(DailyStats.day == later)).all())
            db.session.rollback()
            return n

    wait_until(stored_rows, 30, what="daily_stats row from the worker")

    for admin in admins:
        [msg] = stack.smtp.wait_for(admin)
        assert msg["Subject"] == f"Onboard statistics for {day.isoformat()}"
        body = text_body(msg)
        assert "Sign-ups:       3" in body and "Mails failed:   1" in body
    time.sleep(0.5)
    assert all(len(stack.smtp.to(a)) == 1 for a in admins)


def test_backup_with_retention(stack: Stack) -> None:
    """The worker writes the backup into the store (here the stack's local folder
    store, as the worker sees it) and prunes the old ones."""
    from webapp.storage import get_store

    with stack.app.app_context():
        store = get_store()
    suffix = ".sqlite3" if stack.backend == "sqlite" else ".pgdump"
    for i in range(1, 9):  # 8 old backups; with today's, 2 must go (BACKUP_KEEP=7)
        store.save(f"backups/onboard-2000-01-0{i}{suffix}", io.BytesIO(b"old"))
    _, email = add_user(stack, age_days=0, verified=True)
    today = datetime.now(timezone.utc).date()
    key = f"backups/onboard-{today.isoformat()}{suffix}"
    store.delete(key)

    def names() -> list[str]:
        return sorted(o.key for o in store.list("backups/onboard-"))

    stack.celery.send_task(T + "backup_database")
    wait_until(lambda: key in (n := names()) and len(n) == 7, 120,
               interval=0.2, what="backup written and old ones pruned")
    assert names()[0] == f"backups/onboard-2000-01-03{suffix}" and names()[-1] == key
    scratch = Path(stack.env["INSTANCE_DIR"]) / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())  # the dump left no copy

    final = Path(stack.tmp) / ("restore" + suffix)
    store.fetch(key, final)
    if stack.backend == "sqlite":
        with sqlite3.connect(final) as conn:
            assert conn.execute("select count(*) from users where email = ?", (email,)).fetchone() == (1,)
    else:
        restored = "ops_restore_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{restored}"')
        try:
            subprocess.run(["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d", restored,
                            "--no-owner", str(final)], check=True, capture_output=True, timeout=120)
            with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + restored) as conn:
                assert conn.execute("select count(*) from users where email = %s",
                                    (email,)).fetchone() == (1,)
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')

    # A second run the same day keeps the existing object (idempotent).
    modified = {o.key: o.modified for o in store.list("backups/")}[key]
    from webapp.ops import backup

    with stack.app.app_context():
        assert backup.backup_database(today) == key
    assert {o.key: o.modified for o in store.list("backups/")}[key] == modified


def test_pg_dump_matches_server() -> None:
    out = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True).stdout
    client_major = int(out.split()[-1].split(".")[0])
    with psycopg.connect(PG_ADMIN_URL) as conn:
        server_major = conn.info.server_version // 10000
    print(f"pg_dump {out.strip()}; server major {server_major}")
    assert client_major >= server_major  # pg_dump refuses newer servers


def test_cli_resend_pending_purge_and_stats(stack: Stack) -> None:
    """The operator commands, run through Flask's CLI runner against the real DB;
    the resent mail goes through the real worker and SMTP sink."""
    stale_id, stale = add_user(stack, age_days=0.5, verified=False)   # last mail 12 h old
    fresh_id, fresh = add_user(stack, age_days=0.001, verified=False)  # mailed a minute ago
    runner = stack.app.test_cli_runner()

    dry = runner.invoke(args=["resend-pending", "--older-than", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert stale in dry.output and fresh not in dry.output

    result = runner.invoke(args=["resend-pending", "--older-than", "1"])
    assert result.exit_code == 0, result.output
    [msg] = stack.smtp.wait_for(stale)
    assert msg["Subject"] == "Confirm your e-mail address for Onboard"
    assert outbox_count(stack, stale) == 2 and outbox_count(stack, fresh) == 1
    again = runner.invoke(args=["resend-pending", "--older-than", "1", "--dry-run"])
    assert stale not in again.output  # its latest mail is new now

    old_id, _ = add_user(stack, age_days=9, verified=False)
    purged = runner.invoke(args=["purge"])
    assert purged.exit_code == 0, purged.output
    assert "unverified accounts deleted:" in purged.output and not user_exists(stack, old_id)
    assert user_exists(stack, stale_id) and user_exists(stack, fresh_id)

    shown = runner.invoke(args=["stats"])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^signups\s+\d+$", shown.output, re.M) and "stored row:" in shown.output


# --- with uploads ---------------------------------------------------------------------



def add_upload(stack: Stack, *, when: datetime, original: int, derivative_bytes: list[int],
               original_key: str | None = None) -> tuple[int, list[str]]:
    from webapp.models import Upload, UploadDerivative

    user_id, _ = add_user(stack, age_days=0, verified=True)
    key = uuid.uuid4().hex
    keys = [f"derivatives/{key}/v{i}.webp" for i in range(len(derivative_bytes))]
    with stack.app.app_context():
        upload = Upload(user_id=user_id, key=key, status="done", original_key=original_key,
                        original_format="jpeg", original_bytes=original, original_width=4000,
                        original_height=3000, created_at=when, finished_at=when)
        upload.derivatives = [UploadDerivative(name=f"v{i}", storage_key=k, width=100, height=100,
                                               bytes=b, format="webp")
                              for i, (k, b) in enumerate(zip(keys, derivative_bytes))]
        db.session.add(upload)
        db.session.commit()
        return upload.id, keys


def test_orphan_media_purge_keeps_referenced_files(stack: Stack) -> None:
    media = Path(stack.env["MEDIA_ROOT"])  # the worker's local folder store
    original = f"originals/{uuid.uuid4().hex}.jpg"
    _, keys = add_upload(stack, when=utcnow(), original=5000, derivative_bytes=[900, 300],
                         original_key=original)
    orphan = f"derivatives/{uuid.uuid4().hex}/display.webp"
    young = f"derivatives/{uuid.uuid4().hex}/display.webp"
    old = time.time() - 7200
    for rel in [original, *keys, orphan, young]:
        path = media / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        if rel != young:
            os.utime(path, (old, old))

    stack.celery.send_task(T + "purge_orphan_media")
    wait_until(lambda: not (media / orphan).exists(), 30, what="orphan deleted")
    assert all((media / rel).exists() for rel in [original, *keys, young])


def test_daily_stats_counts_uploads_and_bytes_saved(stack: Stack) -> None:
    day = date(1990, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    add_upload(stack, when=noon, original=10_000, derivative_bytes=[2_000, 500])
    add_upload(stack, when=noon, original=3_000, derivative_bytes=[1_000])
    with stack.app.app_context():
        counts = stats.compute(day)
    assert counts["uploads"] == 2 and counts["bytes_saved"] == (10_000 - 2_000) + (3_000 - 1_000)
