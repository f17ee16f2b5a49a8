"""Operations services run by celery beat and by the ``flask`` operator commands
(:mod:`webapp.cli`): purges (:mod:`.purge`), daily statistics (:mod:`.stats`),
database backups (:mod:`.backup`), the operator's mail queries
(:mod:`.mail_admin`) and task-aware worker logging (:mod:`.worker_logging`).

Every job is idempotent, so two beats started by mistake do no harm: purges
delete what is already gone as a no-op, the statistics row has a unique day,
and backups are named by date and written atomically.
"""
from __future__ import annotations
