"""Task throughput through one worker.

Compares, on the same broker vhost and database:

* real ``webapp.tasks.mail.send_mail`` tasks on outbox rows (render, SMTP to a
  sink that accepts at once, mark sent), results as configured (``send_mail``
  sets ``ignore_result``: the outbox row is the record, so no result row);
* a bench-only no-op task with no result (``bench.bench_tasks.noop``), the
  Celery baseline for the same worker settings;
* raw kombu publish/consume on the same broker, the ceiling;

for these worker settings: as configured (prefork ``-c 2``, ``-E`` task events,
``worker_prefetch_multiplier`` 1, results stored), the same with Flower running,
events off, and results ignored + prefetch 4. ``--quick`` runs the first two
only; ``--threads`` adds the threads pool (``-P threads -c 8``, results ignored,
prefetch 4) with events off and on.

Method: the worker starts consuming an idle queue only; N tasks are published
first (the publish rate is a figure too), then ``add_consumer`` points the
worker at them and the clock runs until the queue is empty (no-op) or every
outbox row is sent and, when results are kept, every result row is written
(mail).

Baseline for mail: the task tutorials write (``bench.bench_tasks.tutorial_mail``:
a Flask-Mail ``Message`` built from its arguments and ``mail.send``, one SMTP
connection per mail, no outbox, no database) on the same worker and sink.

Targets (as configured): mail worker CPU ≤ the tutorial task's, mail tasks/s ≥
1.0× the tutorial's, and ≥ 0.33× the no-op rate.

Run: ``python bench/task_throughput.py [--quick] [--db sqlite|postgresql]``.

Over 300 lines on purpose: one benchmark script: the no-op, Onboard's mail task, the
tutorial mail task and the worker settings are measured on the same worker in one run so
their ratios hold.
"""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import tree_cpu  # noqa: E402
from bench.report import Report, header, parser  # noqa: E402
from bench.stacks import start_stack, stop_stack  # noqa: E402
from tests.harness.paths import CELERY, ROOT  # noqa: E402
from tests.harness.procs import Proc  # noqa: E402
from tests.harness.stack import Stack  # noqa: E402
from tests.harness.wait import free_port, wait_until  # noqa: E402
from webapp.broker import queue_depth  # noqa: E402

NOOP = "bench.bench_tasks.noop"
SEND = "webapp.tasks.mail.send_mail"
TUTORIAL = "bench.bench_tasks.tutorial_mail"


def tutorial_args(stack: Stack, n: int) -> list[list[str]]:
    """Arguments of ``n`` tutorial mails: Onboard's own verification templates
    rendered once here (a tutorial view renders them before publishing), each
    to a new address."""
    from flask import render_template

    link = stack.env["BASE_URL"] + "/verify/" + "x" * 120  # as long as a signed token
    ctx = {"link": link, "hours": 24, "email": "someone@example.com",
           "base_url": stack.env["BASE_URL"], "code": "123456",
           "code_page": stack.env["BASE_URL"] + "/register/done"}
    with stack.app.test_request_context():
        body = render_template("email/verify.txt", **ctx)
        html = render_template("email/verify.html", **ctx)
    tag = uuid.uuid4().hex[:8]
    return [[f"tut{i}-{tag}@example.com", "Confirm your e-mail address for Onboard", body, html]
            for i in range(n)]


def run_tutorial(stack: Stack, node: str, n: int, timeout: float = 60) -> float:
    """Returns the rate (/s) of ``n`` tutorial mails, counted as mails the sink took."""
    before = len(stack.smtp.messages)
    publish(stack, TUTORIAL, tutorial_args(stack, n), "mail")
    return n / consume(stack, node, "mail", lambda: len(stack.smtp.messages) - before >= n,
                       timeout)


def make_outbox_rows(stack: Stack, n: int) -> list[int]:
    """Insert ``n`` users and one pending ``verify`` outbox row each; returns the
    outbox ids. One argon2 hash is reused: hashing is not what is measured."""
    from sqlalchemy import insert, select

    from webapp.auth.passwords import hash_password
    from webapp.extensions import db
    from webapp.models import OutboxMessage, User, utcnow

    tag = uuid.uuid4().hex[:8]
    emails = [f"t{i}-{tag}@example.com" for i in range(n)]
    with stack.app.app_context():
        pw = hash_password("bench-password")
        now = utcnow()
        db.session.execute(insert(User), [{"email": e, "password_hash": pw, "created_at": now}
                                          for e in emails])
        users = dict(db.session.execute(select(User.email, User.id).where(User.email.in_(emails))).all())
        db.session.execute(insert(OutboxMessage), [
            {"kind": "verify", "to_address": e, "user_id": users[e], "context": {},
             "created_at": now, "published_at": now} for e in emails])
        ids = list(db.session.scalars(select(OutboxMessage.id)
                                      .where(OutboxMessage.to_address.in_(emails))))
        db.session.commit()
    return ids


