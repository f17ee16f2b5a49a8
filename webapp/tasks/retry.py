"""The retry policy of every Onboard task: exponential backoff with equal jitter.

One rule for all tasks, so the wait of a retry is computed in one place: the
mail task (``send_mail``) and the image task (``process_image``) both ask
:func:`retry_countdown` and differ only in their cap and their retry count.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable


def retry_countdown(retries: int, cap: float, rand: Callable[[], float] = random.random) -> int:
    """Whole seconds to wait before retry number ``retries + 1``.

    Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential
    Backoff and Jitter"): ``d = min(2**retries, cap)`` and the wait is uniform in
    ``[d/2, d]``, rounded up to a whole second. Half of ``d`` is guaranteed, so
    the whole retry span has a lower bound (:func:`retry_span`) and outlasts any
    outage shorter than it; the random half spreads the retries of many tasks
    apart. Whole seconds because Celery's native delayed delivery on RabbitMQ
    routes a countdown by its integer bits; the rounding only lengthens a wait.

    Args:
        retries: retries done so far, ``task.request.retries`` (0 before the first retry).
        cap: the longest wait ``d``, seconds (``MAIL_RETRY_BACKOFF_MAX`` for mail).
        rand: a source of floats in ``[0, 1)`` (tests pass a fixed one).

    Returns:
        The countdown in seconds, ``ceil(d/2) <= countdown <= ceil(d)``, at least 1.
    """
    full = min(2.0 ** retries, float(cap))
    return max(1, math.ceil(full / 2 + rand() * full / 2))


def retry_span(max_retries: int, cap: float) -> tuple[int, int]:
    """Least and most total seconds that ``max_retries`` retries wait in all.

    Args:
        max_retries: how many retries a task makes (``MAIL_MAX_RETRIES`` for mail).
        cap: the ``cap`` given to :func:`retry_countdown`, seconds.

    Returns:
        ``(shortest, longest)``: the sum of :func:`retry_countdown` over
        ``retries = 0 … max_retries - 1`` with every random draw 0, and with every
        draw at its upper bound 1. For mail the shortest must exceed the longest SMTP
        outage to survive: 1306 s for the defaults 16 retries and a 300 s cap,
        so a 10-minute outage is outlasted.
    """
    shortest = sum(retry_countdown(n, cap, rand=lambda: 0.0) for n in range(max_retries))
    longest = sum(retry_countdown(n, cap, rand=lambda: 1.0) for n in range(max_retries))
    return shortest, longest
