"""Sign-up captcha (``captcha`` package, drawn locally) on the fast app with
``REGISTRATION_CAPTCHA`` on: the form, its errors, single use, refresh, redraw.
That the mail of a sign-up is sent is proven over the real stack in
``test_signup_flow.py``."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select

from tests.harness.forms import PASSWORD, csrf_from, new_email
from webapp.auth import captcha
from webapp.extensions import db
from webapp.models import OutboxMessage, User


def counts(app, email: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with app.app_context():
        users = db.session.scalar(select(func.count()).select_from(User).where(User.email == email))
        mails = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.to_address == email))
        return users, mails


def nonce_of(page: bytes) -> str:
    m = re.search(rb'id="captcha-image"', page) and re.search(rb'src="(/captcha/image\.png\?n=[^"]+)"', page)
    assert m, "no captcha image in page"
    return parse_qs(urlsplit(m.group(1).decode()).query)["n"][0]


def answer(app, nonce: str) -> str:  # type: ignore[no-untyped-def]
    with app.app_context():
        return captcha.answer_for(nonce)


def sign_up(client, page: bytes, email: str, answer_: str):  # type: ignore[no-untyped-def]
    return client.post("/register", data={"email": email, "password": PASSWORD,
                                          "password_confirm": PASSWORD, "captcha": answer_,
                                          "csrf_token": csrf_from(page)})


def test_captcha_signup(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(REGISTRATION_CAPTCHA=True)
    client = app.test_client()
    page = client.get("/register").data
    nonce = nonce_of(page)
    right = answer(app, nonce)
    # The session cookie does not carry the answer.
    with client.session_transaction() as sess:
        assert sess["captcha"]["n"] == nonce and right not in str(dict(sess))
    assert b'alt="Security check: six distorted digits.' in page
    assert b'id="captcha-audio"' in page and b'href="/register" id="captcha-refresh"' in page
    assert b"/static/captcha.js" in page and b"<script>" not in page
    img = client.get(f"/captcha/image.png?n={nonce}")
    assert img.status_code == 200 and img.data.startswith(b"\x89PNG")
    assert img.headers["Cache-Control"] == "no-store"
    wav = client.get(f"/captcha/audio.wav?n={nonce}")
    assert wav.status_code == 200 and wav.data[:4] == b"RIFF" and wav.data[8:12] == b"WAVE"
    assert client.get("/captcha/image.png?n=someone-elses").status_code == 404

    # Wrong answer: re-rendered with a message and a new challenge; nothing written.
    email = new_email("cap")
    wrong = "000000" if right != "000000" else "111111"
    resp = sign_up(client, page, email, wrong)
    assert resp.status_code == 400 and b"The digits do not match the picture" in resp.data
    assert counts(app, email) == (0, 0)
    new_nonce = nonce_of(resp.data)
    assert new_nonce != nonce
    # The old challenge is used up: even its right answer fails now.
    resp = sign_up(client, resp.data, email, right)
    assert resp.status_code == 400 and counts(app, email) == (0, 0)
    # Missing answer.
    page = resp.data
    resp = sign_up(client, page, email, "")
    assert resp.status_code == 400 and b"Type the digits shown in the picture." in resp.data

    page = resp.data
    with client.session_transaction() as sess:
        saved = dict(sess)  # a copy of the cookie, for a replay
    resp = sign_up(client, page, email, " ".join(answer(app, nonce_of(page))))
    assert resp.status_code == 303, resp.data[:3000]
    assert counts(app, email) == (1, 1)

    # Replaying the old cookie with the solved challenge fails (single use).
    with client.session_transaction() as sess:
        sess.clear()
        sess.update(saved)
    other = new_email("replay")
    resp = sign_up(client, page, other, answer(app, nonce_of(page)))
    assert resp.status_code == 400 and counts(app, other) == (0, 0)
    assert b"The digits do not match the picture" in resp.data


def test_captcha_refresh(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(REGISTRATION_CAPTCHA=True)
    client = app.test_client()
    page = client.get("/register").data
    nonce = nonce_of(page)
    token = csrf_from(page)
    assert client.post("/captcha/new").status_code == 400  # CSRF needed
    resp = client.post("/captcha/new", headers={"X-CSRFToken": token,
                                                "Accept": "application/json"})
    assert resp.status_code == 200
    data = resp.get_json()
    fresh = parse_qs(urlsplit(data["image"]).query)["n"][0]
    assert fresh != nonce and data["audio"].endswith(fresh)
    assert client.get(f"/captcha/image.png?n={nonce}").status_code == 404
    assert client.get(data["image"]).status_code == 200
    # The form posts against the refreshed challenge.
    email = new_email("refresh")
    resp = sign_up(client, page, email, answer(app, fresh))
    assert resp.status_code == 303 and counts(app, email) == (1, 1)


def test_captcha_off_by_config(client) -> None:  # type: ignore[no-untyped-def]
    # The unit-test config has REGISTRATION_CAPTCHA off: no field, no check.
    page = client.get("/register").data
    assert b'id="captcha"' not in page and b"captcha.js" not in page


def test_captcha_one_answer_per_challenge_even_with_a_replayed_cookie(make_app) -> None:  # type: ignore[no-untyped-def]
    """A saved copy of the pre-POST cookie does not buy a second guess: the
    challenge is recorded as answered on the server at the first POST."""
    app = make_app(REGISTRATION_CAPTCHA=True)
    client = app.test_client()
    page = client.get("/register").data
    right = answer(app, nonce_of(page))
    wrong = "000000" if right != "000000" else "111111"
    with client.session_transaction() as sess:
        saved = dict(sess)  # the cookie before the POST
    email = new_email("guess")
    for guess in (wrong, right):  # two guesses on one challenge
        with client.session_transaction() as sess:
            sess.clear()
            sess.update(saved)
        resp = sign_up(client, page, email, guess)
        assert resp.status_code == 400 and b"The digits do not match the picture" in resp.data
    assert counts(app, email) == (0, 0)


def test_captcha_redraw_is_a_new_challenge(make_app) -> None:  # type: ignore[no-untyped-def]
    """Each challenge is drawn once per medium; asking again draws new digits,
    so drawings with fresh noise cannot be collected for OCR voting."""
    app = make_app(REGISTRATION_CAPTCHA=True)
    client = app.test_client()
    page = client.get("/register").data
    nonce = nonce_of(page)
    first = client.get(f"/captcha/image.png?n={nonce}")
    assert first.status_code == 200
    assert client.get(f"/captcha/audio.wav?n={nonce}").status_code == 200  # same digits, spoken
    with client.session_transaction() as sess:
        assert sess["captcha"]["n"] == nonce
    again = client.get(f"/captcha/image.png?n={nonce}")
    assert again.status_code == 200 and again.data.startswith(b"\x89PNG")
    with client.session_transaction() as sess:
        fresh = sess["captcha"]["n"]
    assert fresh != nonce and answer(app, fresh) != answer(app, nonce)
    # The old challenge is gone: its drawings are refused, and the session's
    # one challenge is the new picture, which is what the person now sees.
    assert client.get(f"/captcha/audio.wav?n={nonce}").status_code == 404
    email = new_email("redraw")
    resp = sign_up(client, page, email, answer(app, fresh))
    assert resp.status_code == 303 and counts(app, email) == (1, 1)
