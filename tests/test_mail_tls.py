"""SMTP over TLS with a login, against real aiosmtpd servers and a test CA.

Each server requires TLS before AUTH and records every login it accepts. A
certificate from the trusted test CA for the right host name sends and logs in
(STARTTLS through a real worker; implicit TLS through :func:`deliver`); a
certificate from another CA, or for another host name, is refused before the
password leaves the worker: the attempt is transient, the row stays unsent and
released, and the log says which certificate was refused.
"""
from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import new_email, register
from tests.harness.mail import SinkHandler, text_body
from tests.harness.stack import Stack
from tests.harness.wait import free_port, wait_until
from webapp import create_app
from webapp.config import from_env
from webapp.extensions import db
from webapp.mail import TransientMailError, deliver
from webapp.models import OutboxMessage, User

USER, PASSWORD = "onboard", "s3cret-smtp-password"


class LoginRecorder:
    """aiosmtpd authenticator: accepts USER/PASSWORD over TLS only, records logins."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.logins.append((login, password))
        return AuthResult(success=over_tls and (login, password) == (USER, PASSWORD))


class TLSServer:
    """A real SMTP server on 127.0.0.1 that speaks STARTTLS or implicit TLS."""

    def __init__(self, cert: trustme.LeafCert, implicit: bool) -> None:
        self.port = free_port()
        self.handler = SinkHandler()
        self.auth = LoginRecorder()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        if implicit:
            # aiosmtpd's auth_require_tls only knows STARTTLS; LoginRecorder
            # checks that the connection is encrypted.
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                         ssl_context=ctx, authenticator=self.auth,
                                         auth_require_tls=False)
        else:
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                         tls_context=ctx, require_starttls=True,
                                         auth_require_tls=True, authenticator=self.auth)

    def __enter__(self) -> TLSServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    """The trusted test CA and its PEM file (what MAIL_SSL_CA_FILE names)."""
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A SQLite stack of its own: its workers are started per test with TLS settings."""
    s = Stack("sqlite", tmp_path_factory.mktemp("tls")).start(worker=False)
    yield s
    s.stop()


def mail_env(server: TLSServer, ca_file: Path, implicit: bool) -> dict[str, str]:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(server.port),
            "MAIL_USE_TLS": "false" if implicit else "true",
            "MAIL_USE_SSL": "true" if implicit else "false",
            "MAIL_USERNAME": USER, "MAIL_PASSWORD": PASSWORD, "MAIL_SSL_CA_FILE": str(ca_file),
            "MAIL_MAX_RETRIES": "0"}


def app_for(stack: Stack, env: dict[str, str]) -> Any:
    """The Flask app on the stack's database with these mail settings, sending for real."""
    return create_app({**from_env({**stack.env, **env}), "TESTING": True,
                       "RATELIMIT_ENABLED": False, "MAIL_SUPPRESS_SEND": False})


def new_row(app: Any) -> int:
    with app.app_context():
        row = OutboxMessage(kind="password_changed", to_address=new_email("tls"), context={})
        db.session.add(row)
        db.session.commit()
        return row.id


def test_starttls_with_a_trusted_certificate_logs_in_and_sends(
        tls_stack: Stack, ca: tuple[trustme.CA, Path]) -> None:
    authority, ca_file = ca
    with TLSServer(authority.issue_cert("127.0.0.1"), implicit=False) as server:
        worker = tls_stack.start_worker(concurrency=1,
                                        extra_env=mail_env(server, ca_file, implicit=False))
        try:
            email = new_email("starttls")
            assert register(tls_stack.client(), email).status_code == 303
            msgs = wait_until(lambda: [m for m in server.handler.messages
                                       if email in (m.get("To") or "")], 30, what="mail over TLS")
        finally:
            tls_stack.stop_worker(worker)
    assert "/verify/" in text_body(msgs[0])
    assert server.auth.logins == [(USER, PASSWORD)]
    with tls_stack.app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        row = db.session.execute(db.select(OutboxMessage).filter_by(user_id=user.id)).scalar_one()
        assert row.sent_at is not None and row.attempts == 1


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_trusted_certificate_sends(tls_stack: Stack, ca: tuple[trustme.CA, Path],
                                   implicit: bool) -> None:
    authority, ca_file = ca
    with TLSServer(authority.issue_cert("127.0.0.1"), implicit) as server:
        app = app_for(tls_stack, mail_env(server, ca_file, implicit))
        row_id = new_row(app)
        with app.app_context():
            assert deliver(row_id) == "sent"
            row = db.session.get(OutboxMessage, row_id)
            assert row.sent_at is not None and row.last_error is None
    assert len(server.handler.messages) == 1
    assert server.auth.logins == [(USER, PASSWORD)]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
@pytest.mark.parametrize("problem", ["untrusted-ca", "wrong-host"])
def test_refused_certificate_is_transient_and_never_gets_the_password(
        tls_stack: Stack, ca: tuple[trustme.CA, Path], caplog: pytest.LogCaptureFixture,
        implicit: bool, problem: str) -> None:
    authority, ca_file = ca
    cert = (trustme.CA().issue_cert("127.0.0.1") if problem == "untrusted-ca"
            else authority.issue_cert("evil.invalid"))
    with TLSServer(cert, implicit) as server:
        app = app_for(tls_stack, mail_env(server, ca_file, implicit))
        row_id = new_row(app)
        with app.app_context(), caplog.at_level(logging.ERROR, logger="webapp.mail"):
            with pytest.raises(TransientMailError, match="CERTIFICATE_VERIFY_FAILED"):
                deliver(row_id)
            row = db.session.get(OutboxMessage, row_id)
            assert row.sent_at is None and row.failed_at is None
            assert row.claimed_at is None and row.attempts == 1  # released for the retry
            assert "certificate verify failed" in (row.last_error or "")
    assert server.auth.logins == [] and server.handler.messages == []
    lines = [r.getMessage() for r in caplog.records if f"outbox={row_id}" in r.getMessage()]
    assert len(lines) == 1 and "TLS certificate of SMTP server" in lines[0]
    assert f"127.0.0.1:{server.port}" in lines[0] and "MAIL_SSL_CA_FILE" in lines[0]
    assert ("self-signed" in lines[0] or "unable to get local issuer" in lines[0]
            if problem == "untrusted-ca" else "mismatch, certificate is not valid for '127.0.0.1'" in lines[0])
