"""Self-test of what control path v2 needs from the emulator: the SSM Agent's worker limit
and delivery timeouts, forwarded Run Command invocations, output limits, request quotas,
SQS SenderId from the request's credentials, Origin/Destination and Detach events, and
the DynamoDB ledger's operations.

Run: ~/.cache/haproxy-asg/venv/bin/python -m pytest tests/emulator -q
Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker

from .conftest import LAUNCHING, NO_RETRY, TERMINATING, Emulator, wait_until

ARN = "arn:aws:ec2:us-east-1:123456789012:instance/{}"


def _instances(world, count: int) -> list[str]:
    r = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, SubnetId=world.subnet)
    return [i["InstanceId"] for i in r["Instances"]]


def _create_document(world, name: str, content: dict) -> None:
    world.emu.client("ssm").create_document(
        Name=name, Content=json.dumps(content), DocumentType="Command", DocumentFormat="JSON"
    )


def _doc(timeout: str, lines: list[str], parameters: dict | None = None) -> dict:
    return {
        "schemaVersion": "2.2",
        "description": "test",
        "parameters": parameters or {},
        "mainSteps": [
            {"action": "aws:runShellScript", "name": "run", "inputs": {"timeoutSeconds": timeout, "runCommand": lines}}
        ],
    }


# A document that says it started, then waits for its flag file (at most 20 s).
HOLD_DOC = _doc(
    "20",
    [
        "touch {{ Dir }}/started",
        "i=0; while [ ! -e {{ Dir }}/go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done",
        "echo done",
    ],
    {"Dir": {"type": "String"}},
)


def _invocation(ssm, cid: str, instance: str) -> dict:
    return ssm.get_command_invocation(CommandId=cid, InstanceId=instance)


def _ssm_events(world, cid: str) -> list[tuple[str | None, str]]:
    return [
        (e["detail"].get("instance-id"), e["detail"]["status"])
        for e in world.emu.control("GET", "/moto-ext/events")
        if e["source"] == "aws.ssm" and e["detail"]["command-id"] == cid
    ]


# --------------------------------------------------------------------------- SSM Agent workers


def test_agent_runs_five_documents_at_once_and_queues_the_rest(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    _create_document(world, "hold", HOLD_DOC)
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True}})
    dirs = [tmp_path / f"c{n}" for n in range(6)]
    cids = []
    for d in dirs:
        d.mkdir()
        cids.append(ssm.send_command(InstanceIds=[a], DocumentName="hold", Parameters={"Dir": [str(d)]})["Command"]["CommandId"])
    wait_until(lambda: all((d / "started").exists() for d in dirs[:5]), timeout=10, what="five documents running")
    time.sleep(0.3)
    assert not (dirs[5] / "started").exists(), "the sixth waits for a worker"
    sixth = _invocation(ssm, cids[5], a)
    # SSM Agent reports a document it buffered InProgress at once (it is delivered).
    assert (sixth["Status"], sixth["StatusDetails"], sixth["ExecutionStartDateTime"]) == ("InProgress", "InProgress", "")
    agent = world.emu.control("GET", "/moto-ext/ssm/agent")
    assert (agent["workers"], agent["buffer"]) == (5, 5)
    assert agent["instances"] == {a: {"running": 5, "waiting": [cids[5]]}}

    (dirs[2] / "go").touch()  # the third ends: its worker takes the sixth
    assert _wait_status(ssm, cids[2], a) == "Success"
    wait_until(lambda: (dirs[5] / "started").exists(), timeout=10, what="the sixth starts")
    assert _invocation(ssm, cids[5], a)["ExecutionStartDateTime"]
    for d in dirs:
        (d / "go").touch()
    assert [_wait_status(ssm, cid, a) for cid in cids] == ["Success"] * 6
    assert _ssm_events(world, cids[5]) == [
        (None, "InProgress"),
        (a, "InProgress"),  # once, when the agent accepted it
        (a, "Success"),
        (None, "Success"),
    ]
    assert world.emu.control("GET", "/moto-ext/ssm/agent")["instances"] == {}


def _wait_status(ssm, cid: str, instance: str, timeout: float = 15) -> str:
    return wait_until(
        lambda: (s := _invocation(ssm, cid, instance)["Status"]) not in ("Pending", "InProgress") and s,
        timeout=timeout,
        what=f"{cid} on {instance} to end",
    )


def test_agent_buffer_and_per_host_workers(world, tmp_path):
    ssm = world.emu.client("ssm")
    a, b = _instances(world, 2)
    _create_document(world, "hold", HOLD_DOC)
    world.emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {a: {"document": True, "workers": 2, "buffer": 1}, b: {"document": True}},
    )
    world.emu.control("POST", "/moto-ext/ssm/agent", {"workers": 1})
    dirs = {}
    cids = []
    for n in range(4):
        d = dirs[n] = tmp_path / f"a{n}"
        d.mkdir()
        cids.append(ssm.send_command(InstanceIds=[a], DocumentName="hold", Parameters={"Dir": [str(d)]})["Command"]["CommandId"])
    wait_until(lambda: (dirs[0] / "started").exists() and (dirs[1] / "started").exists(), timeout=10)
    # 2 workers (the host's own setting), 1 accepted into the buffer, the 4th not received yet.
    assert [_invocation(ssm, c, a)["Status"] for c in cids] == ["InProgress", "InProgress", "InProgress", "Pending"]
    listed = ssm.list_commands(CommandId=cids[3])["Commands"][0]
    assert (listed["Status"], listed["CompletedCount"]) == ("InProgress", 0)
    # The global setting (1 worker) applies to b.
    (b_dir := tmp_path / "b").mkdir()
    (b_dir2 := tmp_path / "b2").mkdir()
    b1 = ssm.send_command(InstanceIds=[b], DocumentName="hold", Parameters={"Dir": [str(b_dir)]})["Command"]["CommandId"]
    b2 = ssm.send_command(InstanceIds=[b], DocumentName="hold", Parameters={"Dir": [str(b_dir2)]})["Command"]["CommandId"]
    wait_until(lambda: (b_dir / "started").exists(), timeout=10)
    time.sleep(0.2)
    assert not (b_dir2 / "started").exists()

    (dirs[0] / "go").touch()
    wait_until(lambda: (dirs[2] / "started").exists(), timeout=10, what="the buffered one starts")
    assert _invocation(ssm, cids[3], a)["Status"] == "InProgress", "now accepted into the buffer"
    assert [s for _, s in _ssm_events(world, cids[3])] == ["InProgress", "InProgress"]  # command, then accepted
    # More workers for everyone: b's second starts at once.
    world.emu.control("POST", "/moto-ext/ssm/agent", {"workers": 2})
    wait_until(lambda: (b_dir2 / "started").exists(), timeout=10, what="more workers start what waits")
    for d in [*dirs.values(), b_dir, b_dir2]:
        (d / "go").touch()
    assert [_wait_status(ssm, c, a) for c in cids] == ["Success"] * 4
    assert {_wait_status(ssm, b1, b), _wait_status(ssm, b2, b)} == {"Success"}

    for bad in ({"workers": 0}, {"buffer": "5"}, {"delivery_scale": 0}, {"cores": 2}):
        with pytest.raises(urllib.error.HTTPError) as err:
            world.emu.control("POST", "/moto-ext/ssm/agent", bad)
        assert err.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as err:
        world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"status": "Success", "workers": 2}})
    assert err.value.code == 400
    world.emu.control("POST", "/moto-ext/reset")
    assert world.emu.control("GET", "/moto-ext/ssm/agent") == {"workers": 5, "buffer": 5, "delivery_scale": 1.0, "instances": {}}


def test_delivery_timeout_ends_a_waiting_command_that_never_runs(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    _create_document(world, "hold", HOLD_DOC)
    _create_document(world, "quick", _doc("20", [f"touch {tmp_path}/quick-ran"]))
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True}})
    # One worker; the delivery clock at 1/50: TimeoutSeconds 30 is 0.6 s here.
    world.emu.control("POST", "/moto-ext/ssm/agent", {"workers": 1, "delivery_scale": 0.02})
    (hold_dir := tmp_path / "hold").mkdir()
    hold = ssm.send_command(InstanceIds=[a], DocumentName="hold", Parameters={"Dir": [str(hold_dir)]})["Command"]
    wait_until(lambda: (hold_dir / "started").exists(), timeout=10)
    sent = time.monotonic()
    quick = ssm.send_command(InstanceIds=[a], DocumentName="quick", TimeoutSeconds=30)["Command"]
    cid = quick["CommandId"]
    # ExpiresAfter: SSM's total timeout, TimeoutSeconds (scaled) + the document's execution timeout.
    expires = (quick["ExpiresAfter"] - quick["RequestedDateTime"]).total_seconds()
    assert abs(expires - 20.6) < 0.01
    assert _invocation(ssm, cid, a)["Status"] == "InProgress", "accepted, waiting for the worker"

    # Not started when TimeoutSeconds is over: it never runs, long before ExpiresAfter.
    done = wait_until(
        lambda: (r := _invocation(ssm, cid, a))["Status"] != "InProgress" and r, timeout=10, what="delivery timeout"
    )
    assert time.monotonic() - sent >= 0.55
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("TimedOut", "DeliveryTimedOut", -1)
    assert (done["ExecutionStartDateTime"], done["StandardOutputContent"]) == ("", "")
    listed = ssm.list_commands(CommandId=cid)["Commands"][0]
    assert (listed["Status"], listed["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert (listed["CompletedCount"], listed["ErrorCount"], listed["DeliveryTimedOutCount"], listed["TargetCount"]) == (1, 0, 1, 1)
    (plugin,) = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"][0]["CommandPlugins"]
    assert (plugin["Status"], plugin["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert _ssm_events(world, cid) == [(None, "InProgress"), (a, "InProgress"), (a, "TimedOut"), (None, "TimedOut")]

    (hold_dir / "go").touch()  # the worker frees: the timed-out command never runs
    assert _wait_status(ssm, hold["CommandId"], a) == "Success"
    time.sleep(0.5)
    assert not (tmp_path / "quick-ran").exists()

    # The API's range is checked (boto3 checks it too: skip its validation to reach the server).
    raw = world.emu.client("ssm", Config(parameter_validation=False, retries={"total_max_attempts": 1}))
    for bad, word in ((29, "greater than or equal to 30"), (2592001, "less than or equal to 2592000")):
        with pytest.raises(ClientError) as err:
            raw.send_command(InstanceIds=[a], DocumentName="quick", TimeoutSeconds=bad)
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert word in err.value.response["Error"]["Message"]


def test_total_timeout_ends_a_running_invocation(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    pid = tmp_path / "pid"
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"exec": ["sh", "-c", f"echo $$ > {pid}; exec sleep 30"]}})
    world.emu.control("POST", "/moto-ext/ssm/agent", {"delivery_scale": 0.01})
    # AWS-RunShellScript's executionTimeout parameter is the execution timeout: the total
    # timeout (ExpiresAfter) is 0.3 + 1 s; an exec has no timeout of its own.
    cid = ssm.send_command(
        InstanceIds=[a], DocumentName="AWS-RunShellScript", TimeoutSeconds=30, Parameters={"executionTimeout": ["1"]}
    )["Command"]["CommandId"]
    wait_until(lambda: pid.exists() and pid.read_text().strip(), timeout=5, what="exec started")
    done = wait_until(
        lambda: (r := _invocation(ssm, cid, a))["Status"] != "InProgress" and r, timeout=10, what="total timeout"
    )
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("TimedOut", "DeliveryTimedOut", -1)
    assert done["ExecutionStartDateTime"], "it had started: not undelivered, but past ExpiresAfter"
    wait_until(lambda: not _alive(int(pid.read_text())), timeout=5, what="the process killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_delivery_timeout_of_a_pending_invocation_and_cancel_of_waiting_ones(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    _create_document(world, "hold", HOLD_DOC)
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True, "workers": 1, "buffer": 1}})
    world.emu.control("POST", "/moto-ext/ssm/agent", {"delivery_scale": 0.01})
    dirs = [tmp_path / f"c{n}" for n in range(4)]
    for d in dirs:
        d.mkdir()

    def send(n: int, **kwargs: Any) -> str:
        return ssm.send_command(InstanceIds=[a], DocumentName="hold", Parameters={"Dir": [str(dirs[n])]}, **kwargs)[
            "Command"
        ]["CommandId"]

    first, buffered, pending = send(0), send(1), send(2, TimeoutSeconds=30)  # 36 s, 36 s, 0.3 s
    assert [_invocation(ssm, c, a)["Status"] for c in (first, buffered, pending)] == ["InProgress", "InProgress", "Pending"]
    assert _wait_status(ssm, pending, a) == "TimedOut"
    assert _invocation(ssm, pending, a)["StatusDetails"] == "DeliveryTimedOut"
    assert _ssm_events(world, pending) == [(None, "InProgress"), (a, "TimedOut"), (None, "TimedOut")], "never received"
    ssm.cancel_command(CommandId=buffered)
    assert _invocation(ssm, buffered, a)["Status"] == "Cancelled"
    fourth = send(3)
    assert _invocation(ssm, fourth, a)["Status"] == "InProgress", "accepted into the freed buffer"
    (dirs[0] / "go").touch()
    wait_until(lambda: (dirs[3] / "started").exists(), timeout=10, what="the fourth runs")
    (dirs[3] / "go").touch()
    assert _wait_status(ssm, fourth, a) == "Success"
    assert not (dirs[1] / "started").exists() and not (dirs[2] / "started").exists(), "cancelled and timed out never run"


# --------------------------------------------------------------------------- forward programs


class StandIns:
    """A small HTTP server on loopback playing the hosts of forward programs."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: dict[str, Any] = {}
        self.release = threading.Event()
        stand_ins = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["_path"] = self.path
                stand_ins.requests.append(body)
                answer = stand_ins.answers.get(body["instance_id"], {"code": 0, "stdout": "ok\n", "stderr": ""})
                if answer == "hold":
                    stand_ins.release.wait(10)
                    answer = {"code": 0, "stdout": "held\n", "stderr": ""}
                status, raw = (200, json.dumps(answer).encode()) if not isinstance(answer, tuple) else answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_ins():
    s = StandIns()
    yield s
    s.close()


