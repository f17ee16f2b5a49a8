"""Outbox retention: sent mails older than ``OUTBOX_RETENTION_DAYS`` are deleted
in batches by the ``purge-sent-mail`` beat job; pending and failed ones stay.
On SQLite and PostgreSQL, with the real worker and the real migrations."""
from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from tests.harness.databases import create_database, drop_database
from tests.harness.paths import FLASK, ROOT
from tests.harness.stack import Stack
from tests.harness.wait import wait_until
from webapp.config import from_env
from webapp.extensions import db
from webapp.models import OutboxMessage, utcnow
from webapp.ops import purge

T = "webapp.tasks.periodic."


def add_rows(stack: Stack, tag: str, n: int, **times: timedelta) -> list[int]:
    """``n`` outbox rows addressed to ``<tag>@…``; each ``times`` entry sets that
    column to now minus the given age."""
    now = utcnow()
    with stack.app.app_context():
        values = {"created_at": now - max(times.values(), default=timedelta()),
                  **{col: now - age for col, age in times.items()}}
        rows = [OutboxMessage(kind="verify", to_address=f"{tag}-{i}@example.com", context={},
                              **values) for i in range(n)]
        db.session.add_all(rows)
        db.session.commit()
        return [r.id for r in rows]


def existing(stack: Stack, ids: list[int]) -> set[int]:
    with stack.app.app_context():
        found = set(db.session.scalars(select(OutboxMessage.id).where(OutboxMessage.id.in_(ids))))
        db.session.rollback()
        return found


def test_purge_sent_mail_in_batches_keeps_recent_pending_and_failed(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    days = stack.app.config["OUTBOX_RETENTION_DAYS"]
    old_sent = add_rows(stack, tag + "-old", 5, sent_at=timedelta(days=days + 1))
    recent_sent = add_rows(stack, tag + "-new", 2, sent_at=timedelta(days=days - 1))
    # Published just now: a relay run by another test leaves them alone.
    old_pending = add_rows(stack, tag + "-pending", 2, created_at=timedelta(days=days + 5),
                           published_at=timedelta())
    old_failed = add_rows(stack, tag + "-failed", 2, failed_at=timedelta(days=days + 5))
    keep = recent_sent + old_pending + old_failed

    with stack.app.app_context():
        deleted = purge.purge_sent_mail(batch=2)  # 5 rows: three DELETEs of at most 2
    assert deleted >= 5
    assert existing(stack, old_sent) == set()
    assert existing(stack, keep) == set(keep)

    # The beat job's task on the real worker, with the configured retention.
    more_old = add_rows(stack, tag + "-old2", 3, sent_at=timedelta(days=days, hours=1))
    stack.celery.send_task(T + "purge_sent_mail")
    wait_until(lambda: not existing(stack, more_old), 30, what="old sent mail purged by the worker")
    assert existing(stack, keep) == set(keep)
    with stack.app.app_context():  # idempotent: nothing of ours left to delete
        purge.purge_sent_mail()
    assert existing(stack, keep) == set(keep)


def test_purge_sent_mail_refuses_a_batch_below_one(sqlite_stack: Stack) -> None:
    with sqlite_stack.app.app_context(), pytest.raises(ValueError, match="batch"):
        purge.purge_sent_mail(batch=0)


def test_purge_sent_mail_is_scheduled_with_the_purges() -> None:
    config = from_env({"PURGE_INTERVAL": "600", "OUTBOX_RETENTION_DAYS": "7"})
    assert config["OUTBOX_RETENTION_DAYS"] == 7
    assert from_env({})["OUTBOX_RETENTION_DAYS"] == 30
    assert config["CELERY"]["beat_schedule"]["purge-sent-mail"] == {
        "task": T + "purge_sent_mail", "schedule": 600.0}


def where(index: dict, backend: str) -> str:
    """A reflected index's WHERE clause, lower case ("" when it has none)."""
    return str(index.get("dialect_options", {}).get(f"{backend}_where", "")).lower()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0007_upgrades_and_downgrades(backend: str, stack: Stack,
                                                tmp_path: Path) -> None:
    name = "onboard_mig_" + uuid.uuid4().hex[:10]
    url = create_database(backend, tmp_path, name)
    env = {**stack.env, "DATABASE_URL": url, "CELERY_RESULT_BACKEND": "db+" + url}

    def flask_db(*args: str) -> None:
        subprocess.run([FLASK, "--app", "wsgi", "db", *args], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120)

    def indexes() -> dict[str, dict]:
        engine = create_engine(url)
        try:
            return {ix["name"]: ix for ix in inspect(engine).get_indexes("outbox_messages")}
        finally:
            engine.dispose()

    try:
        flask_db("upgrade")
        after = indexes()
        sent, unsent = after["ix_outbox_messages_sent_at"], after["ix_outbox_messages_unsent"]
        assert sent["column_names"] == ["sent_at"] and unsent["column_names"] == ["id"]
        assert "sent_at is not null" in where(sent, backend), sent
        assert "sent_at is null" in where(unsent, backend), unsent
        assert "failed_at is null" in where(unsent, backend), unsent
        assert "failed_at is not null" in where(after["ix_outbox_messages_failed_at"], backend)
        flask_db("downgrade", "0006")
        before = indexes()
        assert not {"ix_outbox_messages_sent_at", "ix_outbox_messages_unsent"} & set(before)
        assert where(before["ix_outbox_messages_failed_at"], backend) == ""  # the full index of 0005
        flask_db("upgrade")
        assert {"ix_outbox_messages_sent_at", "ix_outbox_messages_unsent"} <= set(indexes())
    finally:
        drop_database(backend, name)


def query_plan(engine, run, verb: str) -> str:  # type: ignore[no-untyped-def]
    """SQLite's EXPLAIN QUERY PLAN of the first ``verb`` (SELECT, DELETE)
    statement on ``outbox_messages`` that ``run()`` executes, as it ran."""
    from sqlalchemy import event

    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(verb) and "outbox_messages" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert seen, f"no {verb} on outbox_messages ran"
    statement, parameters = seen[0]
    raw = engine.raw_connection()
    try:
        return " ".join(str(row[-1]) for row in
                        raw.cursor().execute("EXPLAIN QUERY PLAN " + statement, parameters))
    finally:
        raw.close()


def test_relay_and_purge_read_the_partial_indexes(sqlite_stack: Stack) -> None:
    """The relay's SELECT is planned on the index of unsent rows and the purge's
    DELETE on the index of sent rows, never on a scan of the whole table."""
    from webapp.outbox import relay_unpublished

    with sqlite_stack.app.app_context():
        relay = query_plan(db.engine, lambda: relay_unpublished(3600.0, limit=1), "SELECT")
        purged = query_plan(db.engine, lambda: purge.purge_sent_mail(retention_days=3650),
                            "DELETE")
    assert "ix_outbox_messages_unsent" in relay, relay
    assert "ix_outbox_messages_sent_at" in purged, purged
