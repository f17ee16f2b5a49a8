"""``/password/forgot`` and ``/verify/resend`` do the same work for a known and
an unknown address (same SQL, one broker publish), over the real app, RabbitMQ,
worker and SMTP sink. The timing comparison is in ``bench/enumeration_timing.py``."""
from __future__ import annotations

from typing import Any

from celery.signals import after_task_publish
from sqlalchemy import event, select

from tests.account_helpers import (mail_with_subject, outbox_count, own_app,
                                   verified_user, wait_idle)
from tests.conftest import csrf_from, new_email, register
from tests.harness.stack import Stack
from tests.harness.wait import free_port
from webapp import config as config_module
from webapp.extensions import db
from webapp.models import OutboxMessage


def post_counted(app: Any, client: Any, path: str, form: str, email: str) -> tuple[Any, list[str], list[str]]:
    """POST ``email`` to ``path`` (CSRF token from ``form``); returns the response,
    the SQL statements the web ran and the tasks it published during the POST."""
    token = csrf_from(client.get(form).data)
    statements: list[str] = []
    published: list[str] = []

    def on_sql(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    def on_publish(sender: str | None = None, **_kw: Any) -> None:
        published.append(str(sender))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_sql)
    after_task_publish.connect(on_publish, weak=False)
    try:
        resp = client.post(path, data={"email": email, "csrf_token": token})
    finally:
        event.remove(engine, "before_cursor_execute", on_sql)
        after_task_publish.disconnect(on_publish)
    return resp, statements, published


def test_forgot_does_the_same_work_for_known_and_unknown(stack: Stack) -> None:
    known = verified_user(stack, "enum")
    unknown = new_email("enum-ghost")
    client = stack.client()
    k_resp, k_sql, k_pub = post_counted(stack.app, client, "/password/forgot",
                                        "/password/forgot", known)
    u_resp, u_sql, u_pub = post_counted(stack.app, client, "/password/forgot",
                                        "/password/forgot", unknown)
    assert k_resp.status_code == u_resp.status_code == 200
    assert k_sql == u_sql, (k_sql, u_sql)
    assert k_pub == u_pub == ["webapp.tasks.account.password_reset"]
    # The worker did the rest: a mail for the account, nothing for the stranger.
    mail_with_subject(stack, known, "Reset your Onboard password")
    wait_idle(stack)
    assert stack.smtp.to(unknown) == [] and outbox_count(stack, "password_reset", unknown) == 0


def test_resend_does_the_same_work_for_known_and_unknown(stack: Stack) -> None:
    client = stack.client()
    known = new_email("enum-unverified")
    assert register(client, known).status_code == 303
    stack.smtp.wait_for(known)
    unknown = new_email("enum-nobody")
    k_resp, k_sql, k_pub = post_counted(stack.app, client, "/verify/resend", "/register/done", known)
    u_resp, u_sql, u_pub = post_counted(stack.app, client, "/verify/resend", "/register/done", unknown)
    assert k_resp.status_code == u_resp.status_code == 200
    assert k_resp.data.replace(known.encode(), b"") == u_resp.data.replace(unknown.encode(), b"")
    assert k_sql == u_sql, (k_sql, u_sql)
    assert k_pub == u_pub == ["webapp.tasks.account.resend_verification"]
    assert len(stack.smtp.wait_for(known, count=2)) == 2
    wait_idle(stack)
    assert stack.smtp.to(unknown) == [] and outbox_count(stack, "verify", unknown) == 0


def test_forgot_with_broker_down_loses_nothing(sqlite_stack: Stack) -> None:
    """The broker refuses connections: the request is handled in the web (the
    outbox row is committed, unpublished) and the relay sends it later."""
    stack = sqlite_stack
    known = verified_user(stack, "enum-down")
    unknown = new_email("enum-down-ghost")
    dead = {**config_module.from_env(stack.env)["CELERY"],
            "broker_url": f"amqp://guest:guest@127.0.0.1:{free_port()}//"}
    with own_app(stack, CELERY=dead, OUTBOX_PUBLISH_TIMEOUT=1.0) as app:
        client = app.test_client()
        for address in (known, unknown):
            token = csrf_from(client.get("/password/forgot").data)
            resp = client.post("/password/forgot", data={"email": address, "csrf_token": token})
            assert resp.status_code == 200
    with stack.app.app_context():
        rows = db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "password_reset", OutboxMessage.to_address == known)).all()
        assert [r.published_at for r in rows] == [None]
        from webapp.outbox import relay_unpublished

        assert relay_unpublished(0) >= 1
    mail_with_subject(stack, known, "Reset your Onboard password")
    assert outbox_count(stack, "password_reset", unknown) == 0
