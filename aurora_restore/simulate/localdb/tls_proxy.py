"""A TLS front for a server built without OpenSSL: PostgreSQL's SSLRequest answered in Python.

The embedded server listens on a Unix socket only; this listens on ``127.0.0.1``, completes the
TLS handshake, then passes bytes through. Plaintext startups are refused as an RDS cluster with
``rds.force_ssl=1`` refuses them, so a client that forgets TLS fails here as it would on RDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Any

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


class TlsFront:
    """A TLS endpoint in front of the server's Unix socket, speaking PostgreSQL's SSLRequest.

    Runs its own event loop on a daemon thread. Plaintext startups are refused with the error
    an RDS cluster gives when ``rds.force_ssl`` is on.
    """

    def __init__(self, backend_socket: str, cert_file: Path, key_file: Path) -> None:
        import ssl

        self._backend = backend_socket
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ssl.load_cert_chain(str(cert_file), str(key_file))
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: asyncio.Task[Any] | None = None

    def start(self) -> int:
        """Listen on 127.0.0.1 and a free port; return the port."""
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.setblocking(False)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._serving = self._loop.create_task(self._accept())
            self._loop.call_soon(ready.set)
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(self._serving)
            # Close the connections still open, then the loop.
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                self._loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="aurora-restore-pg-tls", daemon=True)
        self._thread.start()
        ready.wait(10)
        port: int = self._listener.getsockname()[1]
        return port

    def stop(self) -> None:
        """Stop accepting, close every connection, join the thread."""
        if self._thread is None:
            return
        if self._serving is not None:
            self._loop.call_soon_threadsafe(self._serving.cancel)
        self._thread.join(10)
        self._thread = None
        if self._listener is not None:
            self._listener.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            client, _ = await loop.sock_accept(self._listener)
            task = loop.create_task(self._serve(client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        writers: list[asyncio.StreamWriter] = []
        try:
            while True:
                header = await _receive(loop, client, 8)
                length, code = struct.unpack("!ii", header)
                if length == 8 and code == SSL_REQUEST:
                    await loop.sock_sendall(client, b"S")
                    break
                if length == 8 and code == GSSENC_REQUEST:
                    await loop.sock_sendall(client, b"N")
                    continue
                if length == 16 and code == CANCEL_REQUEST:
                    # A plaintext cancel request: hand it to the server as is.
                    body = await _receive(loop, client, 8)
                    _, backend = await asyncio.open_unix_connection(self._backend)
                    backend.write(header + body)
                    await backend.drain()
                    backend.close()
                    client.close()
                    return
                await loop.sock_sendall(
                    client,
                    _error_response(
                        "28000",
                        'no pg_hba.conf entry for host "127.0.0.1", SSL off (the server requires TLS, '
                        "like an RDS cluster with rds.force_ssl=1)",
                    ),
                )
                client.close()
                return
            reader = asyncio.StreamReader()
            transport, protocol = await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader),
                sock=client,
                ssl=self._ssl,
                ssl_handshake_timeout=10,
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            writers.append(writer)
            backend_reader, backend_writer = await asyncio.open_unix_connection(self._backend)
            writers.append(backend_writer)
            await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ConnectionError, EOFError):
            pass  # the client went away or never finished the handshake
        finally:
            for writer in writers:
                writer.close()
            with contextlib.suppress(OSError):
                client.close()


async def _receive(loop: asyncio.AbstractEventLoop, sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await loop.sock_recv(sock, count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        writer.close()


def _error_response(code: str, message: str) -> bytes:
    fields = (
        b"".join(
            kind + value.encode() + b"\x00"
            for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
        )
        + b"\x00"
    )
    return b"E" + struct.pack("!i", len(fields) + 4) + fields
