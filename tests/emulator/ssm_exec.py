"""SSM Run Command that actually runs something, per instance, under test control.

moto records SendCommand and reports every invocation as an instant Success with no output;
it also sends a command given by InstanceIds to every EC2 instance in the region, and has no
ListCommandInvocations. The reactor talks to its proxy hosts only through Run Command, so
tests need real outcomes. This module patches moto's SSM models so that:

* SendCommand targets exactly the given InstanceIds, or the ``Targets`` criteria
  (``InstanceIds``, ``tag:Key``, ``tag-key``; several criteria are ANDed) resolved against EC2;
  unknown or non-running instances answer ``InvalidInstanceId``;
* each instance's invocation does what ``POST /moto-ext/ssm/hosts`` programmed for it (key
  ``"*"``: every instance without a program of its own):
  ``exec`` runs argv as a local process (no shell) in a background thread, or a fixed
  ``status``/``stdout``/``stderr``/``code`` result after ``delay_ms``; instances without a
  program succeed at once with empty output (moto's default);
* GetCommandInvocation, ListCommands and ListCommandInvocations report consistent statuses
  (InProgress while running, then Success/Failed), output truncated as AWS does.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import threading
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.ssm import models as ssm_models
from moto.ssm import responses as ssm_responses
from moto.ssm.exceptions import SSMException, ValidationException

from . import LOCK, iso, utcnow

STDOUT_LIMIT = 24000  # GetCommandInvocation StandardOutputContent
STDERR_LIMIT = 8000  # GetCommandInvocation StandardErrorContent
PLUGIN_OUTPUT_LIMIT = 2500  # ListCommandInvocations CommandPlugins[].Output
RUNNING = {"Pending", "InProgress", "Delayed"}

_hosts: dict[str, dict[str, Any]] = {}
_procs: set[subprocess.Popen] = set()
_generation = 0


class InvalidInstanceId(SSMException):
    __module__ = "moto.ssm.exceptions"  # moto picks the service model from the module name
    code = "InvalidInstanceId"


def set_hosts(programs: dict[str, Any]) -> dict[str, Any]:
    """Merge per-instance programs; a null value removes one."""
    if not isinstance(programs, dict):
        raise ValueError("expected a JSON object keyed by instance id")
    for instance_id, program in programs.items():
        if program is None:
            continue
        if not isinstance(program, dict):
            raise ValueError(f"{instance_id}: program must be an object")
        if "exec" in program:
            argv = program["exec"]
            if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
                raise ValueError(f"{instance_id}: exec must be a non-empty list of strings")
            env = program.get("env", {})
            if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
                raise ValueError(f"{instance_id}: env must map names to strings")
        elif "status" not in program:
            raise ValueError(f"{instance_id}: give either exec or status")
    with LOCK:
        for instance_id, program in programs.items():
            if program is None:
                _hosts.pop(instance_id, None)
            else:
                _hosts[instance_id] = dict(program)
        return dict(_hosts)


def hosts() -> dict[str, Any]:
    with LOCK:
        return dict(_hosts)


def reset() -> None:
    global _generation
    with LOCK:
        _generation += 1
        _hosts.clear()
        procs = list(_procs)
        _procs.clear()
    for proc in procs:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


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


# --------------------------------------------------------------------------- execution


def _finish(inv: dict[str, Any], gen: int, status: str, code: int, out: str, err: str) -> None:
    with LOCK:
        if gen != _generation:
            return
        end = utcnow()
        inv.update(
            Status=status,
            StatusDetails=status,
            ResponseCode=code,
            StandardOutputContent=out[:STDOUT_LIMIT],
            StandardErrorContent=err[:STDERR_LIMIT],
            ExecutionEndDateTime=iso(end),
            ExecutionElapsedTime=_duration(end - inv["_start"]),
            _end=end,
            _output=out,
        )


def _duration(delta: datetime.timedelta) -> str:
    return f"PT{delta.total_seconds():.3f}S"


def _run_exec(inv: dict[str, Any], gen: int, argv: list[str], env: dict[str, str]) -> None:
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
        _finish(inv, gen, "Failed", 127, "", f"failed to run {argv[0]}: {exc}")
        return
    with LOCK:
        _procs.add(proc)
    out, err = proc.communicate()
    with LOCK:
        _procs.discard(proc)
    code = proc.returncode
    _finish(
        inv,
        gen,
        "Success" if code == 0 else "Failed",
        code,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def _run_fixed(inv: dict[str, Any], gen: int, program: dict[str, Any]) -> None:
    delay = float(program.get("delay_ms", 0) or 0) / 1000.0
    if delay > 0:
        time.sleep(delay)
    status = str(program.get("status", "Success"))
    code = int(program.get("code", 0 if status == "Success" else 1))
    _finish(inv, gen, status, code, str(program.get("stdout", "")), str(program.get("stderr", "")))


def _start(command: Any, inv: dict[str, Any]) -> None:
    """Called under LOCK for each new invocation."""
    start = utcnow()
    inv.update(_start=start, _end=start, _output="", ExecutionStartDateTime=iso(start))
    program = _hosts.get(inv["InstanceId"], _hosts.get("*"))
    if program is None:
        inv["ExecutionEndDateTime"] = iso(start)
        inv["ExecutionElapsedTime"] = "PT0S"
        return
    inv.update(
        Status="InProgress",
        StatusDetails="InProgress",
        ResponseCode=-1,
        ExecutionEndDateTime="",
        ExecutionElapsedTime="",
    )
    gen = _generation
    if "exec" in program:
        env = dict(os.environ)
        env.update(program.get("env") or {})
        env["SSM_DOCUMENT_NAME"] = command.document_name or ""
        env["SSM_COMMAND_ID"] = command.command_id
        env["SSM_INSTANCE_ID"] = inv["InstanceId"]
        for name, values in (command.parameters or {}).items():
            first = values[0] if isinstance(values, list) and values else values
            env[f"SSM_PARAM_{name}"] = "" if first is None else str(first)
        target, args = _run_exec, (inv, gen, list(program["exec"]), env)
    elif float(program.get("delay_ms", 0) or 0) > 0:
        target, args = _run_fixed, (inv, gen, program)
    else:
        # Immediate fixed result: no thread, the caller already holds LOCK.
        status = str(program.get("status", "Success"))
        end = utcnow()
        inv.update(
            Status=status,
            StatusDetails=status,
            ResponseCode=int(program.get("code", 0 if status == "Success" else 1)),
            StandardOutputContent=str(program.get("stdout", ""))[:STDOUT_LIMIT],
            StandardErrorContent=str(program.get("stderr", ""))[:STDERR_LIMIT],
            ExecutionEndDateTime=iso(end),
            ExecutionElapsedTime="PT0S",
            _end=end,
            _output=str(program.get("stdout", "")),
        )
        return
    threading.Thread(target=target, args=args, name="moto-ext-ssm", daemon=True).start()


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
    _check_instances(self.account_id, self.region_name, instance_ids)
    resolved = _resolve_targets(self.account_id, self.region_name, targets)
    kwargs["instance_ids"] = list(instance_ids)
    command = _orig_send_command(self, **kwargs)
    ordered = list(dict.fromkeys(instance_ids + resolved))
    command.instance_ids = ordered
    command.invocations = [command.invocation_response(i, "aws:runShellScript") for i in ordered]
    command.target_count = len(ordered)
    for inv in command.invocations:
        _start(command, inv)
    return command


def _response_object(self: Any) -> dict[str, Any]:
    response = _orig_response_object(self)
    statuses = [inv["Status"] for inv in self.invocations]
    done = [s for s in statuses if s not in RUNNING]
    errors = [s for s in done if s != "Success"]
    if len(done) < len(statuses):
        status = "InProgress"
    elif errors:
        status = "Failed"
    else:
        status = "Success"
    response.update(
        Status=status,
        StatusDetails=status,
        CompletedCount=len(done),
        ErrorCount=len(errors),
        TargetCount=len(statuses),
    )
    return response


def _get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
    inv = _orig_get_invocation(self, instance_id, plugin_name)
    return {k: v for k, v in inv.items() if not k.startswith("_")}


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
                        "ResponseStartDateTime": inv.get("_start", command.requested_date_time),
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