def test_forward_program_posts_each_invocation_to_a_loopback_stand_in(world, stand_ins):
    ssm = world.emu.client("ssm")
    ok, failing, broken, garbled, gone = _instances(world, 5)
    stand_ins.answers.update(
        {
            failing: {"code": 3, "stdout": "partial\n", "stderr": "member i-0bbb failed\n"},
            broken: (500, b"oops"),
            garbled: (200, b"not json"),
        }
    )
    world.emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {
            **{i: {"forward": f"{stand_ins.url}/host/{i}"} for i in (ok, failing, broken, garbled)},
            gone: {"forward": "http://127.0.0.1:9/nobody"},
        },
    )
    command = ssm.send_command(
        InstanceIds=[ok, failing, broken, garbled, gone],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["agent apply"], "Action": ["apply"]},
    )["Command"]
    cid = command["CommandId"]
    results = {i: _wait_status(ssm, cid, i) for i in (ok, failing, broken, garbled, gone)}
    assert results == {ok: "Success", failing: "Failed", broken: "Failed", garbled: "Failed", gone: "Failed"}
    inv = _invocation(ssm, cid, ok)
    assert (inv["ResponseCode"], inv["StandardOutputContent"]) == (0, "ok\n")
    inv = _invocation(ssm, cid, failing)
    assert (inv["ResponseCode"], inv["StandardOutputContent"], inv["StandardErrorContent"]) == (3, "partial\n", "member i-0bbb failed\n")
    assert "HTTP 500: oops" in _invocation(ssm, cid, broken)["StandardErrorContent"]
    assert "not json" in _invocation(ssm, cid, garbled)["StandardErrorContent"]
    assert "127.0.0.1:9" in _invocation(ssm, cid, gone)["StandardErrorContent"]
    request = next(r for r in stand_ins.requests if r["instance_id"] == ok)
    requested_ms = int(command["RequestedDateTime"].timestamp() * 1000)
    assert request == {
        "command_id": cid,
        "instance_id": ok,
        "document_name": "AWS-RunShellScript",
        "parameters": {"commands": ["agent apply"], "Action": ["apply"]},
        "requested_ms": request["requested_ms"],
        "_path": f"/host/{ok}",
    }
    assert abs(request["requested_ms"] - requested_ms) <= 1

    for url in ("http://10.0.0.1:8080/x", "https://127.0.0.1/x", "http://example.com/", 7):
        with pytest.raises(urllib.error.HTTPError) as err:
            world.emu.control("POST", "/moto-ext/ssm/hosts", {ok: {"forward": url}})
        assert err.value.code == 400


