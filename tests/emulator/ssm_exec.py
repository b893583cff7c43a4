"""SSM Run Command that actually runs something, per instance, under test control.

moto records SendCommand and reports every invocation as an instant Success with no output;
it also sends a command given by InstanceIds to every EC2 instance in the region, and has no
ListCommandInvocations or CancelCommand. The reactor talks to its proxy hosts only through
Run Command, so tests need real outcomes. This module patches moto's SSM models so that:

* SendCommand targets exactly the given InstanceIds, or the ``Targets`` criteria
  (``InstanceIds``, ``tag:Key``, ``tag-key``; several criteria are ANDed) resolved against EC2;
  unknown or non-running instances answer ``InvalidInstanceId``;
* a document stored by CreateDocument is checked as SSM checks it: the request's
  ``Parameters`` against the document's ``parameters`` (``InvalidParameters``), and the
  document plus the parameters against the 64 KB quota (``MaxDocumentSizeExceeded``);
* each instance's invocation does what ``POST /moto-ext/ssm/hosts`` programmed for it (key
  ``"*"``: every instance without a program of its own):
  ``document`` runs the document's ``aws:runShellScript`` steps with ``/bin/sh -c`` (the
  production path), ``exec`` runs argv as a local process (no shell), ``forward`` POSTs the
  invocation to a stand-in host on loopback and ends it from the answer, or a fixed
  ``status``/``stdout``/``stderr``/``code`` result after ``delay_ms``; instances without a
  program succeed at once with empty output (moto's default);
* document, exec and forward programs go through the SSM Agent's limits: at most
  ``workers`` (5) run at once per instance, ``buffer`` (5) more wait InProgress, the rest
  Pending, FIFO; one not started when TimeoutSeconds is over ends TimedOut /
  DeliveryTimedOut and never runs, one still running at the total timeout likewise;
* GetCommandInvocation, ListCommands and ListCommandInvocations report consistent statuses
  (Pending/InProgress, then Success/Failed/TimedOut/Cancelled), output truncated as AWS
  does; CancelCommand cancels running and waiting invocations;
* every status change is put on EventBridge (``aws.ssm``), after it is visible.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

from moto.core.responses import ActionResult
from moto.ssm import models as ssm_models
from moto.ssm import responses as ssm_responses
from moto.ssm.exceptions import SSMException, ValidationException

from . import LOCK, events_bridge, iso, timers, utcnow, workers

STDOUT_LIMIT = 24000  # GetCommandInvocation StandardOutputContent
STDERR_LIMIT = 8000  # GetCommandInvocation StandardErrorContent
PLUGIN_OUTPUT_LIMIT = 2500  # ListCommandInvocations CommandPlugins[].Output
RUNNING = {"Pending", "InProgress", "Delayed"}
# "When creating or cloning a document, the content of the document must not exceed 64KB.
# This quota also includes the content specified for input parameters at runtime."
# (CreateDocument Content; SendCommand's error for it is MaxDocumentSizeExceeded).
DOCUMENT_SIZE_LIMIT = 64 * 1024
DEFAULT_STEP_TIMEOUT = 3600  # aws:runShellScript timeoutSeconds default
MAX_STEP_TIMEOUT = 172800
# SSM Agent on Linux reports a step it killed at its execution timeout with this exit code
# (128 + SIGKILL) and the invocation as TimedOut / ExecutionTimedOut.
TIMED_OUT_CODE = 137
EMULATED_PLATFORM = "Linux"
_PARAM_REF = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# SSM Agent (aws/amazon-ssm-agent, agent/appconfig/constants.go): DefaultCommandWorkersLimit
# = 5 documents run at once; DefaultCommandWorkerBufferLimit = 5 more are accepted (and
# reported InProgress) while they wait for a worker; both have a minimum of 1.
DEFAULT_WORKERS = 5
DEFAULT_BUFFER = 5
# SendCommand TimeoutSeconds: "Valid Range: Minimum value of 30. Maximum value of 2592000."
TIMEOUT_SECONDS_RANGE = (30, 2592000)
DEFAULT_EXECUTION_TIMEOUT = 3600  # AWS-RunShellScript executionTimeout default
# Programs that run on the host through the agent, and so wait for one of its workers.
AGENT_PROGRAMS = ("document", "exec", "forward")

_hosts: dict[str, dict[str, Any]] = {}
_procs: set[subprocess.Popen] = set()
_generation = 0
_AGENT_DEFAULTS = {"workers": DEFAULT_WORKERS, "buffer": DEFAULT_BUFFER, "delivery_scale": 1.0}
_agent: dict[str, Any] = dict(_AGENT_DEFAULTS)
# Per instance: how many agent programs run, and the invocations waiting for a worker (FIFO).
_slots: dict[str, dict[str, Any]] = {}


class InvalidInstanceId(SSMException):
    __module__ = "moto.ssm.exceptions"  # moto picks the service model from the module name
    code = "InvalidInstanceId"


class InvalidParameters(SSMException):
    __module__ = "moto.ssm.exceptions"
    code = "InvalidParameters"


class MaxDocumentSizeExceeded(SSMException):
    __module__ = "moto.ssm.exceptions"
    code = "MaxDocumentSizeExceeded"


class InvalidDocument(SSMException):
    __module__ = "moto.ssm.exceptions"
    code = "InvalidDocument"


def _string_map(instance_id: str, program: dict[str, Any], key: str) -> None:
    value = program.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{instance_id}: {key} must map strings to strings")


def set_hosts(programs: dict[str, Any]) -> dict[str, Any]:
    """Merge per-instance programs; a null value removes one."""
    if not isinstance(programs, dict):
        raise ValueError("expected a JSON object keyed by instance id")
    for instance_id, program in programs.items():
        if program is None:
            continue
        if not isinstance(program, dict):
            raise ValueError(f"{instance_id}: program must be an object")
        if "document" in program:
            if program["document"] is not True:
                raise ValueError(f"{instance_id}: document must be true")
            _string_map(instance_id, program, "env")
            _string_map(instance_id, program, "paths")
            if any(not k for k in program.get("paths", {})):
                raise ValueError(f"{instance_id}: paths keys must not be empty")
        elif "exec" in program:
            argv = program["exec"]
            if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
                raise ValueError(f"{instance_id}: exec must be a non-empty list of strings")
            _string_map(instance_id, program, "env")
        elif "forward" in program:
            _check_forward_url(instance_id, program["forward"])
        elif "status" not in program:
            raise ValueError(f"{instance_id}: give document, exec, forward or status")
        for key in ("workers", "buffer"):
            if key in program:
                if not any(kind in program for kind in AGENT_PROGRAMS):
                    raise ValueError(f"{instance_id}: {key} applies to document, exec and forward programs only")
                _positive_int(program[key], f"{instance_id}: {key}")
    with LOCK:
        for instance_id, program in programs.items():
            if program is None:
                _hosts.pop(instance_id, None)
            else:
                _hosts[instance_id] = dict(program)
        for instance_id in list(_slots):
            _pump(instance_id)  # new limits apply to what waits
        return dict(_hosts)


def hosts() -> dict[str, Any]:
    with LOCK:
        return dict(_hosts)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1")
    return value


def _check_forward_url(instance_id: str, url: Any) -> None:
    """A forward program POSTs to loopback only (the emulator never talks to the network)."""
    if not isinstance(url, str):
        raise ValueError(f"{instance_id}: forward must be an http://127.0.0.1:PORT/PATH URL")
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    try:
        parts.port
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ValueError(f"{instance_id}: forward must be an http:// URL on a loopback address, not {url!r}")


def agent() -> dict[str, Any]:
    """``GET /moto-ext/ssm/agent``: the SSM Agent settings every host has by default, and
    what waits for a worker per instance."""
    with LOCK:
        queues = {
            i: {"running": slot["running"], "waiting": [inv["CommandId"] for _, inv in slot["queue"]]}
            for i, slot in sorted(_slots.items())
            if slot["running"] or slot["queue"]
        }
        return {**_agent, "instances": queues}


def set_agent(body: Any) -> dict[str, Any]:
    """``POST /moto-ext/ssm/agent``: ``{"workers": N, "buffer": N, "delivery_scale": X}``
    (each optional). ``delivery_scale`` multiplies SendCommand's TimeoutSeconds (the
    delivery timeout) so that tests can use short ones: 0.01 makes the minimum 30 s 0.3 s."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    unknown = set(body) - set(_AGENT_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown agent setting(s) {sorted(unknown)}; known: {sorted(_AGENT_DEFAULTS)}")
    update: dict[str, Any] = {}
    for key in ("workers", "buffer"):
        if key in body:
            update[key] = _positive_int(body[key], key)
    if "delivery_scale" in body:
        scale = body["delivery_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1000:
            raise ValueError("delivery_scale must be a number > 0 (and <= 1000)")
        update["delivery_scale"] = float(scale)
    with LOCK:
        _agent.update(update)
        for instance_id in list(_slots):
            _pump(instance_id)  # more workers: waiting invocations start now
    return agent()


def reset() -> None:
    global _generation
    with LOCK:
        _generation += 1
        _hosts.clear()
        _agent.clear()
        _agent.update(_AGENT_DEFAULTS)
        _slots.clear()
        procs = list(_procs)
        _procs.clear()
    for proc in procs:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _program_for(instance_id: str) -> dict[str, Any] | None:
    return _hosts.get(instance_id, _hosts.get("*"))


# --------------------------------------------------------------------------- targeting


def _ec2(account: str, region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[account][region]


def _running_instances(account: str, region: str) -> list[Any]:
    return [
        i
        for r in _ec2(account, region).all_reservations()
        for i in r.instances
        if i.state == "running"
    ]


def _resolve_targets(account: str, region: str, targets: list[dict[str, Any]]) -> list[str]:
    if not targets:
        return []
    ec2 = _ec2(account, region)
    running = _running_instances(account, region)
    chosen: list[str] | None = None
    for target in targets:
        key, values = target.get("Key", ""), list(target.get("Values") or [])
        if key == "InstanceIds":
            _check_instances(account, region, values)
            match = values
        elif key.startswith("tag:"):
            match = [i.id for i in running if ec2.tags.get(i.id, {}).get(key[4:]) in values]
        elif key == "tag-key":
            match = [i.id for i in running if set(ec2.tags.get(i.id, {})) & set(values)]
        else:
            raise ValidationException(f"Target key {key} is not supported by the emulator")
        chosen = match if chosen is None else [i for i in chosen if i in match]
    return chosen or []


def _check_instances(account: str, region: str, instance_ids: list[str]) -> None:
    running = {i.id for i in _running_instances(account, region)}
    bad = [i for i in instance_ids if i not in running]
    if bad:
        raise InvalidInstanceId(
            f"Instances [{', '.join('[' + i + ']' for i in bad)}] not in a valid state for "
            f"account {account}"
        )


# --------------------------------------------------------------------------- documents


def _stored_document(backend: Any, name: str | None) -> Any | None:
    """The default version of a document stored by CreateDocument (name or ARN), or None."""
    if not name:
        return None
    short = name.split(":document/", 1)[1] if ":document/" in name else name
    documents = backend._documents.get(short)
    return documents.get_default_version() if documents else None


def _check_size(document: Any | None, parameters: dict[str, Any]) -> None:
    size = 0
    if document is not None:
        content = document.content if isinstance(document.content, str) else json.dumps(document.content)
        size = len(content.encode("utf-8"))
    for name, values in parameters.items():
        size += len(str(name).encode("utf-8"))
        for value in values if isinstance(values, list) else [values]:
            size += len(str(value).encode("utf-8"))
    if size > DOCUMENT_SIZE_LIMIT:
        raise MaxDocumentSizeExceeded(
            f"The document and its runtime parameters total {size} bytes: the size limit of a "
            f"document, parameters included, is 64 KB ({DOCUMENT_SIZE_LIMIT} bytes)."
        )


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return ["" if v is None else (str(v).lower() if isinstance(v, bool) else str(v)) for v in value]
    if isinstance(value, bool):
        return [str(value).lower()]
    return [str(value)]


def _resolve_parameters(document: Any, given: dict[str, Any]) -> dict[str, list[str]]:
    """The document's parameters with the request's values, checked as SSM checks them."""
    spec = (document.content_json or {}).get("parameters") or {}
    unknown = [name for name in given if name not in spec]
    if unknown:
        raise InvalidParameters(
            f"Parameter \"{unknown[0]}\" is not defined in document {document.name}."
        )
    resolved: dict[str, list[str]] = {}
    for name, definition in spec.items():
        definition = definition or {}
        kind = definition.get("type", "String")
        if name in given:
            values = _as_list(given[name])
        elif "default" in definition:
            values = _as_list(definition["default"])
        else:
            raise InvalidParameters(
                f"Parameter \"{name}\" is required by document {document.name} and has no default."
            )
        if kind in ("String", "Integer", "Boolean") and len(values) != 1 and name in given:
            raise InvalidParameters(f"Parameter \"{name}\" of type {kind} takes exactly one value.")
        for value in values if name in given else []:
            if kind == "Integer" and not re.fullmatch(r"-?[0-9]+", value):
                raise InvalidParameters(f"Parameter \"{name}\" value \"{value}\" is not an Integer.")
            if kind == "Boolean" and value not in ("true", "false"):
                raise InvalidParameters(f"Parameter \"{name}\" value \"{value}\" is not a Boolean.")
            allowed = definition.get("allowedValues")
            if allowed is not None and value not in _as_list(allowed):
                raise InvalidParameters(
                    f"Parameter \"{name}\" value \"{value}\" is not one of the allowed values "
                    f"[{', '.join(_as_list(allowed))}]."
                )
            pattern = definition.get("allowedPattern")
            if pattern is not None and re.search(pattern, value) is None:
                raise InvalidParameters(
                    f"Parameter \"{name}\" value \"{value}\" does not match the allowed pattern {pattern}."
                )
            if "minChars" in definition and len(value) < int(definition["minChars"]):
                raise InvalidParameters(f"Parameter \"{name}\" is shorter than {definition['minChars']} characters.")
            if "maxChars" in definition and len(value) > int(definition["maxChars"]):
                raise InvalidParameters(f"Parameter \"{name}\" is longer than {definition['maxChars']} characters.")
        if name in given and "minItems" in definition and len(values) < int(definition["minItems"]):
            raise InvalidParameters(f"Parameter \"{name}\" needs at least {definition['minItems']} values.")
        if name in given and "maxItems" in definition and len(values) > int(definition["maxItems"]):
            raise InvalidParameters(f"Parameter \"{name}\" takes at most {definition['maxItems']} values.")
        resolved[name] = values
    return resolved


def _substitute(text: str, params: dict[str, list[str]]) -> str:
    def one(match: re.Match[str]) -> str:
        values = params.get(match.group(1))
        if values is None:
            return match.group(0)  # not a document parameter ({{ssm:...}} etc.): left alone
        return values[0] if values else ""

    return _PARAM_REF.sub(one, text)


def _lines(run_command: Any, params: dict[str, list[str]]) -> list[str]:
    """runCommand as lines; an entry that is exactly one StringList reference expands to
    all its values (as "{{ commands }}" does in AWS-RunShellScript)."""
    entries = run_command if isinstance(run_command, list) else [run_command]
    lines: list[str] = []
    for entry in entries:
        entry = "" if entry is None else str(entry)
        whole = _PARAM_REF.fullmatch(entry.strip())
        if whole and whole.group(1) in params:
            lines.extend(params[whole.group(1)])
        else:
            lines.append(_substitute(entry, params))
    return lines


def _precondition_holds(step: dict[str, Any]) -> bool:
    """Emulated hosts are Linux: ``{"StringEquals": ["platformType", X]}`` holds for Linux."""
    condition = step.get("precondition")
    if not isinstance(condition, dict):
        return True
    equals = condition.get("StringEquals")
    if isinstance(equals, list) and len(equals) == 2 and equals[0] == "platformType":
        return equals[1] == EMULATED_PLATFORM
    return True


def _plan_steps(document: Any, params: dict[str, list[str]], program: dict[str, Any]) -> list[dict[str, Any]]:
    """What each mainSteps step will run on this host (pure; no process yet)."""
    steps = (document.content_json or {}).get("mainSteps") or []
    paths = sorted((program.get("paths") or {}).items(), key=lambda kv: -len(kv[0]))
    plan = []
    for step in steps:
        step = step or {}
        inputs = step.get("inputs") or {}
        entry: dict[str, Any] = {
            "name": step.get("name", ""),
            "action": step.get("action", ""),
            "onFailure": inputs.get("onFailure"),
            "onSuccess": inputs.get("onSuccess"),
            "finallyStep": str(inputs.get("finallyStep", "")).lower() == "true",
            "skip": None,
        }
        if entry["action"] != "aws:runShellScript":
            entry["skip"] = f"step {entry['name']}: action {entry['action']} is not run by the emulator"
        elif not _precondition_holds(step):
            entry["skip"] = f"step {entry['name']}: precondition not met on {EMULATED_PLATFORM}"
        else:
            script = "\n".join(_lines(inputs.get("runCommand", []), params))
            for key, value in paths:
                script = script.replace(key, value)
            timeout_text = _substitute(str(inputs.get("timeoutSeconds", DEFAULT_STEP_TIMEOUT)), params)
            try:
                timeout = float(timeout_text)
            except ValueError:
                timeout = DEFAULT_STEP_TIMEOUT
            entry["script"] = script
            entry["timeout"] = min(max(timeout, 0.001), MAX_STEP_TIMEOUT)
            cwd = _substitute(str(inputs.get("workingDirectory", "") or ""), params)
            entry["cwd"] = cwd or None
        plan.append(entry)
    return plan


# --------------------------------------------------------------------------- events


def _ts(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return iso(value)
    return str(value)


def _emit_invocation(command: Any, inv: dict[str, Any]) -> None:
    account, region = command.account_id, command.backend_region
    events_bridge.put(
        account,
        region,
        "aws.ssm",
        "EC2 Command Invocation Status-change Notification",
        [events_bridge.instance_arn(account, region, inv["InstanceId"])],
        {
            "command-id": command.command_id,
            "document-name": command.document_name,
            "instance-id": inv["InstanceId"],
            "requested-date-time": _ts(command.requested_date_time),
            "status": inv["Status"],
        },
    )


def _emit_command(command: Any, status: str) -> None:
    account, region = command.account_id, command.backend_region
    events_bridge.put(
        account,
        region,
        "aws.ssm",
        "EC2 Command Status-change Notification",
        [events_bridge.instance_arn(account, region, i) for i in command.instance_ids],
        {
            "command-id": command.command_id,
            "document-name": command.document_name,
            "expire-after": _ts(command.expires_after),
            "parameters": {k: _as_list(v) for k, v in (command.parameters or {}).items()},
            "requested-date-time": _ts(command.requested_date_time),
            "status": status,
        },
    )


def _command_status(command: Any) -> tuple[str, str]:
    """SSM's status for the whole command (MaxErrors is not emulated): InProgress while an
    invocation is not done; then Cancelled if CancelCommand cancelled the command, else
    Failed if any invocation failed, TimedOut if any timed out (StatusDetails
    ExecutionTimedOut if one ran out of time, else DeliveryTimedOut), Cancelled if any was
    cancelled, else Success."""
    statuses = [inv["Status"] for inv in command.invocations]
    if any(s in RUNNING for s in statuses):
        return "InProgress", "InProgress"
    if getattr(command, "ext_cancelled", False):
        return "Cancelled", "Cancelled"
    if "Failed" in statuses:
        return "Failed", "Failed"
    if "TimedOut" in statuses:
        if any(inv["StatusDetails"] == "ExecutionTimedOut" for inv in command.invocations):
            return "TimedOut", "ExecutionTimedOut"
        return "TimedOut", "DeliveryTimedOut"
    if "Cancelled" in statuses:
        return "Cancelled", "Cancelled"
    return "Success", "Success"


def _maybe_command_done(command: Any) -> None:
    if getattr(command, "ext_done", False) or not getattr(command, "ext_started", False):
        return
    status, _ = _command_status(command)
    if status != "InProgress":
        command.ext_done = True
        _emit_command(command, status)


# --------------------------------------------------------------------------- execution


def _finish(
    command: Any,
    inv: dict[str, Any],
    gen: int,
    status: str,
    code: int,
    out: str,
    err: str,
    details: str | None = None,
) -> None:
    with LOCK:
        if gen != _generation or inv["Status"] not in RUNNING:
            return  # reset meanwhile, or already cancelled
        end = utcnow()
        started = inv.get("_start")
        inv.update(
            Status=status,
            StatusDetails=details or status,
            ResponseCode=code,
            StandardOutputContent=out[:STDOUT_LIMIT],
            StandardErrorContent=err[:STDERR_LIMIT],
            ExecutionEndDateTime=iso(end) if started else "",
            ExecutionElapsedTime=_duration(end - started) if started else "",
            _end=end,
            _output=out,
        )
        _emit_invocation(command, inv)
        if _leave(inv):
            _pump(inv["InstanceId"])
        _maybe_command_done(command)


def _duration(delta: datetime.timedelta) -> str:
    return f"PT{delta.total_seconds():.3f}S"


def _register(inv: dict[str, Any], gen: int, proc: subprocess.Popen) -> bool:
    """Track a started process; False (and the process killed) if reset or cancelled meanwhile."""
    with LOCK:
        if gen == _generation and inv["Status"] in RUNNING:
            _procs.add(proc)
            inv["_proc"] = proc
            return True
    _kill(proc)
    return False


def _unregister(inv: dict[str, Any], proc: subprocess.Popen) -> None:
    with LOCK:
        _procs.discard(proc)
        if inv.get("_proc") is proc:
            inv.pop("_proc", None)


def _collect(proc: subprocess.Popen, timeout: float | None) -> tuple[bytes, bytes, bool]:
    """Output and whether the timeout killed the process group."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, False
    except subprocess.TimeoutExpired:
        _kill(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant escaped the group and holds the pipes
            out, err = b"", b""
        return out or b"", err or b"", True


def _run_exec(command: Any, inv: dict[str, Any], gen: int, argv: list[str], env: dict[str, str]) -> None:
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        _finish(command, inv, gen, "Failed", 127, "", f"failed to run {argv[0]}: {exc}")
        return
    if not _register(inv, gen, proc):
        proc.communicate()
        return
    out, err, _ = _collect(proc, None)
    _unregister(inv, proc)
    code = proc.returncode
    _finish(
        command,
        inv,
        gen,
        "Success" if code == 0 else "Failed",
        code,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def _start_step(step: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        ["/bin/sh", "-c", step["script"]],
        env=env,
        cwd=step["cwd"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _run_document(
    command: Any,
    inv: dict[str, Any],
    gen: int,
    plan: list[dict[str, Any]],
    env: dict[str, str],
    first: subprocess.Popen | OSError | None = None,
) -> None:
    """Run the planned steps in order (SSM's defaults: a failed step does not stop the
    others unless its onFailure says exit; onSuccess exit; finallyStep always runs).
    ``first``: the first step's process (or why it could not start), when the caller
    started it already."""
    outs: list[str] = []
    errs: list[str] = []
    status, details, code = "Success", None, 0
    if not plan:
        why = "the document has no mainSteps (the emulator runs schema 2.x documents only)\n"
        _finish(command, inv, gen, "Failed", 1, "", why)
        return
    stop = False
    for step in plan:
        if stop and not step["finallyStep"]:
            continue
        if step["skip"]:
            outs.append(f"{step['skip']}\n")
            continue
        try:
            if first is not None and step is plan[0]:
                if isinstance(first, OSError):
                    raise first
                proc = first
            else:
                proc = _start_step(step, env)
        except OSError as exc:
            errs.append(f"step {step['name']}: failed to start: {exc}\n")
            status, code = "Failed", 1
            stop = stop or step["onFailure"] == "exit"
            continue
        if not _register(inv, gen, proc):
            proc.communicate()
            return
        out, err, timed_out = _collect(proc, step["timeout"])
        _unregister(inv, proc)
        outs.append(out.decode("utf-8", "replace"))
        errs.append(err.decode("utf-8", "replace"))
        if timed_out:
            errs.append(f"step {step['name']}: execution timed out after {step['timeout']:g} s\n")
            status, details, code = "TimedOut", "ExecutionTimedOut", TIMED_OUT_CODE
            stop = True
        elif proc.returncode != 0:
            if step["onFailure"] == "successAndExit":
                stop = True
            else:
                if status == "Success":
                    status, code = "Failed", proc.returncode
                stop = stop or step["onFailure"] == "exit"
        elif step["onSuccess"] == "exit":
            stop = True
    _finish(command, inv, gen, status, code, "".join(outs), "".join(errs), details)


def _run_fixed(command: Any, inv: dict[str, Any], gen: int, program: dict[str, Any]) -> None:
    delay = float(program.get("delay_ms", 0) or 0) / 1000.0
    if delay > 0:
        time.sleep(delay)
    status = str(program.get("status", "Success"))
    code = int(program.get("code", 0 if status == "Success" else 1))
    _finish(command, inv, gen, status, code, str(program.get("stdout", "")), str(program.get("stderr", "")))


def _pending(inv: dict[str, Any]) -> None:
    """Under LOCK: not yet received by the host's agent (SendCommand just created it)."""
    inv.update(
        _start=None,
        _end=None,
        _output="",
        Status="Pending",
        StatusDetails="Pending",
        ResponseCode=-1,
        ExecutionStartDateTime="",
        ExecutionEndDateTime="",
        ExecutionElapsedTime="",
        StandardOutputContent="",
        StandardErrorContent="",
    )


def _begin(inv: dict[str, Any]) -> None:
    """Under LOCK: the invocation is InProgress and starts now (before any event about it)."""
    start = utcnow()
    inv.update(
        _start=start,
        _end=start,
        _output="",
        Status="InProgress",
        StatusDetails="InProgress",
        ResponseCode=-1,
        ExecutionStartDateTime=iso(start),
        ExecutionEndDateTime="",
        ExecutionElapsedTime="",
        StandardOutputContent="",
        StandardErrorContent="",
    )


def _is_agent_program(program: dict[str, Any] | None) -> bool:
    return program is not None and any(kind in program for kind in AGENT_PROGRAMS)


def _limit(instance_id: str, key: str) -> int:
    program = _program_for(instance_id) or {}
    return int(program.get(key, _agent[key]) if _is_agent_program(program) else _agent[key])


def _dispatch(command: Any, inv: dict[str, Any], document: Any | None) -> None:
    """Under LOCK: hand the invocation to its host. Agent programs (document, exec,
    forward) take one of the instance's workers, or wait for one in FIFO order; the others
    (fixed outcomes, no program) run at once."""
    program = _program_for(inv["InstanceId"])
    if not _is_agent_program(program):
        _begin(inv)
        _launch(command, inv, document, program)
        return
    slot = _slots.setdefault(inv["InstanceId"], {"running": 0, "queue": []})
    inv["_queued"] = (document, program)
    slot["queue"].append((command, inv))
    _pump(inv["InstanceId"])


def _pump(instance_id: str) -> None:
    """Under LOCK: start waiting invocations while the instance has free workers; the
    next ``buffer`` waiting ones are accepted by the agent (InProgress, as SSM Agent
    reports a document it buffered), the rest stay Pending (not yet received)."""
    slot = _slots.get(instance_id)
    if slot is None:
        return
    workers, buffer = _limit(instance_id, "workers"), _limit(instance_id, "buffer")
    while slot["queue"] and slot["running"] < workers:
        command, inv = slot["queue"].pop(0)
        document, program = inv.pop("_queued")
        announced = inv["Status"] == "InProgress"
        slot["running"] += 1
        inv["_slot"] = True
        _begin(inv)
        _launch(command, inv, document, program, announce=not announced)
    for command, inv in slot["queue"][:buffer]:
        if inv["Status"] == "Pending":
            inv.update(Status="InProgress", StatusDetails="InProgress")
            _emit_invocation(command, inv)
    if not slot["running"] and not slot["queue"]:
        _slots.pop(instance_id, None)


def _leave(inv: dict[str, Any]) -> bool:
    """Under LOCK: an invocation that ended gives back its worker, or its place in the
    queue. True if it held either."""
    slot = _slots.get(inv["InstanceId"])
    if inv.pop("_slot", False):
        if slot is not None:
            slot["running"] -= 1
        return True
    if inv.pop("_queued", None) is not None:
        if slot is not None:
            slot["queue"] = [entry for entry in slot["queue"] if entry[1] is not inv]
        return True
    return False


def _execution_timeout(document: Any | None, params: dict[str, list[str]]) -> float:
    """The document's execution timeout (SSM's total timeout is TimeoutSeconds plus it):
    the sum of its aws:runShellScript steps' timeoutSeconds (3600 each by default), or the
    executionTimeout parameter of a document the emulator does not hold (AWS-RunShellScript's,
    default 3600)."""
    if document is None:
        values = params.get("executionTimeout") or []
        try:
            return max(float(values[0]), 0.0) if values else float(DEFAULT_EXECUTION_TIMEOUT)
        except ValueError:
            return float(DEFAULT_EXECUTION_TIMEOUT)
    total = 0.0
    for step in (document.content_json or {}).get("mainSteps") or []:
        step = step or {}
        if step.get("action") != "aws:runShellScript":
            continue
        text = _substitute(str((step.get("inputs") or {}).get("timeoutSeconds", DEFAULT_STEP_TIMEOUT)), params)
        try:
            total += min(max(float(text), 0.001), MAX_STEP_TIMEOUT)
        except ValueError:
            total += DEFAULT_STEP_TIMEOUT
    return total or float(DEFAULT_EXECUTION_TIMEOUT)


def _undelivered(command: Any, gen: int) -> None:
    """SendCommand's TimeoutSeconds is over: "If this time is reached and the command hasn't
    already started running, it won't run" (SendCommand API reference). Every invocation
    of an agent program still waiting for a worker (InProgress in the agent's buffer, or
    Pending) ends TimedOut / DeliveryTimedOut and never runs."""
    with LOCK:
        if gen != _generation:
            return
        for inv in [inv for inv in command.invocations if inv["Status"] in RUNNING and "_queued" in inv]:
            _finish(command, inv, gen, "TimedOut", -1, "", "", "DeliveryTimedOut")


def _expire(command: Any, gen: int) -> None:
    """The command's total timeout (TimeoutSeconds + execution timeout, ExpiresAfter) is
    over: SSM "changes status to DeliveryTimedOut for all invocations" still InProgress,
    Pending or Delayed. An agent program still running then (an exec without end, a forward
    without answer) is killed: its result could no longer be reported."""
    with LOCK:
        if gen != _generation:
            return
        waiting = [inv for inv in command.invocations if inv["Status"] in RUNNING and "_queued" in inv]
        running = [inv for inv in command.invocations if inv["Status"] in RUNNING and inv.get("_slot")]
        for inv in waiting + running:  # the waiting first: a freed worker must not start them
            proc = inv.pop("_proc", None)
            if proc is not None:
                _procs.discard(proc)
                _kill(proc)
            _finish(command, inv, gen, "TimedOut", -1, "", "", "DeliveryTimedOut")


def _launch(
    command: Any, inv: dict[str, Any], document: Any | None, program: dict[str, Any] | None, announce: bool = True
) -> None:
    """Under LOCK: announce the invocation (unless the agent already reported it
    InProgress while it waited) and start what its host runs."""
    if announce:
        _emit_invocation(command, inv)
    gen = _generation
    params: dict[str, list[str]] = command.ext_params
    if program is None:
        _finish(command, inv, gen, "Success", 0, "", "")  # moto's default: instant Success
        return
    env = _environment(command, inv, program) if "document" in program or "exec" in program else {}
    if "document" in program:
        plan = _plan_steps(document, params, program)
        # The first step's shell starts here, as SSM Agent starts it when it reports the
        # invocation InProgress; a thread would start it only once it gets the
        # interpreter, milliseconds later on a busy emulator.
        first: subprocess.Popen | OSError | None = None
        if plan and not plan[0]["skip"]:
            try:
                first = _start_step(plan[0], env)
            except OSError as exc:
                first = exc
        target, args = _run_document, (command, inv, gen, plan, env, first)
    elif "exec" in program:
        env["SSM_DOCUMENT_NAME"] = command.document_name or ""
        for name, values in params.items():
            env[f"SSM_PARAM_{name}"] = values[0] if values else ""
        target, args = _run_exec, (command, inv, gen, list(program["exec"]), env)
    elif "forward" in program:
        payload = {
            "command_id": command.command_id,
            "instance_id": inv["InstanceId"],
            "document_name": command.document_name,
            "parameters": params,
            "requested_ms": _epoch_ms(command.requested_date_time),
        }
        target, args = _run_forward, (command, inv, gen, program["forward"], payload, command.ext_exec_timeout)
    elif float(program.get("delay_ms", 0) or 0) > 0:
        target, args = _run_fixed, (command, inv, gen, program)
    else:
        _run_fixed(command, inv, gen, program)  # immediate: no thread, LOCK is re-entrant
        return
    workers.submit(target, *args)  # at once, on a thread of its own (no thread start under LOCK)


def _environment(command: Any, inv: dict[str, Any], program: dict[str, Any]) -> dict[str, str]:
    """A document's or exec's environment: the server's, the program's env, the ids.
    (Copying os.environ costs ~50 us: forward and fixed programs go without.)"""
    env = dict(os.environ)
    env.update(program.get("env") or {})
    env["SSM_COMMAND_ID"] = command.command_id
    env["SSM_INSTANCE_ID"] = inv["InstanceId"]
    return env


def _epoch_ms(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1000)
    return 0


def _run_forward(
    command: Any, inv: dict[str, Any], gen: int, url: str, payload: dict[str, Any], timeout: float
) -> None:
    """POST the invocation to a stand-in host on loopback and end it from the answer:
    200 with {"code", "stdout", "stderr"}: Success if code is 0, else Failed (ResponseCode
    = code); anything else: Failed, why in stderr. No answer within the document's
    execution timeout: TimedOut / ExecutionTimedOut, as the agent would have killed it."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=max(timeout, 0.001))
    try:
        conn.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        status = response.status
    except TimeoutError:
        why = f"forward {url}: no answer within the execution timeout ({timeout:g} s)\n"
        _finish(command, inv, gen, "TimedOut", TIMED_OUT_CODE, "", why, "ExecutionTimedOut")
        return
    except (OSError, http.client.HTTPException) as exc:
        _finish(command, inv, gen, "Failed", 1, "", f"forward {url}: {exc!r}\n")
        return
    finally:
        conn.close()
    text = raw.decode("utf-8", "replace")
    if status != 200:
        _finish(command, inv, gen, "Failed", 1, "", f"forward {url}: HTTP {status}: {text[:2000]}\n")
        return
    try:
        answer = json.loads(text)
        code = answer["code"]
        out, err = answer.get("stdout", ""), answer.get("stderr", "")
        if isinstance(code, bool) or not isinstance(code, int) or not isinstance(out, str) or not isinstance(err, str):
            raise TypeError("code must be an integer, stdout and stderr strings")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        why = f"forward {url}: answer is not {{\"code\": int, \"stdout\": str, \"stderr\": str}}: {exc!r}: {text[:2000]}\n"
        _finish(command, inv, gen, "Failed", 1, "", why)
        return
    _finish(command, inv, gen, "Success" if code == 0 else "Failed", code, out, err)


def cancel(command: Any, instance_ids: list[str]) -> None:
    """CancelCommand: running invocations (of the given instances, or all) end Cancelled
    and their processes are killed."""
    with LOCK:
        chosen = [
            inv
            for inv in command.invocations
            if inv["Status"] in RUNNING and (not instance_ids or inv["InstanceId"] in instance_ids)
        ]
        chosen.sort(key=lambda inv: "_queued" not in inv)  # waiting first: no freed worker starts them
        if chosen and not instance_ids:
            command.ext_cancelled = True
        for inv in chosen:
            proc = inv.pop("_proc", None)
            if proc is not None:
                _procs.discard(proc)
                _kill(proc)
            _finish(command, inv, _generation, "Cancelled", TIMED_OUT_CODE if proc else -1, "", "")


# --------------------------------------------------------------------------- moto patches

_orig_send_command = ssm_models.SimpleSystemManagerBackend.send_command
_orig_response_object = ssm_models.Command.response_object
_orig_get_invocation = ssm_models.Command.get_invocation


def _targets_from_command(self: Any) -> list[str]:
    return _resolve_targets(self.account_id, self.backend_region, self.targets)


def _send_command(self: Any, **kwargs: Any) -> Any:
    instance_ids = list(kwargs.get("instance_ids") or [])
    targets = list(kwargs.get("targets") or [])
    if not instance_ids and not targets:
        raise ValidationException("Either InstanceIds or Targets must be given")
    if len(instance_ids) > 50:
        raise ValidationException("At most 50 InstanceIds are allowed")
    timeout_seconds = kwargs.get("timeout_seconds")
    low, high = TIMEOUT_SECONDS_RANGE
    if timeout_seconds is not None and not low <= timeout_seconds <= high:
        bound = f"greater than or equal to {low}" if timeout_seconds < low else f"less than or equal to {high}"
        raise ValidationException(
            f"1 validation error detected: Value '{timeout_seconds}' at 'timeoutSeconds' failed to "
            f"satisfy constraint: Member must have value {bound}"
        )
    parameters = dict(kwargs.get("parameters") or {})
    document = _stored_document(self, kwargs.get("document_name"))
    _check_size(document, parameters)
    if document is not None:
        resolved = _resolve_parameters(document, parameters)
    else:
        resolved = {k: _as_list(v) for k, v in parameters.items()}
    _check_instances(self.account_id, self.region_name, instance_ids)
    found = _resolve_targets(self.account_id, self.region_name, targets)
    ordered = list(dict.fromkeys(instance_ids + found))
    if document is None:
        runs_document = [i for i in ordered if "document" in (_program_for(i) or {})]
        if runs_document:
            raise InvalidDocument(
                f"The specified document does not exist: {kwargs.get('document_name')} (instance "
                f"{runs_document[0]} runs the document itself; create it with CreateDocument)"
            )
    kwargs["instance_ids"] = list(instance_ids)
    command = _orig_send_command(self, **kwargs)
    command.instance_ids = ordered
    command.invocations = [command.invocation_response(i, "aws:runShellScript") for i in ordered]
    command.target_count = len(ordered)
    command.ext_params = resolved
    # SSM's total timeout: the delivery timeout (TimeoutSeconds, scaled for tests) plus the
    # document's execution timeout; invocations not done by then end DeliveryTimedOut.
    command.ext_exec_timeout = _execution_timeout(document, resolved)
    delivery = command.timeout_seconds * _agent["delivery_scale"]
    total = delivery + command.ext_exec_timeout
    command.expires_after = command.requested_date_time + datetime.timedelta(seconds=total)
    for inv in command.invocations:
        _pending(inv)
    command.ext_started = True
    _emit_command(command, "InProgress")
    for inv in command.invocations:
        _dispatch(command, inv, document)
    if any(inv.get("_slot") or "_queued" in inv for inv in command.invocations):
        if any("_queued" in inv for inv in command.invocations):
            timers.schedule(delivery, _undelivered, command, _generation)
        timers.schedule(total, _expire, command, _generation)
    _maybe_command_done(command)
    return command


def _response_object(self: Any) -> dict[str, Any]:
    response = _orig_response_object(self)
    statuses = [inv["Status"] for inv in self.invocations]
    status, details = _command_status(self)
    delivery_timed_out = len([inv for inv in self.invocations if inv["StatusDetails"] == "DeliveryTimedOut"])
    response.update(
        Status=status,
        StatusDetails=details,
        CompletedCount=len([s for s in statuses if s not in RUNNING]),
        # "The number of targets for which the status is Failed or Execution Timed Out."
        ErrorCount=len([s for s in statuses if s in ("Failed", "TimedOut")]) - delivery_timed_out,
        DeliveryTimedOutCount=delivery_timed_out,
        TargetCount=len(statuses),
    )
    return response


def _get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
    inv = _orig_get_invocation(self, instance_id, plugin_name)
    return {k: v for k, v in inv.items() if not k.startswith("_")}


def _cancel_command(self: Any) -> ActionResult:
    command = self.ssm_backend.get_command_by_id(self._get_param("CommandId"))
    cancel(command, list(self._get_param("InstanceIds") or []))
    return ActionResult({})


def _list_command_invocations(self: Any) -> ActionResult:
    backend = self.ssm_backend
    command_id = self._get_param("CommandId")
    instance_id = self._get_param("InstanceId")
    details = bool(self._get_param("Details", False))
    max_results = int(self._get_param("MaxResults") or 50)
    start = int(self._get_param("NextToken") or 0)
    commands = [backend.get_command_by_id(command_id)] if command_id else list(backend._commands)
    items = []
    for command in commands:
        for inv in command.invocations:
            if instance_id and inv["InstanceId"] != instance_id:
                continue
            plugins = []
            if details:
                plugins.append(
                    {
                        "Name": inv["PluginName"],
                        "Status": inv["Status"],
                        "StatusDetails": inv["StatusDetails"],
                        "ResponseCode": inv["ResponseCode"],
                        "ResponseStartDateTime": inv.get("_start") or command.requested_date_time,
                        "ResponseFinishDateTime": inv.get("_end") if inv["Status"] not in RUNNING else None,
                        "Output": (inv.get("_output") or "")[:PLUGIN_OUTPUT_LIMIT],
                        "StandardOutputUrl": "",
                        "StandardErrorUrl": "",
                        "OutputS3Region": command.output_s3_region or command.backend_region,
                        "OutputS3BucketName": command.output_s3_bucket_name,
                        "OutputS3KeyPrefix": command.output_s3_key_prefix,
                    }
                )
            items.append(
                {
                    "CommandId": command.command_id,
                    "InstanceId": inv["InstanceId"],
                    "InstanceName": "",
                    "Comment": command.comment,
                    "DocumentName": command.document_name,
                    "DocumentVersion": "$DEFAULT",
                    "RequestedDateTime": command.requested_date_time,
                    "Status": inv["Status"],
                    "StatusDetails": inv["StatusDetails"],
                    "TraceOutput": "",
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "CommandPlugins": plugins,
                    "ServiceRole": command.service_role_arn,
                }
            )
    page = items[start : start + max_results]
    result: dict[str, Any] = {"CommandInvocations": page}
    if start + max_results < len(items):
        result["NextToken"] = str(start + max_results)
    return ActionResult(result)


def install() -> None:
    ssm_models.Command._get_instance_ids_from_targets = _targets_from_command
    ssm_models.Command.response_object = _response_object
    ssm_models.Command.get_invocation = _get_invocation
    ssm_models.SimpleSystemManagerBackend.send_command = _send_command
    ssm_responses.SimpleSystemManagerResponse.list_command_invocations = _list_command_invocations
    ssm_responses.SimpleSystemManagerResponse.cancel_command = _cancel_command