def sent_count(stack: Stack, ids: list[int]) -> int:
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import OutboxMessage

    with stack.app.app_context():
        n = db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_not(None)))
        db.session.rollback()
        return int(n or 0)


def result_count(stack: Stack) -> int:
    from sqlalchemy import text

    from webapp.extensions import db

    with stack.app.app_context():
        n = db.session.execute(text("select count(*) from celery_taskmeta")).scalar()
        db.session.rollback()
        return int(n or 0)


def publish(stack: Stack, name: str, args_list: list[list[int]], queue: str,
            confirm: bool = False) -> float:
    """Publish one task per args; returns tasks/s.

    ``confirm=False`` preloads the queue without publisher confirms (faster; the
    consume rate is what is measured); ``confirm=True`` publishes as the web does
    (``confirm_publish``, as configured).
    """
    from kombu import Connection

    t0 = time.perf_counter()
    if confirm:
        with stack.celery.producer_or_acquire() as producer:
            for args in args_list:
                stack.celery.send_task(name, args=args, queue=queue, producer=producer)
    else:
        with Connection(stack.broker_url) as conn, conn.Producer() as producer:
            for args in args_list:
                stack.celery.send_task(name, args=args, queue=queue, producer=producer)
    return len(args_list) / (time.perf_counter() - t0)


def consume(stack: Stack, node: str, queue: str, done, timeout: float = 60) -> float:  # type: ignore[no-untyped-def]
    """Point the worker at ``queue`` and time it until ``done()``; returns seconds."""
    t0 = time.perf_counter()
    stack.celery.control.add_consumer(queue, destination=[node], reply=True, timeout=5)
    wait_until(done, timeout, interval=0.05, what=f"queue {queue} processed")
    elapsed = time.perf_counter() - t0
    stack.celery.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    return elapsed


def run_noop(stack: Stack, node: str, n: int, timeout: float = 60) -> tuple[float, float]:
    """Returns ``(consume rate /s, Celery publish rate /s)`` for ``n`` no-ops."""
    pub = publish(stack, NOOP, [[] for _ in range(min(n, 300))], "celery", confirm=True)
    publish(stack, NOOP, [[] for _ in range(max(n - 300, 0))], "celery")
    secs = consume(stack, node, "celery", lambda: queue_depth(stack.broker_url, "celery").messages == 0,
                   timeout)
    return n / secs, pub


def mail_keeps_results() -> bool:
    """Whether ``send_mail`` as configured stores a result row (its own
    ``ignore_result`` wins over ``task_ignore_result``)."""
    from webapp.tasks.mail import send_mail

    return not send_mail.ignore_result


def run_mail(stack: Stack, node: str, n: int, keep_results: bool, timeout: float = 60) -> float:
    """Returns the rate (/s) of ``n`` real send_mail tasks, counted as sent rows
    (and written result rows when results are kept and the task stores them)."""
    keep_results = keep_results and mail_keeps_results()
    ids = make_outbox_rows(stack, n)
    results_before = result_count(stack)
    publish(stack, SEND, [[i] for i in ids], "mail")

    def done() -> bool:
        if sent_count(stack, ids) < n:
            return False
        return not keep_results or result_count(stack) - results_before >= n

    return n / consume(stack, node, "mail", done, timeout)


