"""A TCP proxy on a free loopback port in front of a real server, for faults that hang
instead of failing (the fault tests' stalled S3, the scale tests' slow flush).

- `stall()`: connections are still accepted and bytes still read, but nothing is forwarded
  either way: the sender sees its write accepted, the receiver never gets an answer;
- `resume()`: forwarding again for new connections; the stalled ones are reset (dead to
  their clients anyway). `resume(release=True)` lets the held bytes through instead, so a
  call that was hanging completes;
- `close()`: every connection is reset and new ones are refused at once;
- `shutdown()`: the proxy stops.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.s3 import free_port

_RESET = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: close() sends RST


class TcpProxy:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "pass"
        self._running = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self.mode = "stall"

    def resume(self, *, release: bool = False) -> None:
        if self.mode == "stall" and not release:
            self.close()
        self.mode = "pass"

    def close(self) -> None:
        self.mode = "close"
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()

    def shutdown(self) -> None:
        self._running = False
        self.close()
        self._listener.close()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._running:
                    return
                continue
            if self.mode == "close":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            # Blocking from here: a stalled connection must hang until its client gives up,
            # not be closed by the proxy's own connect timeout after 5 idle seconds.
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.mode == "stall":
                    time.sleep(0.05)  # hold the bytes: the peer waits
                if self.mode == "close":
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
