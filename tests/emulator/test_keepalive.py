"""The emulator keeps HTTP/1.1 connections open between requests, as AWS's endpoints do
(keepalive.py), and closes them when a client asks or a request cannot be framed."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=00"
)


class Conn:
    """One client connection, its answers read through a buffer (pipelined answers may
    arrive in one segment)."""

    def __init__(self, emu) -> None:
        u = urlparse(emu.url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer, read by its Content-Length (or to the end when it has none)."""
        status_line = self.reader.readline()
        assert status_line, "connection closed before an answer"
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" not in headers:
            return status, headers, self.reader.read()
        body = self.reader.read(int(headers["content-length"]))
        assert len(body) == int(headers["content-length"]), "connection closed in the body"
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (within the socket's timeout)."""
        self.sock.settimeout(5)
        try:
            return self.reader.read(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False


def _sqs(target: str, body: dict, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST / HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/x-amz-json-1.0\r\n"
        f"X-Amz-Target: AmazonSQS.{target}\r\nX-Amz-Date: 20260101T000000Z\r\n"
        f"Authorization: {AUTH}\r\nContent-Length: {len(data)}\r\n{extra}\r\n"
    )
    return head.encode() + data


def test_requests_share_a_connection_until_the_client_asks_to_close(emu):
    c = Conn(emu)
    c.send(_sqs("CreateQueue", {"QueueName": "kept"}))
    status, headers, body = c.answer()
    assert status == 200 and headers.get("connection") != "close", headers
    url = json.loads(body)["QueueUrl"]
    # Three messages over the same connection, the last two sent back to back.
    c.send(_sqs("SendMessage", {"QueueUrl": url, "MessageBody": "one"}))
    assert c.answer()[0] == 200
    c.send(
        _sqs("SendMessage", {"QueueUrl": url, "MessageBody": "two"})
        + _sqs("SendMessage", {"QueueUrl": url, "MessageBody": "three"}, "Connection: close\r\n")
    )
    assert c.answer()[0] == 200
    status, headers, _ = c.answer()
    assert status == 200 and headers.get("connection") == "close"
    assert c.closed(), "the server closes the connection the client asked it to"
    sqs = emu.client("sqs")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "three", "two"]


def test_a_chunked_request_is_answered_and_its_connection_closed(emu):
    emu.client("sqs").create_queue(QueueName="chunky")
    data = json.dumps({"QueueName": "chunky"}).encode()
    c = Conn(emu)
    c.send(
        b"POST / HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: AmazonSQS.GetQueueUrl\r\nAuthorization: " + AUTH.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    )
    status, headers, body = c.answer()
    assert status == 200 and headers.get("connection") == "close"
    assert json.loads(body)["QueueUrl"].endswith("/chunky")


def test_an_error_answer_keeps_its_length_and_the_connection(emu):
    c = Conn(emu)
    c.send(_sqs("GetQueueUrl", {"QueueName": "nowhere"}))
    status, headers, body = c.answer()
    assert status == 400 and b"QueueDoesNotExist" in body
    c.send(_sqs("CreateQueue", {"QueueName": "after-error"}))
    status, _, body = c.answer()
    assert status == 200 and json.loads(body)["QueueUrl"].endswith("/after-error")


def test_a_head_answer_has_no_body_and_the_connection_goes_on(emu):
    c = Conn(emu)
    c.send(b"HEAD /moto-ext/calls HTTP/1.1\r\nHost: emulator\r\n\r\n")
    assert c.reader.readline().startswith(b"HTTP/1.1 ")
    while c.reader.readline() not in (b"\r\n", b""):
        pass  # its headers; no body follows (the next answer starts right after them)
    c.send(b"GET /moto-ext/calls HTTP/1.1\r\nHost: emulator\r\n\r\n")
    status, headers, body = c.answer()
    assert status == 200 and isinstance(json.loads(body), list)
    assert headers.get("connection") != "close"


def test_with_close_every_answer_closes_its_connection():
    from .conftest import Emulator

    closing = Emulator("--close")
    try:
        c = Conn(closing)
        c.send(_sqs("CreateQueue", {"QueueName": "closing"}))
        status, headers, _ = c.answer()
        assert status == 200 and headers.get("connection") == "close"
        assert c.closed()
    finally:
        assert closing.stop() == 0
