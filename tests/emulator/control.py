"""The WSGI layer in front of moto: control API, call log, faults, one lock.

Tests steer and observe the emulator over HTTP on the same port as the AWS APIs, under
``/moto-ext/`` (moto keeps ``/moto-api/``). Every other request is an AWS call: it is
classified (:mod:`faults`), logged, possibly answered with an injected fault, and otherwise
served by moto while holding :data:`emulator.LOCK`, so moto's models never see a request and
a lifecycle timer or an SSM result at the same time. SQS, which nothing else touches, is
served under a lock of its own (:data:`sqs_queues.LOCK`: a long poll must not hold every
other call), and the call log and the fault rules have locks of their own too.

Control endpoints (JSON in and out):
  GET  /moto-ext/health                     {"ok": true}
  GET  /moto-ext/calls                      [{"service","action","time","locked","end","status","key"}, ...]
                                            time: arrived, locked: served from, end: answered;
                                            + "attempt", "invocation" on an SDK retry;
                                            + "replayed": true when a retry got the answer
                                              its call already had (see replay.py)
                                            + "throttled": true, "quota" when a quota answered
                                            + "fast": true when sqs_fast.py answered it
  POST /moto-ext/calls/reset
  GET|POST|DELETE /moto-ext/faults          list / add one rule (or a list) / clear:
                                            {"service","action","code","status","count",
                                             "message","delay_ms"}
  GET  /moto-ext/lifecycle                  lifecycle actions, pending ones with result null
  GET  /moto-ext/events                     events emitted (aws.autoscaling, aws.ssm, aws.ec2), in order
  GET  /moto-ext/instances                  every EC2 instance: {"id","subnet","ip","state"}
  GET|POST|DELETE /moto-ext/ssm/hosts       per-instance Run Command programs
  GET|POST /moto-ext/ssm/agent              SSM Agent settings: {"workers","buffer","delivery_scale"}
  GET|POST|DELETE /moto-ext/quotas          request quotas (token buckets): {"service:Action": {"burst","rate"}},
                                            {"profile": "aws-default"}
  POST /moto-ext/ec2/spot-interruption      {"instance","action","hook_after_ms","terminate_after_ms"}
  POST /moto-ext/ec2/rebalance-recommendation  {"instance","hook_after_ms","terminate_after_ms"}
  GET|POST /moto-ext/instance-health       SetInstanceHealth: {"replace_after_ms"} (POST sets it), and
                                            GET's "log": every call applied and replacement started
  GET  /moto-ext/timers                     delayed actions still to come
  POST /moto-ext/reset                      moto's reset plus all extension state
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterable

from . import (
    LOCK,
    ec2_signals,
    events_bridge,
    faults,
    health,
    lifecycle,
    quotas,
    replay,
    speed,
    sqs_fast,
    sqs_queues,
    ssm_exec,
    terraform_compat,
    timers,
)

_calls: list[dict[str, Any]] = []
# The call log's own lock: logging a call (every SQS request too) must not wait for a
# model call holding the emulator's lock.
_calls_lock = threading.Lock()
UNLOCKED_SERVICES = {"sqs"}


def reset_all() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    with LOCK:
        ssm_exec.reset()
        timers.reset()
        lifecycle.reset()
        health.reset()
        events_bridge.reset()
        faults.clear()
        quotas.reset()
        replay.reset()
        sqs_queues.reset()
        with _calls_lock:
            _calls.clear()
        moto_api_backend.reset()


def _sdk_attempt(environ: dict[str, Any]) -> int:
    """The attempt number AWS SDKs send in ``amz-sdk-request: attempt=N; max=M`` (1 if none)."""
    for part in environ.get("HTTP_AMZ_SDK_REQUEST", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value)
    return 1


def _access_key(environ: dict[str, Any]) -> str:
    """The access key id of the request's SigV4 ``Credential=KEY/date/region/service/...``
    (which principal called: benchmarks attribute calls to the reactor, the agents and
    themselves by it)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    start = auth.find("Credential=")
    if start < 0:
        return ""
    return auth[start + 11 :].split("/", 1)[0]


