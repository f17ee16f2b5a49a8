"""Configuration: reading the environment, override keys, the production check.

Pure logic (no broker): ``from_env`` over given mappings, ``create_app`` with
the unit-test config, ``flowerconfig.py`` run as Flower runs it, and one real
Flower process refused at start-up.
"""
from __future__ import annotations

import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit_config import TEST_CONFIG
from webapp import create_app
from webapp.config import check, from_env

ROOT = Path(__file__).resolve().parent.parent

#: A production environment that passes the check.
GOOD_PRODUCTION = {
    "ONBOARD_ENV": "production",
    "SECRET_KEY": "9f1c2b7e4d0a8f3b6c5e1d2a7b9c0e4f",  # 32 characters
    "FLOWER_BASIC_AUTH": "ops:Vq8-z2Lr-pX4m",
    "BASE_URL": "https://onboard.example.com",
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
}


# --- reading the environment ------------------------------------------------------------


def test_from_env_defaults_and_overrides() -> None:
    cfg = from_env({})
    assert cfg["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert cfg["CELERY"]["result_backend"] == "db+" + cfg["SQLALCHEMY_DATABASE_URI"]
    assert cfg["CELERY"]["accept_content"] == ["json"]
    assert cfg["CELERY"]["task_acks_late"] and cfg["CELERY"]["task_reject_on_worker_lost"]
    assert cfg["SESSION_COOKIE_SECURE"] is False

    cfg = from_env({"DATABASE_URL": "postgresql+psycopg://u@h/db", "MAIL_PORT": "2525",
                    "MAIL_USE_TLS": "yes", "BASE_URL": "https://onboard.example.com/",
                    "MAIL_USERNAME": ""})  # empty = unset
    assert cfg["CELERY"]["result_backend"] == "db+postgresql+psycopg://u@h/db"
    assert cfg["MAIL_PORT"] == 2525 and cfg["MAIL_USE_TLS"] is True
    assert cfg["MAIL_USERNAME"] is None
    assert cfg["BASE_URL"] == "https://onboard.example.com"
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["REMEMBER_COOKIE_SECURE"] is True


@pytest.mark.parametrize("name, value", [
    ("MAIL_PORT", "twenty-five"),
    ("MAIL_USE_TLS", "maybe"),
    ("OUTBOX_RELAY_INTERVAL", "ten"),
    ("ONBOARD_ENV", "prod"),  # a typo must not silently mean "development"
    ("CELERY_QUEUE_TYPE", "qorum"),
])
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        from_env({name: value})


def test_path_defaults_follow_the_given_instance_dir(tmp_path: Path) -> None:
    cfg = from_env({"INSTANCE_DIR": str(tmp_path)})
    paths = {"SQLALCHEMY_DATABASE_URI": cfg["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"),
             "DEV_MAILDIR": cfg["DEV_MAILDIR"], "MEDIA_ROOT": cfg["MEDIA_ROOT"],
             "STORAGE_URL": cfg["STORAGE_URL"].removeprefix("file://"),
             "beat_schedule_filename": cfg["CELERY"]["beat_schedule_filename"]}
    outside = {k: v for k, v in paths.items() if Path(v).parent != tmp_path}
    assert not outside, f"not under INSTANCE_DIR={tmp_path}: {outside}"


def test_create_app_uses_the_configured_instance_dir(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    instance = tmp_path / "inst"
    monkeypatch.setenv("INSTANCE_DIR", str(instance))
    app = create_app(TEST_CONFIG)
    assert app.instance_path == str(instance)
    assert instance.is_dir() and Path(app.config["MEDIA_ROOT"]) == instance / "media"


class CountingEnviron(dict):  # type: ignore[type-arg]
    """A mapping that counts the reads of each name."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().__getitem__(key)


def test_each_variable_is_read_once() -> None:
    environ = CountingEnviron()
    from_env(environ)
    twice = {k: n for k, n in environ.reads.items() if n > 1}
    assert not twice, f"read more than once: {twice}"
    assert {"CELERY_QUEUE_TYPE", "OUTBOX_RELAY_INTERVAL", "PURGE_INTERVAL"} <= set(environ.reads)


def test_a_setting_declared_twice_is_refused() -> None:
    from webapp.config.env import SettingsEnv

    env = SettingsEnv({"PURGE_INTERVAL": "60"})
    assert env.float("PURGE_INTERVAL", 3600.0) == 60.0
    with pytest.raises(ValueError, match="PURGE_INTERVAL is declared twice"):
        env.float("PURGE_INTERVAL", 3600.0)


@pytest.mark.parametrize("name", ["ONBOARD_ENVIRONMENT", "MAIL_PASWORD", "RATELIMIT_LOGN",
                                  "OUTBOX_RELAY_AFTR", "UPLOAD_MAX_PIXEL"])
def test_undeclared_variable_under_an_owned_prefix_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=f"undeclared setting.*{name}"):
        from_env({name: "1"})


def test_other_prefixes_are_left_to_their_owners() -> None:
    # Celery and Flower read CELERY_* / FLOWER_* variables of their own.
    from_env({"CELERY_RDB_PORT": "6900", "FLOWER_UNIX_SOCKET": "/tmp/f.sock", "HOME": "/root"})


# --- create_app overrides ----------------------------------------------------------------


@pytest.mark.parametrize("overrides, name", [
    ({"RATELIMIT_ENABLD": True}, "RATELIMIT_ENABLD"),
    ({"MEDIA_ROOOT": "/tmp"}, "MEDIA_ROOOT"),
    ({"CELERY": {"broker_conection_timeout": 1}}, "broker_conection_timeout"),
])
def test_create_app_refuses_unknown_override_keys(overrides: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        create_app({**TEST_CONFIG, **overrides})


def test_create_app_accepts_flask_and_extension_keys() -> None:
    app = create_app({**TEST_CONFIG, "SERVER_NAME": "onboard.example.com",
                      "WTF_CSRF_ENABLED": False, "SQLALCHEMY_ECHO": False,
                      "CELERY": {"broker_connection_timeout": 1}})
    assert app.config["SERVER_NAME"] == "onboard.example.com"
    assert app.extensions["celery"].conf.broker_connection_timeout == 1
    assert app.extensions["celery"].conf.task_acks_late  # merged, not replaced


def test_declared_keys_are_looked_up_strictly() -> None:
    """``config.get("KEY")`` of a declared key hides a typo in KEY; ``config["KEY"]`` raises."""
    declared = set(from_env({}))
    pattern = re.compile(r"config\.get\(\s*[\"']([A-Z0-9_]+)[\"']")
    lax = [f"{path.relative_to(ROOT)}: {key}"
           for path in sorted((ROOT / "webapp").rglob("*.py"))
           for key in pattern.findall(path.read_text()) if key in declared]
    assert not lax, lax


# --- the production check ----------------------------------------------------------------


def test_good_production_config_passes() -> None:
    check(from_env(GOOD_PRODUCTION))
    check(from_env({**GOOD_PRODUCTION, "RATELIMIT_STORAGE_URI": "memory://",
                    "WEB_CONCURRENCY": "1"}))  # one process counts every request


@pytest.mark.parametrize("changes, message", [
    ({"SECRET_KEY": "x"}, "SECRET_KEY is 1 characters"),
    ({"SECRET_KEY": "dev-only-secret-change-me"}, "SECRET_KEY is a published value"),
    ({"SECRET_KEY": "change-me-change-me-change-me-change-me"}, "SECRET_KEY is a published"),
    ({"FLOWER_BASIC_AUTH": "admin:onboard"}, "FLOWER_BASIC_AUTH entry 1 .admin. has a published"),
    ({"FLOWER_BASIC_AUTH": "ops:Vq8-z2Lr-pX4m,admin:short"}, "entry 2 .admin. has a password shorter"),
    ({"FLOWER_BASIC_AUTH": "just-a-user"}, "FLOWER_BASIC_AUTH entry 1 is not user:password"),
    ({"BASE_URL": "http://onboard.example.com"}, "BASE_URL must be https"),
    ({"RATELIMIT_STORAGE_URI": "memory://"}, "memory:// counts per process but WEB_CONCURRENCY=2"),
    ({"RATELIMIT_STORAGE_URI": "memory://", "WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY=4"),
])
def test_production_refuses(changes: dict[str, str], message: str) -> None:
    config = from_env({**GOOD_PRODUCTION, **changes})
    with pytest.raises(RuntimeError, match="Unsafe production configuration: .*" + message):
        check(config)


def test_production_check_lists_every_problem_and_never_echoes_secrets() -> None:
    config = from_env({**GOOD_PRODUCTION, "SECRET_KEY": "short-secret-value",
                       "FLOWER_BASIC_AUTH": "admin:onboard", "BASE_URL": "http://a.example"})
    with pytest.raises(RuntimeError) as exc:
        check(config)
    text = str(exc.value)
    assert "SECRET_KEY" in text and "FLOWER_BASIC_AUTH" in text and "BASE_URL" in text
    assert "short-secret-value" not in text and "onboard," not in text


@pytest.mark.parametrize("name", ["SECRET_KEY", "FLOWER_BASIC_AUTH"])
def test_production_secrets_have_no_default(name: str) -> None:
    environ = {k: v for k, v in GOOD_PRODUCTION.items() if k != name}
    with pytest.raises(ValueError, match=name):
        from_env(environ)


def test_production_check_applies_to_overrides() -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"ENV_NAME": "production", "SECRET_KEY": "x",
                    "FLOWER_BASIC_AUTH": "ops:Vq8-z2Lr-pX4m", "BASE_URL": "https://a.example",
                    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"})


# --- Flower's start applies the same check ----------------------------------------------


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("INSTANCE_DIR", str(tmp_path))
    for name, value in GOOD_PRODUCTION.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.mark.parametrize("name, value", [("FLOWER_BASIC_AUTH", "admin:onboard"),
                                         ("SECRET_KEY", "x"),
                                         ("RATELIMIT_STORAGE_URI", "memory://")])
def test_flowerconfig_refuses_what_the_check_refuses(production_env: None,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=f"Flower will not start: .*{name}"):
        runpy.run_path(str(ROOT / "flowerconfig.py"))


def test_flowerconfig_reads_a_good_production_env(production_env: None,
                                                  tmp_path: Path) -> None:
    conf = runpy.run_path(str(ROOT / "flowerconfig.py"))
    assert conf["basic_auth"] == ["ops:Vq8-z2Lr-pX4m"] and conf["address"] == "127.0.0.1"
    assert conf["db"] == str(tmp_path / "flower") and conf["port"] == 5555


def test_flower_process_exits_on_the_dev_password(tmp_path: Path) -> None:
    """A real ``celery flower`` start, as the Procfile runs it (no broker needed:
    it stops before connecting)."""
    import os

    env = {**os.environ, **GOOD_PRODUCTION, "INSTANCE_DIR": str(tmp_path),
           "FLOWER_BASIC_AUTH": "admin:onboard",
           "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    celery = str(Path(sys.executable).parent / "celery")
    proc = subprocess.run([celery, "-A", "celery_app", "flower", "--conf=flowerconfig.py",
                           "--port=0"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "FLOWER_BASIC_AUTH entry 1 (admin) has a published password" in proc.stderr
