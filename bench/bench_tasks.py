"""Bench-only Celery task: a no-op, the baseline of task throughput.

Loaded into a benchmark worker with ``celery ... worker --include bench.bench_tasks``;
never part of the real app's ``imports``.
"""
from __future__ import annotations

from celery import shared_task


@shared_task(name="bench.bench_tasks.noop", ignore_result=True, acks_late=True,
             time_limit=10, soft_time_limit=5)
def noop() -> None:
    """Do nothing and store no result: what one task costs in Celery itself.

    Retries: none. Idempotent: trivially.
    """
    return None