def test_forward_counts_against_the_worker_limit_while_in_flight(world, stand_ins):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    stand_ins.answers[a] = "hold"
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"forward": stand_ins.url, "workers": 1}})
    first = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    second = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    wait_until(lambda: len(stand_ins.requests) == 1, timeout=10, what="the first POST")
    time.sleep(0.3)
    assert [r["command_id"] for r in stand_ins.requests] == [first], "the second waits for the worker"
    stand_ins.release.set()
    assert _wait_status(ssm, first, a) == "Success" and _wait_status(ssm, second, a) == "Success"
    assert [r["command_id"] for r in stand_ins.requests] == [first, second]
    assert _invocation(ssm, first, a)["StandardOutputContent"] == "held\n"


# --------------------------------------------------------------------------- output limits


def test_output_limits_of_get_and_list_command_invocations(world, stand_ins):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1)
    stand_ins.answers[a] = {"code": 1, "stdout": "o" * 30000, "stderr": "e" * 10000}
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"forward": stand_ins.url}})
    cid = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    assert _wait_status(ssm, cid, a) == "Failed"
    inv = _invocation(ssm, cid, a)
    # GetCommandInvocation: the first 24,000 characters of stdout, 8,000 of stderr.
    assert (len(inv["StandardOutputContent"]), len(inv["StandardErrorContent"])) == (24000, 8000)
    # ListCommandInvocations with Details: 2,500 per plugin.
    (plugin,) = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"][0]["CommandPlugins"]
    assert plugin["Output"] == "o" * 2500


