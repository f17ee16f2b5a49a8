"""Worker log lines carry the task: ``[task_name(task_id)]`` on every line.

Celery applies ``worker_task_log_format`` only to its own task logger
(``celery.utils.log.get_task_logger``); the services log through ordinary
module loggers (``webapp.mail``, ``webapp.ops.purge`` …). This hook gives the
worker's root handlers Celery's :class:`~celery.app.log.TaskFormatter` with the
same format, so a mail or image failure logged anywhere inside a task names the
task and its id (``???`` outside a task).

This module is in Celery's ``imports``, so the handler is connected before the
worker sets up logging.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.app.log import TaskFormatter


@signals.after_setup_logger.connect
def _task_aware_root_handlers(logger: logging.Logger | None = None, colorize: bool = False,
                              **_: Any) -> None:
    from celery import current_app

    fmt = current_app.conf.worker_task_log_format
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(TaskFormatter(fmt, use_color=colorize))