class ExtensionApp:
    def __init__(self, moto_app: Callable[..., Iterable[bytes]]):
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-ext/"):
            return self._control(environ, start_response)
        if path.startswith("/moto-api") or path == "/favicon.ico":
            if path.rstrip("/") == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
                with LOCK:
                    ssm_exec.reset()
                    timers.reset()
                    lifecycle.reset()
                    health.reset()
                    events_bridge.reset()
                    replay.reset()
                    sqs_queues.reset()
            with LOCK:
                return _materialize(self.moto_app(environ, start_response))
        return self._aws(environ, start_response)

    # ------------------------------------------------------------------ AWS calls

    def _aws(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service, action = faults.classify(environ)
        entry: dict[str, Any] = {"service": service, "action": action, "time": time.time()}
        key = _access_key(environ)
        if key:
            entry["key"] = key
        attempt = _sdk_attempt(environ)
        if attempt > 1:
            # An SDK retry: the same invocation id as the attempts before it, so a
            # mutating call applied twice (a lost answer, a timeout) can be told apart.
            entry["attempt"] = attempt
            entry["invocation"] = environ.get("HTTP_AMZ_SDK_INVOCATION_ID", "")
        with _calls_lock:
            _calls.append(entry)
        fault = faults.take(service, action)
        if fault is not None and fault["delay_ms"]:
            entry["delay_ms"] = fault["delay_ms"]
            time.sleep(fault["delay_ms"] / 1000)
        if fault is not None and fault["code"]:
            status, headers, body = faults.render(environ, service, fault)
            entry["status"] = int(status.split()[0])
            entry["fault"] = fault["code"]
            entry["end"] = time.time()
            start_response(status, headers)
            return [body]
        throttle = quotas.take(environ, service, action)
        if throttle is not None:
            status, headers, body = faults.render(environ, service, throttle)
            entry["status"] = int(status.split()[0])
            entry["throttled"] = True
            entry["quota"] = throttle["quota"]
            entry["end"] = time.time()
            start_response(status, headers)
            return [body]

        kept = replay.recall(environ, attempt)
        if kept is not None:
            status, headers, body = kept
            entry["status"] = int(status.split()[0])
            entry["replayed"] = True
            entry["end"] = time.time()
            start_response(status, headers)
            return [body]
        answer: dict[str, Any] = {}

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            entry["status"] = int(status.split()[0])
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            if service in UNLOCKED_SERVICES:  # SQS long polls must not block the emulator
                with sqs_queues.LOCK:  # but moto's queues take one request at a time
                    fast = sqs_fast.answer(environ, recording_start_response)
                    if fast is not None:
                        entry["fast"] = True
                        return list(fast)
                    return _materialize(self.moto_app(environ, recording_start_response))
            with LOCK:
                entry["locked"] = time.time()
                body = _materialize(self.moto_app(environ, recording_start_response))
            if replay.keeps(service, action) and "status" in answer:
                replay.remember(environ, answer["status"], answer["headers"], b"".join(body))
            return body
        finally:
            entry["end"] = time.time()

    # ------------------------------------------------------------------ control API

    def _control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "").rstrip("/")
        try:
            body = _json_body(environ)
            status, payload = self._route(method, path, body)
        except ValueError as exc:
            status, payload = 400, {"error": str(exc)}
        raw = json.dumps(payload, default=str).encode("utf-8")
        start_response(
            f"{status} {'OK' if status < 400 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))],
        )
        return [raw]

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        route = (method, path)
        if route == ("GET", "/moto-ext/health"):
            return 200, {"ok": True}
        if route == ("GET", "/moto-ext/calls"):
            with _calls_lock:
                return 200, [dict(c) for c in _calls]
        if route == ("POST", "/moto-ext/calls/reset"):
            with _calls_lock:
                _calls.clear()
            return 200, {"ok": True}
        if route == ("GET", "/moto-ext/faults"):
            return 200, faults.rules()
        if route == ("POST", "/moto-ext/faults"):
            added = [faults.add(r) for r in (body if isinstance(body, list) else [body])]
            return 200, added
        if route == ("DELETE", "/moto-ext/faults"):
            faults.clear()
            return 200, {"ok": True}
        if route == ("GET", "/moto-ext/lifecycle"):
            return 200, lifecycle.snapshot()
        if route == ("GET", "/moto-ext/events"):
            return 200, events_bridge.emitted()
        if route == ("GET", "/moto-ext/instances"):
            return 200, instances()
        if route == ("GET", "/moto-ext/ssm/hosts"):
            return 200, ssm_exec.hosts()
        if route == ("POST", "/moto-ext/ssm/hosts"):
            return 200, ssm_exec.set_hosts(body)
        if route == ("DELETE", "/moto-ext/ssm/hosts"):
            ssm_exec.set_hosts({k: None for k in ssm_exec.hosts()})
            return 200, {"ok": True}
        if route == ("GET", "/moto-ext/ssm/agent"):
            return 200, ssm_exec.agent()
        if route == ("POST", "/moto-ext/ssm/agent"):
            return 200, ssm_exec.set_agent(body)
        if route == ("GET", "/moto-ext/quotas"):
            return 200, quotas.listing()
        if route == ("POST", "/moto-ext/quotas"):
            return 200, quotas.configure(body)
        if route == ("DELETE", "/moto-ext/quotas"):
            quotas.clear()
            return 200, {"ok": True}
        if route == ("POST", "/moto-ext/ec2/spot-interruption"):
            return 200, ec2_signals.spot_interruption(body)
        if route == ("POST", "/moto-ext/ec2/rebalance-recommendation"):
            return 200, ec2_signals.rebalance_recommendation(body)
        if route == ("GET", "/moto-ext/instance-health"):
            return 200, health.listing()
        if route == ("POST", "/moto-ext/instance-health"):
            return 200, health.configure(body)
        if route == ("GET", "/moto-ext/timers"):
            return 200, timers.pending()
        if route == ("POST", "/moto-ext/reset"):
            reset_all()
            return 200, {"ok": True}
        return 404, {"error": f"no control endpoint {method} {path}"}


def instances() -> list[dict[str, Any]]:
    """Every EC2 instance of every account and region, read straight from moto's models.

    The harness that plays instances booting polls this many times a second; a
    DescribeInstances through moto's XML layer costs 10-30 ms of the emulator's one lock,
    which would slow down the AWS calls under measurement.
    """
    from moto.ec2.models import ec2_backends

    out = []
    with LOCK:
        for regions in list(ec2_backends.values()):
            for backend in list(regions.values()):
                for reservation in list(backend.reservations.values()):
                    for i in reservation.instances:
                        out.append(
                            {"id": i.id, "subnet": i.subnet_id, "ip": i.private_ip, "state": i.state}
                        )
    return out


def _json_body(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON body: {exc}") from None


def _materialize(result: Iterable[bytes]) -> list[bytes]:
    try:
        return [b"".join(result)]
    finally:
        close = getattr(result, "close", None)
        if close:
            close()


def build_app() -> ExtensionApp:
    """Install every patch into moto and return the WSGI app to serve."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    speed.install()
    lifecycle.install()
    health.install()
    ssm_exec.install()
    sqs_queues.install()
    terraform_compat.install()
    moto_app = DomainDispatcherApplication(create_backend_app)
    return ExtensionApp(moto_app)