# --------------------------------------------------------------------------- quotas


def _throttled(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def test_quota_token_bucket_answers_each_services_throttling_error(world):
    emu = world.emu
    emu.control(
        "POST",
        "/moto-ext/quotas",
        {
            "ec2:DescribeVpcs": {"burst": 2, "rate": 0},
            "autoscaling:*#api": {"burst": 2, "rate": 0},
            "ssm:ListCommands": {"burst": 1, "rate": 0},
            "dynamodb:ListTables": {"burst": 1, "rate": 0},
            "dynamodb:GetItem": {"burst": 1, "rate": 0},
            "sqs:ListQueues": {"burst": 1, "rate": 0},
            "route53:*#account": {"burst": 1, "rate": 0},
        },
    )
    emu.control("POST", "/moto-ext/calls/reset")
    ec2 = emu.client("ec2", NO_RETRY)
    ec2.describe_vpcs()
    ec2.describe_vpcs()
    e = _throttled(ec2.describe_vpcs)
    assert (e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]) == (
        "RequestLimitExceeded",
        "Request limit exceeded.",
        503,
    )
    ec2.describe_subnets()  # another action: another bucket (none here)

    asg = emu.client("autoscaling", NO_RETRY)
    asg.describe_auto_scaling_groups()
    asg.describe_lifecycle_hooks(AutoScalingGroupName="none")
    e = _throttled(asg.describe_auto_scaling_instances)  # one bucket for the whole API
    assert (e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("Throttling", "Rate exceeded", 400)

    ssm = emu.client("ssm", NO_RETRY)
    ssm.list_commands()
    e = _throttled(ssm.list_commands)
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)

    ddb = emu.client("dynamodb", NO_RETRY)
    ddb.list_tables()
    e = _throttled(ddb.list_tables)
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 400)
    with pytest.raises(ClientError):
        ddb.get_item(TableName="none", Key={"id": {"S": "x"}})  # served: no such table
    e = _throttled(lambda: ddb.get_item(TableName="none", Key={"id": {"S": "x"}}))
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestLimitExceeded", 400)

    sqs = emu.client("sqs", NO_RETRY)
    sqs.list_queues()
    e = _throttled(sqs.list_queues)
    assert (e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("RequestThrottled", 400)

    r53 = emu.client("route53", NO_RETRY)
    r53.list_hosted_zones()
    e = _throttled(lambda: r53.create_hosted_zone(Name="t.test", CallerReference="x"))  # account-level bucket
    assert (e["Error"]["Code"], e["Error"]["Message"], e["ResponseMetadata"]["HTTPStatusCode"]) == ("Throttling", "Rate exceeded", 400)

    codes = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"}
    assert codes <= set(ThrottledRetryableChecker._THROTTLED_ERROR_CODES), "SDKs retry them as throttling"
    calls = emu.control("GET", "/moto-ext/calls")
    throttled = [(c["service"], c["action"], c["status"]) for c in calls if c.get("throttled")]
    assert throttled == [
        ("ec2", "DescribeVpcs", 503),
        ("autoscaling", "DescribeAutoScalingInstances", 400),
        ("ssm", "ListCommands", 400),
        ("dynamodb", "ListTables", 400),
        ("dynamodb", "GetItem", 400),
        ("sqs", "ListQueues", 400),
        ("route53", "CreateHostedZone", 400),
    ]
    assert [c["quota"] for c in calls if c.get("throttled")][:2] == ["us-east-1 ec2:DescribeVpcs", "us-east-1 autoscaling#api"]
    assert not any(c.get("throttled") for c in calls if c["action"] == "DescribeSubnets")


def test_quota_refill_reset_and_validation(world):
    emu = world.emu
    ec2 = emu.client("ec2", NO_RETRY)
    emu.control("POST", "/moto-ext/quotas", {"ec2:DescribeVpcs": {"burst": 1, "rate": 4}})
    ec2.describe_vpcs()
    _throttled(ec2.describe_vpcs)
    time.sleep(0.3)  # 4 tokens a second: one is back
    ec2.describe_vpcs()
    # The SDK's standard retries absorb a throttle: the call succeeds on a later attempt.
    emu.control("POST", "/moto-ext/calls/reset")
    emu.client("ec2", Config(retries={"mode": "standard", "max_attempts": 5})).describe_vpcs()
    statuses = [c["status"] for c in emu.control("GET", "/moto-ext/calls")]
    assert statuses[0] == 503 and statuses[-1] == 200

    # moto-api/reset keeps the rules (as it keeps faults); moto-ext/reset removes them.
    emu.control("POST", "/moto-api/reset")
    assert "ec2:DescribeVpcs" in emu.control("GET", "/moto-ext/quotas")["rules"]
    emu.control("POST", "/moto-ext/reset")
    assert emu.control("GET", "/moto-ext/quotas") == {"rules": {}, "tokens": {}}
    emu.control("POST", "/moto-ext/quotas", {"ec2:DescribeVpcs": {"burst": 1, "rate": 0}})
    emu.control("POST", "/moto-ext/quotas", {"ec2:DescribeVpcs": None})
    assert emu.control("GET", "/moto-ext/quotas")["rules"] == {}
    emu.control("POST", "/moto-ext/quotas", {"ec2:DescribeVpcs": {"burst": 1, "rate": 0}})
    emu.control("DELETE", "/moto-ext/quotas")
    for _ in range(3):
        ec2.describe_vpcs()

    for bad in (
        {"ec2": {"burst": 1, "rate": 1}},
        {"ec2:Describe*Vpcs": {"burst": 1, "rate": 1}},
        {"ec2:DescribeVpcs": {"burst": 0, "rate": 1}},
        {"ec2:DescribeVpcs": {"burst": 1}},
        {"ec2:DescribeVpcs": {"burst": 1, "rate": 1, "colour": "red"}},
        {"ec2:DescribeVpcs?filtered": {"burst": 1, "rate": 1}},
        {"autoscaling:A#x": {"burst": 1, "rate": 1}, "autoscaling:B#x": {"burst": 2, "rate": 1}},
        {"profile": "aws-cheap"},
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            emu.control("POST", "/moto-ext/quotas", bad)
        assert err.value.code == 400, bad


def test_quota_profile_aws_default(world):
    emu = world.emu
    listing = emu.control("POST", "/moto-ext/quotas", {"profile": "aws-default", "ssm:SendCommand": {"burst": 9, "rate": 1}})
    rules = listing["rules"]
    assert rules["ec2:Describe*"]["burst"] == 100 and rules["ec2:Describe*"]["rate"] == 20
    assert (rules["ec2:*"]["burst"], rules["ec2:*"]["rate"]) == (50, 5)
    assert (rules["ec2:DescribeInstances?unfiltered"]["burst"], rules["ec2:DescribeInstances?unfiltered"]["rate"]) == (50, 10)
    assert (rules["ec2:RunInstances"]["burst"], rules["ec2:RunInstances"]["rate"]) == (5, 2)
    assert "ec2-api-throttling" in rules["ec2:Describe*"]["source"]
    assert "not published" in rules["autoscaling:*#api"]["source"]
    assert rules["ssm:SendCommand"] == {"burst": 9, "rate": 1}, "merged over the profile"
    # DescribeInstances without filter or pagination draws from the smaller bucket.
    started = time.monotonic()
    world.ec2.describe_instances()
    world.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    world.ec2.describe_instances(MaxResults=5)
    vpc = world.ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    world.ec2.create_security_group(GroupName="quota", Description="quota", VpcId=vpc)
    world.ec2.create_tags(Resources=[vpc], Tags=[{"Key": "k", "Value": "v"}])
    tokens = emu.control("GET", "/moto-ext/quotas")["tokens"]
    elapsed = time.monotonic() - started

    def drew(bucket: str, left: float, rate: float, burst: float) -> None:
        # What the calls took, plus what the bucket refilled since the first of them
        # (a loaded machine makes that more than a token).
        got = tokens[f"us-east-1 {bucket}"]
        assert left <= got <= min(burst, left + rate * elapsed + 1e-6), (bucket, got, elapsed)

    drew("ec2:DescribeInstances?unfiltered", 49, 10, 50)
    drew("ec2:DescribeInstances", 98, 20, 100)
    drew("ec2:DescribeVpcs", 99, 20, 100)  # non-mutating: 100, 20/s
    drew("ec2:CreateSecurityGroup", 49, 5, 50)  # mutating: 50, 5/s
    drew("ec2:CreateTags", 99, 10, 100)  # uncategorized: 100, 10/s


def test_quota_check_costs_microseconds():
    from . import quotas

    try:
        quotas.configure({"profile": "aws-default"})
        environ = {"moto_ext.region": "us-east-1", "moto_ext.form": {"Action": ["DescribeInstances"]}}
        for action in ("DescribeInstances", "DescribeVpcs", "CreateTags"):
            quotas.take(environ, "ec2", action)  # resolved once, then memoized
        n = 20000
        started = time.perf_counter()
        for i in range(n):
            if i % 5000 == 0:  # keep the bucket from running dry (a throttled answer costs the same)
                quotas._memo.clear()
                quotas._buckets.clear()
            quotas.take(environ, "ec2", "DescribeVpcs")
        per_call = (time.perf_counter() - started) / n
        assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per check"
    finally:
        quotas.clear()


def test_server_quotas_option_keeps_the_profile_across_resets():
    emu = Emulator("--quotas", "aws-default")
    try:
        assert "ec2:Describe*" in emu.control("GET", "/moto-ext/quotas")["rules"]
        emu.control("POST", "/moto-ext/quotas", {"ec2:DescribeVpcs": {"burst": 1, "rate": 0}})
        emu.control("POST", "/moto-ext/reset")
        rules = emu.control("GET", "/moto-ext/quotas")["rules"]
        assert "ec2:Describe*" in rules and "ec2:DescribeVpcs" not in rules, "back to the startup profile"
    finally:
        assert emu.stop() == 0


# --------------------------------------------------------------------------- SQS SenderId


def test_sqs_sender_id_comes_from_the_requests_credentials(world):
    emu = world.emu
    iam, sts = emu.client("iam"), emu.client("sts")
    role = iam.create_role(
        RoleName="proxy",
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )["Role"]
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="i-0123456789abcdef0")["Credentials"]
    session = dict(
        endpoint_url=emu.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    proxy_sqs = boto3.client("sqs", **session)
    sqs = emu.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    proxy_sqs.send_message(QueueUrl=url, MessageBody="report")
    proxy_sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "batched"}])
    sqs.send_message(QueueUrl=url, MessageBody="plain")
    user = iam.create_user(UserName="operator")["User"]
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    boto3.client(
        "sqs", endpoint_url=emu.url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    ).send_message(QueueUrl=url, MessageBody="by-user")
    # The query protocol too (the Rust SDK uses JSON; others may not).
    _query_send(emu, url, creds["AccessKeyId"], "query")
    # An event EventBridge delivers keeps moto's sender.
    events = emu.client("events")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="to-inbox", EventPattern=json.dumps({"source": ["test"]}))
    events.put_targets(Rule="to-inbox", Targets=[{"Id": "q", "Arn": arn}])
    proxy_events = boto3.client("events", **session)
    proxy_events.put_events(Entries=[{"Source": "test", "DetailType": "t", "Detail": "{}"}])

    got: dict[str, str] = {}

    def receive() -> bool:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]).get("Messages", []):
            got[m["Body"] if not m["Body"].startswith("{") else "event"] = m["Attributes"]["SenderId"]
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) == 6

    wait_until(receive, timeout=15, interval=0, what="six messages")
    expected = f"{role['RoleId']}:i-0123456789abcdef0"
    assert role["RoleId"].startswith("AROA")
    assert (got["report"], got["batched"], got["query"]) == (expected, expected, expected)
    assert got["by-user"] == user["UserId"]
    assert got["plain"] != expected and got["event"] != expected
    assert got["plain"] == got["event"], "moto's default sender"


