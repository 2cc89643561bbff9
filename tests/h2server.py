"""A small HTTP/2-only server over TLS on 127.0.0.1, for the ``http2 = true`` tests.

It offers only ``h2`` in the TLS handshake (ALPN) and speaks nothing else, so a request it
answers is proof that the client spoke HTTP/2. The certificate in ``data/tls`` is self-signed
for 127.0.0.1 and localhost (valid until 2126); clients use ``verify_tls = false``.

Routes: /status/{code}, /redirect (301 to /status/200), /redirect-to/{code}?to= (that status with
``to``, percent-decoded, as its Location), /image/{path} (a file under ``data/images``, whole,
Range ignored). Bodies stay under HTTP/2's initial flow-control window.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import ssl
import threading
from pathlib import Path
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h2.exceptions

DATA = Path(__file__).parent / "data"
CERT, KEY = DATA / "tls" / "cert.pem", DATA / "tls" / "key.pem"


class H2Server:
    """Serves from a daemon thread; ``seen`` lists (method, path) of every request, in order."""

    def __init__(self) -> None:
        self.port = 0
        self.seen: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def start(self) -> H2Server:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the HTTP/2 test server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(CERT, KEY)
        context.set_alpn_protocols(["h2"])
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=context)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stopping.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        fields = {str(k): str(v) for k, v in event.headers}
                        self.seen.append((fields[":method"], fields[":path"]))
                        self._answer(conn, event.stream_id, fields[":method"], fields[":path"])
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    def _answer(self, conn: h2.connection.H2Connection, stream: int, method: str, path: str) -> None:
        parts = path.partition("?")[0].strip("/").split("/")
        status, body, ctype, extra = 404, b"no such route\n", "text/plain", []
        if parts[0] == "status" and len(parts) > 1 and parts[1].isdigit():
            status, body = int(parts[1]), f"status {parts[1]}\n".encode()
        elif parts[0] == "redirect":
            status, body, extra = 301, b"", [("location", "/status/200")]
        elif parts[0] == "redirect-to" and len(parts) > 1 and parts[1].isdigit():
            location = parse_qs(path.partition("?")[2]).get("to", ["/status/200"])[0]
            status, body, extra = int(parts[1]), b"", [("location", location)]
        elif parts[0] == "image":
            file = (DATA / "images" / "/".join(parts[1:])).resolve()
            if (DATA / "images").resolve() in file.parents and file.is_file():
                status, body = 200, file.read_bytes()
                ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        headers = [
            (":status", str(status)),
            ("content-type", ctype),
            ("content-length", str(len(body))),
            *extra,
        ]
        head_only = method == "HEAD" or not body
        conn.send_headers(stream, headers, end_stream=head_only)
        if not head_only:
            conn.send_data(stream, body, end_stream=True)
