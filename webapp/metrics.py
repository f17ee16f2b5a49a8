"""Prometheus metrics at ``GET /metrics`` (prometheus-client).

Collected at scrape time, so the web process needs no state of its own:

* ``onboard_queue_messages{queue}`` / ``onboard_queue_consumers{queue}``: read from
  RabbitMQ with a passive ``queue_declare`` (:func:`webapp.broker.task_queue_depths`)
  over the Celery connection (what an autoscaler needs; Flower has no queue depth
  without the management API); ``onboard_broker_up`` is 0 when RabbitMQ cannot
  be reached, and the queue gauges are then absent (never a false 0).
* ``onboard_outbox_messages{state}`` (``sent|failed|pending``): mails, from the
  outbox table. A gauge, not a counter: purges delete rows.
* ``onboard_uploads{status}``: uploads by status.

Task counts and run times come from Flower's own ``/metrics``
(``flower_events_total``, ``flower_task_runtime_seconds``), which sees every
worker on every host through task events; see docs/operations.md.

Access: with ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>``;
without it, only loopback clients (127.0.0.0/8, ::1). Behind a reverse proxy on
the same host every client looks like loopback: set ``METRICS_TOKEN`` there.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

from amqp.exceptions import AMQPError
from flask import Blueprint, Response, abort, current_app, request
from kombu.exceptions import KombuError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select

from webapp import models
from webapp.broker import task_queue_depths
from webapp.extensions import db
from webapp.models import OutboxMessage

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


class OnboardCollector:
    """Reads queue depths, outbox and upload counts at each scrape.

    Args:
        app: the Flask app (its Celery app, ``HEALTH_TIMEOUT`` in seconds as
            the broker connect timeout).
    """

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
            depths = task_queue_depths(self.app.extensions["celery"],
                                       self.app.config["HEALTH_TIMEOUT"])
        except (KombuError, AMQPError, OSError) as exc:  # the scrape must still answer
            log.warning("metrics: broker unreachable: %s", exc)
            up.add_metric([], 0)
        else:
            for name, depth in depths.items():
                messages.add_metric([name], depth.messages)
                consumers.add_metric([name], depth.consumers)
            up.add_metric([], 1)
        yield from (messages, consumers, up)

        outbox = GaugeMetricFamily("onboard_outbox_messages",
                                   "Outbox mails by state (sent, failed, pending).",
                                   labels=["state"])
        # One indexed count per state (sent_at, failed_at, the partial unsent
        # index), never a scan of the whole table.
        sent = db.session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_not(None)))
        failed = db.session.scalar(select(func.count()).where(OutboxMessage.failed_at.is_not(None)))
        pending = db.session.scalar(select(func.count()).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)))
        outbox.add_metric(["sent"], sent or 0)
        outbox.add_metric(["failed"], failed or 0)
        outbox.add_metric(["pending"], pending or 0)
        yield outbox

        uploads = GaugeMetricFamily("onboard_uploads", "Uploads by status.", labels=["status"])
        for status, count in db.session.execute(
                select(models.Upload.status, func.count()).group_by(models.Upload.status)):
            uploads.add_metric([str(status)], count)
        yield uploads
        db.session.rollback()


def operator_access() -> bool:
    """True when the current request may see operator details (``/metrics``,
    ``/healthz`` details): it carries ``Authorization: Bearer <METRICS_TOKEN>``
    when a token is set (compared in constant time), else it comes from a
    loopback address."""
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
    if not operator_access():
        if current_app.config["METRICS_TOKEN"]:
            return Response("bearer token required\n", 401,
                            {"WWW-Authenticate": 'Bearer realm="metrics"'})
        abort(403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OnboardCollector(current_app._get_current_object()))  # type: ignore[attr-defined]
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})
