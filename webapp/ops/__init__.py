"""Operations services run by celery beat (periodic jobs issue) and by the
``flask`` operator commands: purges (:mod:`.purge`), daily statistics
(:mod:`.stats`), database backups (:mod:`.backup`) and worker task metrics
(:mod:`.worker_metrics`).

Every job is idempotent, so two beats started by mistake do no harm: purges
delete what is already gone as a no-op, the statistics row has a unique day,
and backups are named by date and written atomically.
"""
from __future__ import annotations
