"""Thin Celery tasks: they take ids, call services, and are enqueued with
`transaction.on_commit(lambda: task.delay(id))` so a worker never sees uncommitted rows."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)
