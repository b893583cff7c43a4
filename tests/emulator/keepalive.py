"""HTTP/1.1 keep-alive for the emulator's server, as AWS's endpoints keep connections.

werkzeug 3.1's development server answers every request with ``Connection: close`` (its
``run_wsgi`` cannot tell where a request's body ends once the application has read part
of it), then waits on the socket for the client to close it. Every AWS call then opens a
TCP connection and takes a server thread, where AWS keeps the SDKs' pooled connections
(the reactor's, the agents'): an emulated SendMessage cost 0.63-0.69 ms of the server's
CPU that way, 0.38-0.51 ms over a kept connection, and the emulator's one interpreter is
what every emulated call waits for.

:class:`KeepAliveHandler` reads a request's body in full before the application sees it
(its ``Content-Length``), so the next request starts exactly where the body ends, and
answers with the answer's length: the connection stays open for the client's next call
unless the client asked to close it. A request it cannot frame that way (a chunked body,
``Expect: 100-continue``, no length on a method that carries a body) goes through
werkzeug's own path, which closes the connection as before. A connection idle for
``IDLE_S`` is closed (the SDKs retry a call that finds its pooled connection closed).
"""

from __future__ import annotations

import io
import logging
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler

# An idle connection is closed after this long: the SDKs keep idle connections for less
# (hyper's pool: 90 s), so a pooled connection is rarely closed under a client.
IDLE_S = 120.0

# A body larger than this is not read ahead (werkzeug's path streams it and closes).
MAX_BODY = 64 << 20

_log = logging.getLogger(__name__)

# The answer's own framing and connection headers: this handler sets its own.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, keeping the connection open between requests."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_S
    # An answer is written at once (headers and body in one write); without this, a
    # client's delayed ACK would hold the next small write for 40 ms.
    disable_nagle_algorithm = True

    def run_wsgi(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            super().run_wsgi()
            return
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        self.environ = environ
        try:
            status, headers, answer = _call(self.server.app, environ)
        except Exception:  # the application failed: a 500 as werkzeug answers one
            _log.exception("error on request %s %s", self.command, self.path)
            status, headers, answer = "500 INTERNAL SERVER ERROR", [], b"Internal Server Error"
            self.close_connection = True
        self._answer(status, headers, answer)

    def _read_body(self) -> bytes | None:
        """The request's body, read in full; ``None`` when it cannot be framed here."""
        if self.headers.get("Transfer-Encoding") or self.headers.get("Expect"):
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            return b"" if self.command in ("GET", "HEAD", "DELETE", "OPTIONS") else None
        try:
            n = int(length)
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY:
            return None
        body = self.rfile.read(n)
        if len(body) != n:  # the client went away mid-body
            self.close_connection = True
        return body

    def _answer(self, status: str, headers: list[tuple[str, str]], answer: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        for key, value in headers:
            if key.lower() not in _FRAMING:
                self.send_header(key, value)
        if self.command == "HEAD":
            length = next((v for k, v in headers if k.lower() == "content-length"), "0")
            self.send_header("Content-Length", length)
        elif not (100 <= code < 200 or code in (204, 304)):
            self.send_header("Content-Length", str(len(answer)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write (http.server buffers the headers until then).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(answer)
        self.flush_headers()


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Runs the WSGI `app`: its status, headers and whole answer."""
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started:
        raise RuntimeError("the application answered without starting a response")
    return started[0], started[1], b"".join(chunks)