def _query_send(emu, url: str, access_key: str, body: str) -> None:
    from urllib.parse import urlencode, urlsplit

    data = urlencode({"Action": "SendMessage", "QueueUrl": url, "MessageBody": body, "Version": "2012-11-05"}).encode()
    req = urllib.request.Request(emu.url + urlsplit(url).path, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    req.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and b"MessageId" in resp.read()


def _sqs_json(emu, target: str, body: dict) -> tuple[int, dict]:
    """An SQS request in the AWS JSON protocol (the Rust SDK's), its status and answer."""
    req = urllib.request.Request(emu.url + "/", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/x-amz-json-1.0")
    req.add_header("X-Amz-Target", f"AmazonSQS.{target}")
    req.add_header(
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _sqs_script(emu) -> tuple[list, list]:
    """The same SQS requests on `emu`: what each answered, with what differs by nature
    (ids, receipt handles, timestamps) replaced by its shape; and the call log's flags."""
    emu.client("sqs").create_queue(QueueName="inbox")
    url = emu.client("sqs").get_queue_url(QueueName="inbox")["QueueUrl"]
    answers = []

    def call(target: str, body: dict) -> dict:
        status, got = _sqs_json(emu, target, body)
        answers.append((target, status, _shape(got)))
        return got

    call("SendMessage", {"QueueUrl": url, "MessageBody": "one"})
    call("SendMessage", {"QueueUrl": url, "MessageBody": "two", "DelaySeconds": 0})
    got = call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "AttributeNames": ["All"]})
    call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "MessageSystemAttributeNames": ["SenderId"]})
    call("SendMessage", {"QueueUrl": url, "MessageBody": "three"})
    call("ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 1, "MessageSystemAttributeNames": ["SenderId", "SentTimestamp"]})
    handles = [m["ReceiptHandle"] for m in got.get("Messages", [])]
    entries = [{"Id": f"e{i}", "ReceiptHandle": h} for i, h in enumerate(handles)]
    call("DeleteMessageBatch", {"QueueUrl": url, "Entries": entries + [{"Id": "bad", "ReceiptHandle": "nope"}]})
    call("SendMessage", {"QueueUrl": url + "-missing", "MessageBody": "lost"})
    call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 11})
    call("SendMessage", {"QueueUrl": url, "MessageBody": "x" * (1024 * 1024 + 1)})  # over the queue's 1 MiB
    call("SendMessage", {"QueueUrl": url, "MessageBody": "late", "DelaySeconds": 901})
    flags = [(c["action"], bool(c.get("fast"))) for c in emu.control("GET", "/moto-ext/calls") if c["service"] == "sqs" and c["action"] in ("SendMessage", "ReceiveMessage", "DeleteMessageBatch")]
    return answers, flags


