"""Prometheus metrics at ``GET /metrics`` (prometheus-client).

Collected at scrape time, so the web process needs no state of its own:

* ``onboard_queue_messages{queue}`` / ``onboard_queue_consumers{queue}``: read from
  RabbitMQ with a passive ``queue_declare`` over the Celery connection (what an
  autoscaler needs; Flower has no queue depth without the management API);
  ``onboard_broker_up`` is 0 when RabbitMQ cannot be reached.
* ``onboard_outbox_messages{state}`` (``sent|failed|pending``): mails, from the
  outbox table. A gauge, not a counter: purges delete rows.
* ``onboard_uploads{status}``: uploads by status, when the ``Upload`` model exists.
* ``onboard_tasks_total{task,state}`` and ``onboard_task_runtime_seconds{task}``:
  counted by the workers (see :mod:`webapp.ops.worker_metrics`) and merged here
  from ``WORKER_METRICS_DIR`` when this host can read it.

Access: with ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>``;
without it, only loopback clients (127.0.0.0/8, ::1). Behind a reverse proxy on
the same host every client looks like loopback: set ``METRICS_TOKEN`` there.
"""
from __future__ import annotations

import glob
import hmac
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from webapp import models
from webapp.extensions import db
from webapp.models import OutboxMessage

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


def queue_depths(celery: Any, timeout: float) -> dict[str, tuple[int, int]]:
    """Messages ready and consumers per configured queue, from RabbitMQ.

    Args:
        celery: the Celery app.
        timeout: seconds allowed to connect.

    Returns:
        ``{queue: (message_count, consumer_count)}``; a queue not declared yet
        is left out.

    Raises:
        Exception: kombu/amqp errors when the broker cannot be reached.
    """
    depths: dict[str, tuple[int, int]] = {}
    with celery.connection_for_read(connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for queue in celery.conf.task_queues or ():
            channel = conn.channel()
            try:
                ok = channel.queue_declare(queue=queue.name, passive=True)
                depths[queue.name] = (ok.message_count, ok.consumer_count)
            except conn.channel_errors:  # 404: not declared yet; the channel is closed
                pass
            finally:
                try:
                    channel.close()
                except Exception:
                    pass
    return depths


class OnboardCollector:
    """Reads queue depths, outbox and upload counts at each scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """prometheus-client's collector hook, called at each scrape of ``/metrics``."""
        messages = GaugeMetricFamily("onboard_queue_messages", "Messages ready in a queue.",
                                     labels=["queue"])
        consumers = GaugeMetricFamily("onboard_queue_consumers", "Consumers of a queue.",
                                      labels=["queue"])
        up = GaugeMetricFamily("onboard_broker_up", "1 when RabbitMQ answered the scrape.")
        try:
            for name, (count, cons) in queue_depths(self.app.extensions["celery"],
                                                    self.app.config["HEALTH_TIMEOUT"]).items():
                messages.add_metric([name], count)
                consumers.add_metric([name], cons)
            up.add_metric([], 1)
        except Exception as exc:
            log.warning("metrics: broker unreachable: %s", exc)
            up.add_metric([], 0)
        yield from (messages, consumers, up)

        outbox = GaugeMetricFamily("onboard_outbox_messages",
                                   "Outbox mails by state (sent, failed, pending).",
                                   labels=["state"])
        sent = db.session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_not(None)))
        failed = db.session.scalar(select(func.count()).where(OutboxMessage.failed_at.is_not(None)))
        total = db.session.scalar(select(func.count()).select_from(OutboxMessage))
        outbox.add_metric(["sent"], sent or 0)
        outbox.add_metric(["failed"], failed or 0)
        outbox.add_metric(["pending"], (total or 0) - (sent or 0) - (failed or 0))
        yield outbox

        uploads = GaugeMetricFamily("onboard_uploads", "Uploads by status.", labels=["status"])
        for status, count in db.session.execute(
                select(models.Upload.status, func.count()).group_by(models.Upload.status)):
            uploads.add_metric([str(status)], count)
        yield uploads
        db.session.rollback()

        files = glob.glob(os.path.join(self.app.config["WORKER_METRICS_DIR"], "*", "*.db"))
        if files:
            yield from MultiProcessCollector.merge(files, accumulate=True)


def _allowed() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; 401 without the bearer token (when one is set),
    403 for a non-loopback client when no token is set."""
    if not _allowed():
        if current_app.config["METRICS_TOKEN"]:
            return Response("bearer token required\n", 401,
                            {"WWW-Authenticate": 'Bearer realm="metrics"'})
        abort(403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OnboardCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})
