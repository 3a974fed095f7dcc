"""gunicorn's threaded worker with a deadline for a request's headers.

gunicorn reads a request's headers with blocking reads in a pool thread once the connection
has data; a client that trickles its headers would hold that thread for as long as it keeps
sending. This worker gives every request REQUEST_HEADER_TIMEOUT_SECONDS (10 s, after
gunicorn's own 5 s wait for a new connection's first bytes) to finish its headers: past
that, the body-deadline watchdog (config/slowbody.py) shuts the socket's reading side and
the connection is closed. config/slowbody.py takes over with the body's deadline as soon as
the application sees the request.
"""

from __future__ import annotations

import os
import time

from gunicorn.workers import gthread

from config.slowbody import header_deadline_done, watch_headers

HEADER_TIMEOUT = float(os.environ.get("REQUEST_HEADER_TIMEOUT_SECONDS", "10"))


class ThreadWorker(gthread.ThreadWorker):
    def handle(self, conn):
        if HEADER_TIMEOUT > 0:
            waited = (
                0.0 if conn.initialized or conn.data_ready else gthread.DEFAULT_WORKER_DATA_TIMEOUT
            )
            watch_headers(conn.sock, time.monotonic() + waited + HEADER_TIMEOUT)
        try:
            return super().handle(conn)
        finally:
            header_deadline_done(conn.sock)