def _shape(v):
    """`v` with values that differ between two runs by nature (uuids, handles, times) as
    their kind, the rest as it is."""
    if isinstance(v, dict):
        return {k: (_shape(x) if k not in ("MessageId", "ReceiptHandle", "SentTimestamp", "ApproximateFirstReceiveTimestamp") else type(x).__name__ + (":digits" if isinstance(x, str) and x.isdigit() else "")) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(x) for x in v]
    return v


def test_sqs_plain_requests_are_answered_as_moto_answers_them(world):
    # sqs_fast.py answers plain SendMessage, ReceiveMessage and DeleteMessageBatch
    # requests itself; the same script on an emulator that sends everything through moto
    # must get the same answers, errors included (those go to moto on both).
    fast_answers, fast_flags = _sqs_script(world.emu)
    slow = Emulator("--moto-sqs")
    try:
        slow_answers, slow_flags = _sqs_script(slow)
    finally:
        assert slow.stop() == 0
    assert fast_answers == slow_answers
    received = fast_answers[2][2]["Messages"]
    assert [m["Body"] for m in received] == ["one", "two"]
    assert set(received[0]["Attributes"]) == {"SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"}
    assert fast_answers[6][2]["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    assert [s for _, s, _ in fast_answers[7:]] == [400, 400, 400, 400], fast_answers[7:]
    # The plain ones went the fast way, the wrong ones to moto; never fast with --moto-sqs.
    assert fast_flags == [
        ("SendMessage", True),
        ("SendMessage", True),
        ("ReceiveMessage", True),
        ("ReceiveMessage", True),
        ("SendMessage", True),
        ("ReceiveMessage", True),
        ("DeleteMessageBatch", True),
        ("SendMessage", False),
        ("ReceiveMessage", False),
        ("SendMessage", False),
        ("SendMessage", False),
    ]
    assert [f for _, f in slow_flags] == [False] * len(fast_flags)


# --------------------------------------------------------------------------- Auto Scaling events


def _events(world, detail_type: str) -> list[dict]:
    return [e for e in world.emu.control("GET", "/moto-ext/events") if e["detail-type"] == detail_type]


def test_origin_and_destination_on_every_groups_events(world):
    g = world.group(desired=0)
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    ((i, _),) = world.members(g)
    world.complete(g, "launch", "ABANDON", instance=i)  # Launch Unsuccessful, then a replacement
    (action,) = [e["detail"] for e in _events(world, "EC2 Instance-launch Lifecycle Action") if e["detail"]["EC2InstanceId"] == i]
    assert (action["Origin"], action["Destination"]) == ("EC2", "AutoScalingGroup")
    (failed,) = _events(world, "EC2 Instance Launch Unsuccessful")
    assert (failed["detail"]["Origin"], failed["detail"]["Destination"]) == ("EC2", "AutoScalingGroup")
    assert failed["resources"][1] == ARN.format(i)
    world.hook(g, "drain", TERMINATING)
    ((r, _),) = world.members(g)
    world.complete(g, "launch", "CONTINUE", instance=r)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=0)
    (drain,) = [e["detail"] for e in _events(world, "EC2 Instance-terminate Lifecycle Action")]
    assert (drain["Origin"], drain["Destination"]) == ("AutoScalingGroup", "EC2")


