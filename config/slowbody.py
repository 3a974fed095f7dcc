"""A deadline for reading a request's body (REQUEST_BODY_TIMEOUT_SECONDS), as WSGI middleware.

gunicorn's threaded worker hands a connection to a thread once its headers are readable;
the application then reads the body with blocking reads. A client that sends the headers and
part of the body and then holds (or trickles a byte now and then) would keep that thread
forever. This middleware reads the whole body up front, before Django sees the request:
each read waits at most for what is left of the deadline (the socket's timeout), and a
watchdog thread shuts the socket's reading side when the deadline passes, which also ends a
read that a trickling client keeps alive. Such a request is answered 408 `request_timeout`
with the error body, and the connection is closed after it. Requests without a body pass untouched.

Only under gunicorn (it puts the client socket in `environ["gunicorn.socket"]`); elsewhere
(runserver, the test client) the application is called directly.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time

logger = logging.getLogger("threadline.slowbody")

_BODY = json.dumps(
    {
        "error": {
            "code": "request_timeout",
            "message": "The request body did not arrive in time.",
            "details": {},
        }
    }
).encode()


class _Watchdog:
    """One thread per process: shuts the reading side of sockets whose deadline passed."""

    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, socket.socket]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, token: int, deadline: float, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines[token] = (deadline, sock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="body-deadline", daemon=True)
                self._thread.start()

    def unwatch(self, token: int) -> None:
        with self._lock:
            self._deadlines.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                expired = [(t, s) for t, (d, s) in self._deadlines.items() if d <= now]
                for token, _ in expired:
                    self._deadlines.pop(token, None)
            for _, sock in expired:
                try:
                    sock.shutdown(socket.SHUT_RD)  # a blocked recv() returns at once
                except OSError:
                    pass


_watchdog = _Watchdog()


def watch_headers(sock: socket.socket, deadline: float) -> None:
    """Shut `sock`'s reading side at `deadline` unless the request's headers were read by
    then (config/gunicorn_worker.py)."""
    _watchdog.watch(id(sock), deadline, sock)


def header_deadline_done(sock: socket.socket) -> None:
    _watchdog.unwatch(id(sock))


class BodyDeadline:
    def __init__(self, app, seconds: float, max_bytes: int) -> None:
        self.app = app
        self.seconds = seconds
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is not None:
            header_deadline_done(sock)  # the headers are in: the body's deadline applies now
        length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if sock is None or not self.seconds or (not chunked and length in ("", "0")):
            return self.app(environ, start_response)
        try:
            expected = int(length) if not chunked else None
        except ValueError:
            return self.app(environ, start_response)  # Django answers a bad length
        if expected is not None and expected > self.max_bytes:
            return self.app(environ, start_response)  # refused with 413 before reading
        body = self._read(environ, sock, expected)
        if body is None:
            environ["wsgi.input"] = io.BytesIO(b"")  # nothing more is read from it
            start_response(
                "408 Request Timeout",
                [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))],
            )
            return [_BODY]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _read(self, environ, sock: socket.socket, expected: int | None) -> bytes | None:
        """The whole body, or None when it did not arrive by the deadline."""
        stream = environ["wsgi.input"]
        deadline = time.monotonic() + self.seconds
        token = id(environ)
        chunks: list[bytes] = []
        received = 0
        _watchdog.watch(token, deadline, sock)
        try:
            while expected is None or received < expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                want = 65536 if expected is None else min(65536, expected - received)
                chunk = stream.read(want)
                if not chunk:
                    if expected is None:
                        break  # the end of a chunked body
                    raise TimeoutError  # the read side was shut: the deadline passed
                chunks.append(chunk)
                received += len(chunk)
                if received > self.max_bytes:
                    break  # Django refuses it with 413; no need to read the rest
        except Exception as exc:  # socket timeout, shut socket, gunicorn's NoMoreData
            logger.warning(
                "request body of %s %s not received within %.0f s (%d of %s bytes): %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                self.seconds,
                received,
                expected if expected is not None else "?",
                type(exc).__name__,
            )
            try:
                sock.shutdown(socket.SHUT_RD)  # no more of this connection is read: closed
            except OSError:
                pass
            return None
        finally:
            _watchdog.unwatch(token)
            try:
                sock.settimeout(None)
            except OSError:
                pass
        return b"".join(chunks)
