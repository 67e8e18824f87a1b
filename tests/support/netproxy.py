"""A TCP proxy in front of the real PostgreSQL server that a test can cut and restore.

Cutting it is what a scheduler sees when its database goes away: open
connections are reset and new ones are refused, while the server itself (and
every other client on it) carries on. Pausing it is a network partition instead: the
connections stay open and nothing reaches either side until it resumes.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.flowing = threading.Event()  # cleared: bytes are held, connections stay open
        self.flowing.set()
        self.held = 0  # chunks that waited for resume(): a client's request met a partition
        self.closing = False
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.flowing.is_set():
                    with self.lock:
                        self.held += 1
                    self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _reset(source)
            _reset(sink)

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self.up.clear()
        with self.lock:
            doomed, self.sockets = self.sockets, set()
        for sock in doomed:
            _reset(sock)

    def restore(self) -> None:
        self.up.set()

    def pause(self) -> None:
        """Hold every byte, both ways, keeping the connections open: a network partition.

        Nothing is reset, so a client waits for its answer as long as its driver and the
        operating system let it; :meth:`resume` delivers what was held.
        """
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closing = True
        self.flowing.set()
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