def test_detach_instances_with_and_without_decrement(world):
    g = world.group(desired=3)
    world.hook(g, "drain", TERMINATING)  # detaching runs no hook
    a, b, c = [i for i, _ in world.members(g)]
    group_arn = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]["AutoScalingGroupARN"]

    answer = world.asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[a], ShouldDecrementDesiredCapacity=False)
    (activity,) = answer["Activities"]
    assert activity["Description"] == f"Detaching EC2 instance: {a}"
    assert activity["Cause"].endswith(f"instance {a} was detached in response to a user request.")
    states = world.states(g)
    (replacement,) = [i for i in states if i not in (a, b, c)]
    assert states == {b: "InService", c: "InService", replacement: "InService"}, "replaced at once"
    assert world.ec2_state(a) == "running"
    assert world.pending() == [], "no lifecycle hook"
    tags = world.ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [a]}])["Tags"]
    assert "aws:autoscaling:groupName" not in [t["Key"] for t in tags]
    assert world.asg.describe_auto_scaling_instances(InstanceIds=[a])["AutoScalingInstances"] == []
    (detached,) = _events(world, "EC2 Instance Detach Successful")
    assert detached["source"] == "aws.autoscaling" and detached["resources"] == [group_arn, ARN.format(a)]
    d = detached["detail"]
    assert set(d) == {
        "StatusCode", "Description", "AutoScalingGroupName", "ActivityId", "Details", "RequestId",
        "StatusMessage", "EndTime", "EC2InstanceId", "StartTime", "Cause", "Origin", "Destination",
    }  # fmt: skip
    assert (d["EC2InstanceId"], d["AutoScalingGroupName"], d["StatusCode"]) == (a, g, "InProgress")
    assert (d["Description"], d["ActivityId"], d["Cause"]) == (activity["Description"], activity["ActivityId"], activity["Cause"])
    assert d["Details"] == {"Availability Zone": world.zone, "Subnet ID": world.subnet}
    assert (d["Origin"], d["Destination"]) == ("AutoScalingGroup", "EC2")
    assert not _events(world, "EC2 Instance Terminate Successful")

    answer = world.asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[b], ShouldDecrementDesiredCapacity=True)
    assert answer["Activities"][0]["Cause"].endswith("shrinking the capacity from 3 to 2.")
    group = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 2
    assert world.states(g) == {c: "InService", replacement: "InService"}, "no replacement"
    assert [e["detail"]["EC2InstanceId"] for e in _events(world, "EC2 Instance Detach Successful")] == [a, b]

    asg = world.emu.client("autoscaling", NO_RETRY)
    world.asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=2)
    for instance, decrement in ((a, False), (c, True)):  # not a member; below MinSize
        with pytest.raises(ClientError) as err:
            asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[instance], ShouldDecrementDesiredCapacity=decrement)
        assert err.value.response["Error"]["Code"] == "ValidationError"
    world.asg.update_auto_scaling_group(AutoScalingGroupName=g, MinSize=0)
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=3)
    (waiting,) = [i for i, s in world.members(g) if s == "Pending:Wait"]
    with pytest.raises(ClientError) as err:
        asg.detach_instances(AutoScalingGroupName=g, InstanceIds=[waiting], ShouldDecrementDesiredCapacity=False)
    assert err.value.response["Error"]["Code"] == "ValidationError"