def raw_kombu(broker_url: str, n: int) -> dict[str, float]:
    """Publish ``n`` persistent JSON messages with kombu (no confirms), then
    consume and ack them (prefetch 100); a tenth again with publisher confirms.
    Returns rates per second."""
    from kombu import Connection, Exchange, Queue

    queue = Queue("bench_raw", Exchange("bench_raw", "direct", durable=True), "bench_raw",
                  durable=True)
    out: dict[str, float] = {}
    with Connection(broker_url) as conn:
        queue(conn.default_channel).declare()
        producer = conn.Producer(serializer="json")
        t0 = time.perf_counter()
        for i in range(n):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="bench_raw",
                             delivery_mode=2)
        out["publish"] = n / (time.perf_counter() - t0)
        got = [0]

        def on_message(_body: object, message) -> None:  # type: ignore[no-untyped-def]
            message.ack()
            got[0] += 1

        t0 = time.perf_counter()
        with conn.Consumer(queue, callbacks=[on_message], prefetch_count=100):
            while got[0] < n:
                conn.drain_events(timeout=10)
        out["consume"] = n / (time.perf_counter() - t0)
    with Connection(broker_url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer(serializer="json")
        m = max(n // 10, 10)
        t0 = time.perf_counter()
        for i in range(m):
            producer.publish({"i": i}, exchange=queue.exchange, routing_key="bench_raw",
                             delivery_mode=2)
        out["publish_confirmed"] = m / (time.perf_counter() - t0)
        queue(conn.default_channel).purge()
    return out


def start_flower(stack: Stack) -> Proc:
    """``celery -A celery_app flower`` on a free port; waits for its HTTP answer and
    a moment more, so its ``enable_events`` broadcast has reached the worker."""
    import requests

    port = free_port()
    cmd = [CELERY, "-A", "celery_app", "flower", f"--port={port}", "--address=127.0.0.1"]
    if (ROOT / "flowerconfig.py").exists():
        cmd.append("--conf=flowerconfig.py")
    proc = Proc(cmd, stack.tmp / "flower.log", stack.env)

    def up() -> bool:
        if not proc.alive():
            return True
        try:
            return requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code < 500
        except requests.RequestException:
            return False

    wait_until(up, 60, interval=0.3, what="flower")
    proc.check_alive("flower")
    time.sleep(3)
    return proc


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--threads", action="store_true",
                   help="also try the threads pool (-P threads -c 8), events off and on")
    args = p.parse_args()
    header("Task throughput", args)
    report = Report("task_throughput")
    n_noop, n_mail, n_raw = (100, 30, 1000) if args.quick else (1500, 250, 10000)
    stack = start_stack(args.db, worker=False)
    report.process(f"one celery worker at a time: --without-mingle "
                   f"--without-gossip --include bench.bench_tasks; database {args.db} (also the "
                   f"result backend: db+); RabbitMQ vhost {stack.name}; SMTP sink accepting at once")
    rates: dict[str, dict[str, float]] = {}

    def measure(label: str, app: str, events: bool, overrides: dict[str, object],
                keep_results: bool, flower: bool = False, pool: str = "prefork",
                concurrency: int = 2) -> None:
        env = {"BENCH_CELERY_OVERRIDES": json.dumps(overrides)}
        proc = stack.start_worker(queues="bench_idle", app=app, include="bench.bench_tasks",
                                  events=events, extra_env=env, pool=pool,
                                  concurrency=concurrency, loglevel="WARNING", prefix="bench")
        node = proc.node
        fl = start_flower(stack) if flower else None
        limit = 30.0 if pool == "threads" else 60.0  # seconds before a run counts as hung
        try:
            # Warm-up: each pool process imports, connects and compiles templates once.
            run_noop(stack, node, 10, limit)
            run_mail(stack, node, 4, keep_results, limit)
            # Worker CPU per task (all pool processes) is steadier than the rate on a
            # shared machine: other jobs take wall time, not this worker's CPU.
            cpu0 = tree_cpu(proc.pid)
            noop, pub = run_noop(stack, node, n_noop, limit)
            cpu1 = tree_cpu(proc.pid)
            mail = run_mail(stack, node, n_mail, keep_results, limit)
            cpu2 = tree_cpu(proc.pid)
            tutorial = cpu3 = None
            if label == "configured":  # the tutorial task, same worker, same sink
                run_tutorial(stack, node, 4, limit)
                cpu2 = tree_cpu(proc.pid)
                tutorial = run_tutorial(stack, node, n_mail, limit)
                cpu3 = tree_cpu(proc.pid)
        finally:
            if fl is not None:
                fl.stop()
            stack.stop_worker(proc)
        rates[label] = {"noop": noop, "mail": mail, "noop_cpu": (cpu1 - cpu0) * 1000 / n_noop,
                        "mail_cpu": (cpu2 - cpu1) * 1000 / n_mail}
        report.process(f"[{label}] -A {app} -P {pool} -c {concurrency} "
                       f"{'-E' if events else '(no -E)'} overrides "
                       f"{overrides or 'none'}; Flower {'ON' if flower else 'off'}")
        report.figure(f"{label}: no-op tasks/s", noop, "/s")
        report.figure(f"{label}: mail tasks/s", mail, "/s")
        report.figure(f"{label}: mail / no-op", mail / noop, "x")
        report.figure(f"{label}: worker CPU ms per no-op", rates[label]["noop_cpu"], "ms")
        report.figure(f"{label}: worker CPU ms per mail", rates[label]["mail_cpu"], "ms")
        if label == "configured":
            report.figure("celery send_task publish rate (confirm_publish)", pub, "/s")
        if tutorial is not None and cpu3 is not None:
            rates[label].update(tutorial=tutorial, tutorial_cpu=(cpu3 - cpu2) * 1000 / n_mail)
            report.figure(f"{label}: tutorial mail tasks/s", tutorial, "/s")
            report.figure(f"{label}: worker CPU ms per tutorial mail",
                          rates[label]["tutorial_cpu"], "ms")
            report.figure(f"{label}: mail / tutorial mail, rate", mail / tutorial, "x")
            report.figure(f"{label}: mail / tutorial mail, worker CPU",
                          rates[label]["mail_cpu"] / rates[label]["tutorial_cpu"], "x")

    try:
        measure("configured", "celery_app", True, {}, keep_results=True)
        measure("configured + Flower", "celery_app", True, {}, keep_results=True, flower=True)
        if not args.quick:  # --quick: the two above only (the smoke test's time)
            measure("events off", "bench.bench_celery", False,
                    {"worker_send_task_events": False, "task_send_sent_event": False},
                    keep_results=True)
            measure("ignore_result + prefetch 4", "bench.bench_celery", True,
                    {"task_ignore_result": True, "worker_prefetch_multiplier": 4},
                    keep_results=False)
        if args.threads:
            for label, events, extra in (
                    ("threads -c 8, events off", False,
                     {"worker_send_task_events": False, "task_send_sent_event": False}),
                    ("threads -c 8, events on", True, {})):
                try:
                    measure(label, "bench.bench_celery", events,
                            {"task_ignore_result": True, "worker_prefetch_multiplier": 4, **extra},
                            keep_results=False, pool="threads", concurrency=8)
                except TimeoutError:
                    report.figure(f"{label}: hung (queue not drained in 30 s)", 1)
                    report.note(f"{label}: the worker stopped taking tasks (messages stay "
                                "unacked, 0 % CPU); the threads pool is not usable with -E here")

        raw = raw_kombu(stack.broker_url, n_raw)
        report.process(f"raw kombu: {n_raw} persistent messages, one connection, consumer "
                       f"prefetch 100, ack each")
        report.figure("raw kombu publish/s (no confirms)", raw["publish"], "/s")
        report.figure("raw kombu publish/s (confirms)", raw["publish_confirmed"], "/s")
        report.figure("raw kombu consume+ack/s", raw["consume"], "/s")

        base = rates["configured"]
        report.figure("configured no-op / raw kombu consume", base["noop"] / raw["consume"], "x")
        report.figure("Flower on / off, no-op", rates["configured + Flower"]["noop"] / base["noop"], "x")
        report.figure("Flower on / off, mail", rates["configured + Flower"]["mail"] / base["mail"], "x")
        if "events off" in rates:
            report.figure("events off / configured, no-op",
                          rates["events off"]["noop"] / base["noop"], "x")
            report.figure("ignore_result + prefetch 4 / configured, mail",
                          rates["ignore_result + prefetch 4"]["mail"] / base["mail"], "x")
        report.target("mail >= 33% of the no-op rate (as configured)",
                      base["mail"] >= 0.33 * base["noop"],
                      f"{base['mail']:.0f}/s vs {base['noop']:.0f}/s = "
                      f"{100 * base['mail'] / base['noop']:.0f} %")
        report.target("mail worker CPU <= the tutorial task's (as configured)",
                      base["mail_cpu"] <= base["tutorial_cpu"],
                      f"{base['mail_cpu']:.2f} ms vs {base['tutorial_cpu']:.2f} ms per mail")
        report.target("mail tasks/s >= 1.0x the tutorial task's (as configured)",
                      base["mail"] >= base["tutorial"],
                      f"{base['mail']:.0f}/s vs {base['tutorial']:.0f}/s")
        report.note(f"worker CPU per task as configured: no-op {base['noop_cpu']:.2f} ms, mail "
                    f"{base['mail_cpu']:.2f} ms: a mail costs the worker "
                    f"{base['mail_cpu'] / max(base['noop_cpu'], 1e-9):.0f}x a no-op, before "
                    "the database, the SMTP server and RabbitMQ take their share of the cores")
        best = max(rates, key=lambda k: rates[k]["mail"])
        report.note(f"fastest mail setting in this run: {best} ({rates[best]['mail']:.0f}/s)")
    finally:
        stop_stack(stack)
    report.emit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
