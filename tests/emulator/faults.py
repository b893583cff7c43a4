"""Which AWS call is this, and should it fail? (request classification + fault injection)

The product must survive throttling, 5xx and Route 53's PriorRequestNotComplete; moto never
produces them. Tests register fault rules (``POST /moto-ext/faults``); the next ``count``
matching requests are answered with that error in the service's own wire format, so the
AWS SDKs (Rust or boto3) parse and classify them (retryable, throttling) as they would
real ones. A rule with ``delay_ms`` holds the matching requests that long first (outside
the emulator's lock), as real AWS's latency would; without a ``code`` they are then served. The same classification names the entries of the call log (``/moto-ext/calls``).

Service comes from the SigV4 credential scope (as moto routes), the action from the form
field ``Action`` (query protocols: autoscaling, ec2), the ``X-Amz-Target`` header (JSON
protocols: ssm, events, ...), or the path and method (Route 53's REST protocol).
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape


SIGNING_ALIASES = {"eventbridge": "events"}
TARGET_PREFIXES = {"AmazonSSM": "ssm", "AWSEvents": "events", "AmazonSQS": "sqs"}

_R53 = "/2013-04-01"
ROUTE53_ACTIONS = [
    ("POST", rf"^{_R53}/hostedzone/?$", "CreateHostedZone"),
    ("GET", rf"^{_R53}/hostedzone/?$", "ListHostedZones"),
    ("GET", rf"^{_R53}/hostedzonesbyname/?$", "ListHostedZonesByName"),
    ("GET", rf"^{_R53}/hostedzonecount/?$", "GetHostedZoneCount"),
    ("POST", rf"^{_R53}/hostedzone/[^/]+/rrset/?$", "ChangeResourceRecordSets"),
    ("GET", rf"^{_R53}/hostedzone/[^/]+/rrset/?$", "ListResourceRecordSets"),
    ("GET", rf"^{_R53}/hostedzone/[^/]+/?$", "GetHostedZone"),
    ("POST", rf"^{_R53}/hostedzone/[^/]+/?$", "UpdateHostedZoneComment"),
    ("DELETE", rf"^{_R53}/hostedzone/[^/]+/?$", "DeleteHostedZone"),
    ("GET", rf"^{_R53}/change/[^/]+/?$", "GetChange"),
    ("POST", rf"^{_R53}/healthcheck/?$", "CreateHealthCheck"),
    ("GET", rf"^{_R53}/healthcheck/?$", "ListHealthChecks"),
    ("GET", rf"^{_R53}/healthcheck/[^/]+/?$", "GetHealthCheck"),
    ("DELETE", rf"^{_R53}/healthcheck/[^/]+/?$", "DeleteHealthCheck"),
    ("POST", rf"^{_R53}/tags/[^/]+/[^/]+/?$", "ChangeTagsForResource"),
    ("GET", rf"^{_R53}/tags/[^/]+/[^/]+/?$", "ListTagsForResource"),
]

_rules: list[dict[str, Any]] = []
# The rules' own lock: every call looks here, SQS's too, so not the emulator's lock.
_lock = threading.Lock()
FORM_KEY = "moto_ext.form"  # environ: the parsed query-protocol parameters
REGION_KEY = "moto_ext.region"  # environ: the region of the SigV4 credential scope


# --------------------------------------------------------------------------- classification


def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
    """Query-protocol parameters; the body is read and put back for moto."""
    params = parse_qs(environ.get("QUERY_STRING", ""))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            params.update(parse_qs(body.decode("utf-8", "replace")))
    environ[FORM_KEY] = params  # quotas.py reads EC2's Filter/MaxResults from it
    return params


def classify(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, action) of an AWS request, e.g. ("autoscaling", "SetDesiredCapacity")."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    service = ""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if auth:
        try:
            scope = auth.split(",")[0].split()[1].split("/")
            service = scope[3].lower()
            environ[REGION_KEY] = scope[2]
        except IndexError:
            service = ""
        service = SIGNING_ALIASES.get(service, service)
    if not service and target:
        service = TARGET_PREFIXES.get(target.split(".", 1)[0], "")
    if not service and path.startswith(_R53 + "/"):
        service = "route53"

    if target and "." in target:
        return service or "unknown", target.split(".", 1)[1]
    if service == "route53":
        for verb, pattern, action in ROUTE53_ACTIONS:
            if method == verb and re.match(pattern, path):
                return service, action
    action = (_form(environ).get("Action") or [""])[0]
    if action:
        return service or "unknown", action
    return service or "unknown", f"{method} {path}"


# --------------------------------------------------------------------------- rules


def add(rule: Any) -> dict[str, Any]:
    """A rule: an error ``code`` to answer with, a ``delay_ms`` before serving (the
    network and service latency of real AWS, which moto does not have), or both."""
    if not isinstance(rule, dict):
        raise ValueError('a fault needs {"code": "..."} and/or {"delay_ms": N}')
    code = rule.get("code")
    delay_ms = rule.get("delay_ms", 0)
    if code is not None and (not isinstance(code, str) or not code):
        raise ValueError("code must be a non-empty string")
    if not isinstance(delay_ms, int) or not 0 <= delay_ms <= 60000:
        raise ValueError("delay_ms must be an integer from 0 to 60000")
    if code is None and delay_ms == 0:
        raise ValueError('a fault needs {"code": "..."} and/or {"delay_ms": N}')
    normalized = {
        "service": str(rule.get("service", "*")),
        "action": str(rule.get("action", "*")),
        "code": code,
        "delay_ms": delay_ms,
        "status": int(rule.get("status", 400)),
        "count": int(rule.get("count", 1)),  # -1: until cleared
        "message": str(rule.get("message", code or "")),
    }
    if not 400 <= normalized["status"] <= 599:
        raise ValueError("status must be a 4xx or 5xx HTTP status")
    with _lock:
        _rules.append(normalized)
    return dict(normalized)


def rules() -> list[dict[str, Any]]:
    with _lock:
        return [dict(r) for r in _rules]


def clear() -> None:
    with _lock:
        _rules.clear()


def take(service: str, action: str) -> dict[str, Any] | None:
    """The first rule matching this call, consuming one of its uses."""
    with _lock:
        for rule in _rules:
            if rule["service"] in ("*", service) and rule["action"] in ("*", action):
                if rule["count"] > 0:
                    rule["count"] -= 1
                    if rule["count"] == 0:
                        _rules.remove(rule)
                return dict(rule)
    return None


# --------------------------------------------------------------------------- wire formats


def render(environ: dict[str, Any], service: str, rule: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """The error response, in the protocol the request used."""
    request_id = str(uuid.uuid4())
    code, message, status = rule["code"], rule["message"], rule["status"]
    kind = "Sender" if status < 500 else "Receiver"
    headers = [("x-amzn-RequestId", request_id)]
    error_xml = (
        f"<Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error>"
    )
    if service == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        content_type = "text/xml;charset=UTF-8"
    elif service == "route53":
        body = (
            '<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
            f"{error_xml}<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        content_type = "text/xml"
    elif service == "dynamodb":
        # DynamoDB's JSON 1.0 errors name the shape with its namespace.
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
        content_type = "application/x-amz-json-1.0"
    elif environ.get("HTTP_X_AMZ_TARGET"):
        body = json.dumps({"__type": code, "message": message})
        content_type = "application/x-amz-json-1.1"
        headers.append(("x-amzn-ErrorType", code))
        if service == "sqs":
            headers.append(("x-amzn-query-error", f"{code};{kind}"))
    else:
        namespace = (
            ' xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"' if service == "autoscaling" else ""
        )
        body = (
            f'<?xml version="1.0"?>\n<ErrorResponse{namespace}>{error_xml}'
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        content_type = "text/xml"
    raw = body.encode("utf-8")
    headers += [("Content-Type", content_type), ("Content-Length", str(len(raw)))]
    return f"{status} {_reason(status)}", headers, raw


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