# --------------------------------------------------------------------------- DynamoDB ledger


def test_dynamodb_ledger_operations(world):
    ddb = world.emu.client("dynamodb", NO_RETRY)
    table = "reactor-ledger"
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}, {"AttributeName": "open", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "open", "KeySchema": [{"AttributeName": "open", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}
        ],
    )
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    assert ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }
    ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    pitr = ddb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    def item(id_: str, version: int, **extra: Any) -> dict:
        return {"id": {"S": id_}, "version": {"N": str(version)}, **{k: {"S": v} for k, v in extra.items()}}

    ddb.put_item(TableName=table, Item=item("i-a#launch", 1, open="1"), ConditionExpression="attribute_not_exists(id)")
    ddb.put_item(TableName=table, Item=item("i-b#terminate", 1, open="1"), ConditionExpression="attribute_not_exists(id)")
    ddb.put_item(TableName=table, Item=item("i-c#launch", 1, decision="CONTINUE"))
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=table, Item=item("i-a#launch", 1, open="1"), ConditionExpression="attribute_not_exists(id)")
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    # Optimistic versioning: decide i-a (the item leaves the sparse index), then a stale write fails.
    decided = {**item("i-a#launch", 2, decision="CONTINUE"), "expires_at": {"N": str(int(time.time()) + 86400)}}
    ddb.put_item(TableName=table, Item=decided, ConditionExpression="version = :v", ExpressionAttributeValues={":v": {"N": "1"}})
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=table, Item=item("i-a#launch", 2), ConditionExpression="version = :v", ExpressionAttributeValues={":v": {"N": "1"}})
    assert err.value.response["Error"]["Code"] == "ConditionalCheckFailedException"

    def open_items() -> list[str]:
        found = ddb.query(
            TableName=table,
            IndexName="open",
            KeyConditionExpression="#o = :one",
            ExpressionAttributeNames={"#o": "open"},
            ExpressionAttributeValues={":one": {"S": "1"}},
        )["Items"]
        return sorted(i["id"]["S"] for i in found)

    assert open_items() == ["i-b#terminate"], "sparse: only undecided items"

    # A transaction of Puts where one condition fails: nothing is written, and the
    # cancellation reasons name the failed item and None for the others.
    with pytest.raises(ClientError) as err:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": item("i-d#launch", 1, open="1"), "ConditionExpression": "attribute_not_exists(id)"}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": item("i-b#terminate", 2, decision="ABANDON"),
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeValues": {":v": {"N": "7"}},
                    }
                },
                {"Put": {"TableName": table, "Item": item("i-e#launch", 1, open="1"), "ConditionExpression": "attribute_not_exists(id)"}},
            ]
        )
    e = err.value.response
    assert e["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in e["CancellationReasons"]] == ["None", "ConditionalCheckFailed", "None"]
    assert "[None, ConditionalCheckFailed, None]" in e["Error"]["Message"]
    got = ddb.batch_get_item(
        RequestItems={table: {"Keys": [{"id": {"S": k}} for k in ("i-a#launch", "i-b#terminate", "i-d#launch", "i-e#launch")]}}
    )
    found = {i["id"]["S"]: i for i in got["Responses"][table]}
    assert sorted(found) == ["i-a#launch", "i-b#terminate"], "nothing of the cancelled transaction was written"
    assert found["i-b#terminate"]["version"] == {"N": "1"}
    assert found["i-a#launch"]["decision"] == {"S": "CONTINUE"}

    # Up to 100 items in one transaction (the contract's batch size).
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": item(f"i-{n:03d}#launch", 1, open="1"), "ConditionExpression": "attribute_not_exists(id)"}}
            for n in range(100)
        ]
    )
    assert len(open_items()) == 101
    ddb.update_item(
        TableName=table,
        Key={"id": {"S": "i-b#terminate"}},
        UpdateExpression="REMOVE #o SET decision = :d, version = version + :one",
        ConditionExpression="version = :v",
        ExpressionAttributeNames={"#o": "open"},
        ExpressionAttributeValues={":d": {"S": "ABANDON"}, ":one": {"N": "1"}, ":v": {"N": "1"}},
    )
    assert "i-b#terminate" not in open_items()
