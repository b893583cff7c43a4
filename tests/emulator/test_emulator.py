"""Self-test of the moto extension: starts tests/emulator/server.py as a subprocess on a free
loopback port and drives it through boto3 and the control API.

Run: ~/.cache/haproxy-asg/venv/bin/python -m pytest tests/emulator -q
Every wait is bounded by a deadline; timing tests use heartbeat timeouts of 2-3 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker

from .conftest import LAUNCHING, NO_RETRY, SERVER, TERMINATING, Emulator, wait_until


# --------------------------------------------------------------------------- lifecycle


def test_launch_hook_holds_until_continue(world):
    g = world.group()
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    members = world.members(g)
    assert [s for _, s in members] == ["Pending:Wait", "Pending:Wait"]
    ids = [i for i, _ in members]
    assert [world.private_ip(i) for i in ids] == ["127.0.1.4", "127.0.1.5"]
    inst = world.asg.describe_auto_scaling_instances(InstanceIds=ids)["AutoScalingInstances"]
    assert {i["LifecycleState"] for i in inst} == {"Pending:Wait"}

    (first,) = world.pending(ids[0])
    assert first["hook"] == "launch" and first["transition"] == LAUNCHING
    uuid.UUID(first["token"], version=4)
    world.complete(g, "launch", "CONTINUE", token=first["token"])
    assert world.states(g) == {ids[0]: "InService", ids[1]: "Pending:Wait"}
    world.complete(g, "launch", "CONTINUE", instance=ids[1])
    assert world.states(g) == {ids[0]: "InService", ids[1]: "InService"}
    done = {r["instance"]: r for r in world.emu.control("GET", "/moto-ext/lifecycle")}
    assert {r["result"] for r in done.values()} == {"CONTINUE"} and {r["by"] for r in done.values()} == {"api"}


def test_create_with_hook_specification_and_update_hold(world):
    g = world.group(
        desired=1,
        hooks=[{"LifecycleHookName": "launch", "LifecycleTransition": LAUNCHING, "HeartbeatTimeout": 300}],
    )
    assert [s for _, s in world.members(g)] == ["Pending:Wait"]
    world.asg.update_auto_scaling_group(AutoScalingGroupName=g, DesiredCapacity=2)
    assert [s for _, s in world.members(g)] == ["Pending:Wait", "Pending:Wait"]


def test_abandon_on_launch_terminates_and_replaces(world):
    g = world.group()
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    (victim, _), = world.members(g)
    world.complete(g, "launch", "ABANDON", instance=victim)
    members = world.states(g)
    assert victim not in members
    assert world.ec2_state(victim) == "terminated"
    # Desired capacity is still 1: a replacement launches and is held by the hook too.
    assert list(members.values()) == ["Pending:Wait"]
    events = [e["detail-type"] for e in world.emu.control("GET", "/moto-ext/events")]
    assert "EC2 Instance Launch Unsuccessful" in events


def test_terminate_hook_holds_scale_in_oldest_first(world):
    g = world.group()
    world.hook(g, "drain", TERMINATING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=3)
    ids = [i for i, s in world.members(g)]
    assert [world.private_ip(i) for i in ids] == ["127.0.1.4", "127.0.1.5", "127.0.1.6"]
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    assert world.states(g) == {ids[0]: "Terminating:Wait", ids[1]: "InService", ids[2]: "InService"}
    assert world.ec2_state(ids[0]) == "running"
    (action,) = world.pending(ids[0])
    assert action["transition"] == TERMINATING
    world.complete(g, "drain", "CONTINUE", token=action["token"])
    assert world.states(g) == {ids[1]: "InService", ids[2]: "InService"}
    assert world.ec2_state(ids[0]) == "terminated"


def test_terminate_instance_in_group_with_and_without_decrement(world):
    g = world.group()
    world.hook(g, "drain", TERMINATING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    a, b = [i for i, _ in world.members(g)]

    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=a, ShouldDecrementDesiredCapacity=True)
    assert world.states(g) == {a: "Terminating:Wait", b: "InService"}
    group = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 1
    world.complete(g, "drain", "ABANDON", instance=a)
    assert world.states(g) == {b: "InService"}

    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=b, ShouldDecrementDesiredCapacity=False)
    states = world.states(g)
    assert states[b] == "Terminating:Wait"
    replacement = [i for i in states if i != b]
    assert len(replacement) == 1 and states[replacement[0]] == "InService"
    world.complete(g, "drain", "CONTINUE", instance=b)
    assert world.states(g) == {replacement[0]: "InService"}
    assert world.ec2_state(b) == "terminated"


def test_heartbeat_timeout_applies_default_result(world):
    g = world.group()
    world.hook(g, "launch", LAUNCHING, timeout=2, default="CONTINUE")
    world.hook(g, "drain", TERMINATING, timeout=2, default="ABANDON")
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    (i, state), = world.members(g)
    assert state == "Pending:Wait"
    wait_until(lambda: world.states(g).get(i) == "InService", timeout=8, what="launch timeout")
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=0)
    assert world.states(g) == {i: "Terminating:Wait"}
    wait_until(lambda: world.states(g) == {}, timeout=8, what="terminate timeout")
    log = world.emu.control("GET", "/moto-ext/lifecycle")
    assert [(r["transition"], r["result"], r["by"]) for r in log] == [
        (LAUNCHING, "CONTINUE", "timeout"),
        (TERMINATING, "ABANDON", "timeout"),
    ]


def test_wrong_token_and_missing_action_rejected(world):
    g = world.group()
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    (i, _), = world.members(g)
    bad = str(uuid.uuid4())
    with pytest.raises(ClientError) as err:
        world.complete(g, "launch", "CONTINUE", token=bad)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert f"No active Lifecycle Action found with token {bad}" in err.value.response["Error"]["Message"]
    assert world.states(g) == {i: "Pending:Wait"}
    (action,) = world.pending(i)
    with pytest.raises(ClientError):  # right token, wrong hook name
        world.complete(g, "other-hook", "CONTINUE", token=action["token"])
    world.complete(g, "launch", "CONTINUE", token=action["token"])
    with pytest.raises(ClientError) as err:  # already completed
        world.complete(g, "launch", "CONTINUE", token=action["token"])
    assert "No active Lifecycle Action found with token" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        world.complete(g, "launch", "CONTINUE", instance=i)
    assert f"No active Lifecycle Action found with instance ID {i}" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        world.asg.record_lifecycle_action_heartbeat(
            AutoScalingGroupName=g, LifecycleHookName="launch", LifecycleActionToken=bad
        )
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_heartbeat_restarts_timer(world):
    g = world.group()
    world.hook(g, "launch", LAUNCHING, timeout=3, default="ABANDON")
    t0 = time.monotonic()
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    (i, _), = world.members(g)
    (action,) = world.pending(i)
    time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))  # planned: heartbeat before the 3 s expiry
    world.asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=g, LifecycleHookName="launch", LifecycleActionToken=action["token"]
    )
    t_beat = time.monotonic()
    time.sleep(max(0.0, t0 + 3.8 - time.monotonic()))  # past the original deadline
    assert world.states(g).get(i) == "Pending:Wait", "heartbeat must restart the timer"
    wait_until(lambda: i not in world.states(g), timeout=6, what="abandon after renewed timeout")
    assert time.monotonic() - t_beat >= 2.5
    (record,) = [r for r in world.emu.control("GET", "/moto-ext/lifecycle") if r["instance"] == i]
    assert (record["result"], record["by"]) == ("ABANDON", "timeout")


# --------------------------------------------------------------------------- events


def test_events_reach_sqs_through_rule(world):
    sqs, events = world.emu.client("sqs"), world.emu.client("events")
    queue = sqs.create_queue(QueueName="asg-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="asg",
        EventPattern=json.dumps(
            {
                "source": ["aws.autoscaling"],
                "detail-type": ["EC2 Instance-launch Lifecycle Action", "EC2 Instance Launch Successful"],
            }
        ),
    )
    events.put_targets(Rule="asg", Targets=[{"Id": "q", "Arn": arn}])
    g = world.group()
    world.hook(g, "launch", LAUNCHING)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    (i, _), = world.members(g)
    group_arn = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0][
        "AutoScalingGroupARN"
    ]

    def receive() -> list[dict]:
        msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in msgs]

    (held,) = wait_until(receive, timeout=10, what="lifecycle action event")
    assert held["detail-type"] == "EC2 Instance-launch Lifecycle Action"
    assert held["source"] == "aws.autoscaling" and held["resources"] == [group_arn]
    assert held["account"] == "123456789012" and held["region"] == "us-east-1"
    token = held["detail"].pop("LifecycleActionToken")
    # The event reference's lifecycle action examples carry Origin/Destination (no warm pool here).
    assert held["detail"] == {
        "AutoScalingGroupName": g,
        "LifecycleHookName": "launch",
        "EC2InstanceId": i,
        "LifecycleTransition": LAUNCHING,
        "NotificationMetadata": "meta-launch",
        "Origin": "EC2",
        "Destination": "AutoScalingGroup",
    }
    world.complete(g, "launch", "CONTINUE", token=token)
    (ok,) = wait_until(receive, timeout=10, what="launch successful event")
    assert ok["detail-type"] == "EC2 Instance Launch Successful"
    assert ok["resources"] == [group_arn, f"arn:aws:ec2:us-east-1:123456789012:instance/{i}"], "group and instance"
    d = ok["detail"]
    assert d["EC2InstanceId"] == i and d["AutoScalingGroupName"] == g
    assert set(d) >= {"StatusCode", "ActivityId", "Cause", "StartTime", "EndTime", "Details"}
    assert d["Details"] == {"Availability Zone": world.zone, "Subnet ID": world.subnet}
    assert (d["Origin"], d["Destination"]) == ("EC2", "AutoScalingGroup")

    # Terminate Successful is emitted (no hook) but filtered out by the rule's pattern.
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=0)
    (gone,) = [e for e in world.emu.control("GET", "/moto-ext/events") if e["detail-type"] == "EC2 Instance Terminate Successful"]
    assert (gone["detail"]["Origin"], gone["detail"]["Destination"]) == ("AutoScalingGroup", "EC2")
    assert receive() == []


def test_concurrent_consumers_get_every_event_once(world):
    """Several long-polling consumers and deleters while events are delivered: each event
    reaches exactly one consumer, none is lost, no request fails. moto's queues alone
    crashed a receiver now and then (HTTP 500), delivered one message to two receivers at
    once, and could drop an event delivered while a delete rebuilt the queue. Bounded:
    about 4 s of traffic (without the fix: 1-3 duplicates in each of four runs here)."""
    sqs, events = world.emu.client("sqs", NO_RETRY), world.emu.client("events", NO_RETRY)
    queue = sqs.create_queue(QueueName="busy", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="busy", EventPattern=json.dumps({"source": ["bench"]}))
    events.put_targets(Rule="busy", Targets=[{"Id": "q", "Arn": arn}])
    stop = time.monotonic() + 4
    sent: list[str] = []
    got: list[str] = []
    errors: list[str] = []

    def producer() -> None:
        client = world.emu.client("events", NO_RETRY)
        while time.monotonic() < stop:
            ids = [str(uuid.uuid4()) for _ in range(5)]
            entries = [{"Source": "bench", "DetailType": "t", "Detail": json.dumps({"n": i})} for i in ids]
            try:
                if client.put_events(Entries=entries)["FailedEntryCount"] == 0:
                    sent.extend(ids)
            except ClientError as e:
                errors.append(f"PutEvents: {e}")

    def consumer() -> None:
        client = world.emu.client("sqs", NO_RETRY)
        while time.monotonic() < stop + 1:
            try:
                msgs = client.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                msgs = msgs.get("Messages", [])
                got.extend(json.loads(m["Body"])["detail"]["n"] for m in msgs)
                if msgs:
                    client.delete_message_batch(
                        QueueUrl=queue,
                        Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(msgs)],
                    )
            except ClientError as e:
                errors.append(f"SQS: {e}")

    threads = [threading.Thread(target=producer) for _ in range(3)]
    threads += [threading.Thread(target=consumer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(sent) > 100, "too little traffic to tell"
    duplicates = len(got) - len(set(got))
    assert duplicates == 0, f"{duplicates} events reached two consumers"
    assert set(got) == set(sent), f"{len(set(sent) - set(got))} events lost"


# --------------------------------------------------------------------------- SSM


def _instances(world, count: int, tags: dict[str, str]) -> list[str]:
    r = world.ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=count,
        MaxCount=count,
        SubnetId=world.subnet,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return [i["InstanceId"] for i in r["Instances"]]


def test_ssm_exec_runs_real_process_with_statuses(world):
    ssm = world.emu.client("ssm")
    a, b = _instances(world, 2, {"Role": "proxy"})
    (other,) = _instances(world, 1, {"Role": "backend"})
    script = (
        "import os, sys, time; time.sleep(1.0); "
        "print('msg=' + os.environ['SSM_PARAM_Message'] + ' doc=' + os.environ['SSM_DOCUMENT_NAME'] "
        "+ ' extra=' + os.environ['EXTRA']); print('warn', file=sys.stderr)"
    )
    world.emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {
            a: {"exec": ["python3", "-c", script], "env": {"EXTRA": "yes"}},
            b: {"status": "Failed", "stdout": "boom", "stderr": "bad", "code": 3, "delay_ms": 0},
        },
    )
    cmd = ssm.send_command(
        InstanceIds=[a, b], DocumentName="AWS-RunShellScript", Parameters={"Message": ["hello", "ignored"]}
    )["Command"]
    cid = cmd["CommandId"]
    assert sorted(cmd["InstanceIds"]) == sorted([a, b]), "only the named instances"

    inv = ssm.get_command_invocation(CommandId=cid, InstanceId=a)
    assert inv["Status"] == "InProgress"
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "InProgress"

    done = wait_until(
        lambda: (r := ssm.get_command_invocation(CommandId=cid, InstanceId=a))["Status"] != "InProgress" and r,
        timeout=15,
        what="exec to finish",
    )
    assert done["Status"] == "Success" and done["ResponseCode"] == 0
    assert done["StandardOutputContent"] == "msg=hello doc=AWS-RunShellScript extra=yes\n"
    assert done["StandardErrorContent"] == "warn\n"
    failed = ssm.get_command_invocation(CommandId=cid, InstanceId=b)
    assert (failed["Status"], failed["ResponseCode"], failed["StandardOutputContent"]) == ("Failed", 3, "boom")

    listed = ssm.list_commands(CommandId=cid)["Commands"][0]
    assert (listed["Status"], listed["CompletedCount"], listed["ErrorCount"], listed["TargetCount"]) == (
        "Failed",
        2,
        1,
        2,
    )
    invs = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]
    by_id = {x["InstanceId"]: x for x in invs}
    assert set(by_id) == {a, b} and other not in by_id
    assert by_id[a]["Status"] == "Success" and by_id[b]["Status"] == "Failed"
    assert by_id[a]["CommandPlugins"][0]["Output"].startswith("msg=hello")
    assert ssm.list_command_invocations(InstanceId=b)["CommandInvocations"][0]["InstanceId"] == b

    # Targets resolve against EC2 tags; untagged/other instances are not touched.
    tcmd = ssm.send_command(Targets=[{"Key": "tag:Role", "Values": ["proxy"]}], DocumentName="AWS-RunShellScript")
    assert sorted(tcmd["Command"]["InstanceIds"]) == sorted([a, b])
    icmd = ssm.send_command(Targets=[{"Key": "InstanceIds", "Values": [other]}], DocumentName="AWS-RunShellScript")
    assert icmd["Command"]["InstanceIds"] == [other]
    plain = ssm.get_command_invocation(CommandId=icmd["Command"]["CommandId"], InstanceId=other)
    assert (plain["Status"], plain["StandardOutputContent"]) == ("Success", "")

    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=["i-0000000000000dead"], DocumentName="AWS-RunShellScript")
    assert err.value.response["Error"]["Code"] == "InvalidInstanceId"


def test_ssm_exec_output_truncated_and_exit_code(world):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1, {"Role": "proxy"})
    world.emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {a: {"exec": ["python3", "-c", "import sys; sys.stdout.write('x' * 30000); sys.exit(4)"]}},
    )
    cid = ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    done = wait_until(
        lambda: (r := ssm.get_command_invocation(CommandId=cid, InstanceId=a))["Status"] != "InProgress" and r,
        timeout=15,
    )
    assert (done["Status"], done["ResponseCode"]) == ("Failed", 4)
    assert len(done["StandardOutputContent"]) == 24000


# --------------------------------------------------------------------------- faults, calls, reset


def test_a_retry_of_an_applied_call_gets_its_answer_again(world):
    """An SDK retry (same invocation id, attempt 2) of a mutating call already answered
    with success is answered the same, not applied twice: an answer lost on the way
    (seen from this emulator's HTTP server) must not fail a Terraform destroy."""
    emu = world.emu
    ec2 = emu.client("ec2", NO_RETRY)
    sg = ec2.create_security_group(GroupName="replay", Description="replay")["GroupId"]
    headers = {"amz-sdk-invocation-id": "inv-1", "amz-sdk-request": "attempt=1; max=3"}

    def stamp(request, **_):
        for k, v in headers.items():
            request.headers[k] = v

    ec2.meta.events.register("before-send.ec2.AuthorizeSecurityGroupEgress", stamp)
    rule = [{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "127.0.0.0/8"}]}]
    emu.control("POST", "/moto-ext/calls/reset")
    first = ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=rule)
    headers["amz-sdk-request"] = "attempt=2; max=3"
    again = ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=rule)
    assert again["Return"] is True
    assert again["SecurityGroupRules"] == first["SecurityGroupRules"]
    calls = [c for c in emu.control("GET", "/moto-ext/calls") if c["action"] == "AuthorizeSecurityGroupEgress"]
    assert [c.get("replayed") for c in calls] == [None, True]
    # A new call (another invocation) is applied: the rule exists already.
    headers.update({"amz-sdk-invocation-id": "inv-2", "amz-sdk-request": "attempt=1; max=3"})
    with pytest.raises(ClientError) as err:
        ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=rule)
    assert err.value.response["Error"]["Code"] == "InvalidPermission.Duplicate"
    # A retry of a call that failed is applied again (and fails again here).
    headers["amz-sdk-request"] = "attempt=2; max=3"
    with pytest.raises(ClientError) as err:
        ec2.authorize_security_group_egress(GroupId=sg, IpPermissions=rule)
    assert err.value.response["Error"]["Code"] == "InvalidPermission.Duplicate"


def test_fault_injection_in_each_wire_format(world):
    emu = world.emu
    asg = emu.client("autoscaling", NO_RETRY)
    emu.control(
        "POST",
        "/moto-ext/faults",
        {"service": "autoscaling", "action": "DescribeAutoScalingGroups", "code": "Throttling", "status": 400, "count": 2, "message": "Rate exceeded"},
    )
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            asg.describe_auto_scaling_groups()
        e = err.value.response
        assert (e["Error"]["Code"], e["Error"]["Message"]) == ("Throttling", "Rate exceeded")
        assert e["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert e["Error"]["Code"] in ThrottledRetryableChecker._THROTTLED_ERROR_CODES
    asg.describe_auto_scaling_groups()  # count exhausted

    # With standard retries boto3 absorbs the throttles: three attempts, one success.
    emu.control("POST", "/moto-ext/calls/reset")
    emu.control("POST", "/moto-ext/faults", {"service": "autoscaling", "action": "*", "code": "Throttling", "count": 2})
    emu.client("autoscaling", Config(retries={"mode": "standard", "max_attempts": 3})).describe_auto_scaling_groups()
    calls = emu.control("GET", "/moto-ext/calls")
    assert [c.get("status") for c in calls] == [400, 400, 200]
    # The log tells the SDK's retries apart (a mutating call applied twice shows up).
    assert [c.get("attempt") for c in calls] == [None, 2, 3]
    assert calls[1]["invocation"] and calls[1]["invocation"] == calls[2]["invocation"]

    ssm = emu.client("ssm", NO_RETRY)
    emu.control("POST", "/moto-ext/faults", {"service": "ssm", "code": "InternalFailure", "status": 500, "message": "oops"})
    with pytest.raises(ClientError) as err:
        ssm.list_commands()
    assert err.value.response["Error"]["Code"] == "InternalFailure"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    ec2 = emu.client("ec2", NO_RETRY)
    emu.control("POST", "/moto-ext/faults", {"service": "ec2", "action": "DescribeInstances", "code": "RequestLimitExceeded", "message": "slow down"})
    with pytest.raises(ClientError) as err:
        ec2.describe_instances()
    assert (err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]) == ("RequestLimitExceeded", "slow down")

    r53 = emu.client("route53", NO_RETRY)
    zone = r53.create_hosted_zone(Name="example.test", CallerReference="x")["HostedZone"]["Id"]
    emu.control("POST", "/moto-ext/faults", {"service": "route53", "action": "ChangeResourceRecordSets", "code": "PriorRequestNotComplete", "message": "pending"})
    change = {
        "Changes": [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {"Name": "lb.example.test", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "127.0.0.1"}]},
            }
        ]
    }
    with pytest.raises(ClientError) as err:
        r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)
    assert err.value.response["Error"]["Code"] == "PriorRequestNotComplete"
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)

    events = emu.client("events", NO_RETRY)
    emu.control("POST", "/moto-ext/faults", {"service": "*", "action": "PutEvents", "code": "ThrottlingException", "message": "slow"})
    with pytest.raises(ClientError) as err:
        events.put_events(Entries=[{"Source": "x", "DetailType": "y", "Detail": "{}"}])
    assert err.value.response["Error"]["Code"] == "ThrottlingException"

    emu.control("POST", "/moto-ext/faults", {"code": "Throttling", "count": -1})
    assert len(emu.control("GET", "/moto-ext/faults")) == 1
    emu.control("DELETE", "/moto-ext/faults")
    assert emu.control("GET", "/moto-ext/faults") == []
    asg.describe_auto_scaling_groups()


def test_delay_rules_hold_requests_outside_the_lock(world):
    emu = world.emu
    asg = emu.client("autoscaling", NO_RETRY)
    emu.control(
        "POST", "/moto-ext/faults", {"service": "autoscaling", "action": "DescribeAutoScalingGroups", "delay_ms": 400}
    )
    emu.control("POST", "/moto-ext/calls/reset")
    slow = threading.Thread(target=asg.describe_auto_scaling_groups)
    slow.start()
    time.sleep(0.1)
    # Served while the delayed call waits: the delay does not hold the emulator's lock.
    world.ec2.describe_vpcs()
    slow.join(timeout=10)
    calls = {c["action"]: c for c in emu.control("GET", "/moto-ext/calls")}
    delayed, other = calls["DescribeAutoScalingGroups"], calls["DescribeVpcs"]
    assert delayed["status"] == 200 and delayed["delay_ms"] == 400
    assert delayed["end"] - delayed["time"] >= 0.4
    assert other["end"] < delayed["end"]
    assert emu.control("GET", "/moto-ext/faults") == []  # count 1 consumed

    # Delay and error together: the error comes after the delay.
    emu.control("POST", "/moto-ext/faults", {"service": "ec2", "code": "RequestLimitExceeded", "delay_ms": 200})
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        emu.client("ec2", NO_RETRY).describe_instances()
    assert err.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert time.monotonic() - started >= 0.2

    for bad in ({}, {"delay_ms": 0}, {"delay_ms": -5}, {"delay_ms": "soon"}, {"code": ""}):
        with pytest.raises(urllib.error.HTTPError) as err:
            emu.control("POST", "/moto-ext/faults", bad)
        assert err.value.code == 400


def test_calls_log_and_reset(world):
    emu = world.emu
    g = world.group(desired=1)
    emu.control("POST", "/moto-ext/calls/reset")
    world.asg.describe_auto_scaling_groups()
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    emu.client("ssm").list_commands()
    emu.client("events").list_rules()
    calls = emu.control("GET", "/moto-ext/calls")
    assert [(c["service"], c["action"]) for c in calls] == [
        ("autoscaling", "DescribeAutoScalingGroups"),
        ("autoscaling", "SetDesiredCapacity"),
        ("ssm", "ListCommands"),
        ("events", "ListRules"),
    ]
    assert all(isinstance(c["time"], float) for c in calls)
    assert calls == sorted(calls, key=lambda c: c["time"])
    # Who called: the access key of each request's credential.
    keys = {c.get("key") for c in calls}
    assert len(keys) == 1 and None not in keys and "" not in keys, keys

    emu.control("POST", "/moto-ext/faults", {"code": "Throttling", "count": 5})
    emu.control("POST", "/moto-ext/reset")
    assert emu.control("GET", "/moto-ext/calls") == []
    assert emu.control("GET", "/moto-ext/lifecycle") == []
    assert emu.control("GET", "/moto-ext/faults") == []
    assert world.asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_instances_listing_matches_describe_instances(world):
    g = world.group()
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    ids = [i for i, _ in world.members(g)]
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    listed = {i["id"]: i for i in world.emu.control("GET", "/moto-ext/instances")}
    described = {
        i["InstanceId"]: i
        for r in world.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        for i in r["Instances"]
    }
    assert set(ids) <= set(listed)
    for i in ids:
        assert listed[i]["ip"] == described[i]["PrivateIpAddress"]
        assert listed[i]["subnet"] == described[i]["SubnetId"]
        assert listed[i]["state"] == described[i]["State"]["Name"]
    assert sorted(listed[i]["state"] for i in ids) == ["running", "terminated"]


def test_refuses_non_loopback_bind():
    proc = subprocess.run(
        [sys.executable, SERVER, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "loopback" in proc.stderr


# --------------------------------------------------------------------------- SSM: documents, events


class EventQueue:
    """An SQS queue behind an EventBridge rule on the default bus."""

    def __init__(self, emu: Emulator, name: str, pattern: dict) -> None:
        self.sqs, events = emu.client("sqs"), emu.client("events")
        self.url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])

    def receive(self, wait: int = 1) -> list[dict]:
        msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get(
            "Messages", []
        )
        for m in msgs:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in msgs]

    def collect(self, done: Callable[[list[dict]], bool], timeout: float = 15) -> list[dict]:
        got: list[dict] = []
        wait_until(lambda: (got.extend(self.receive()) or done(got)), timeout=timeout, interval=0, what="events")
        return got


AGENT_DOC = {
    "schemaVersion": "2.2",
    "description": "run the agent",
    "parameters": {
        "Action": {"type": "String", "allowedValues": ["apply", "sync"], "default": "apply"},
        "Change": {"type": "String", "allowedPattern": "^[A-Za-z0-9+/]{4,}={0,2}$", "default": "e30g"},
    },
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "agent",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {
                "timeoutSeconds": "60",
                "runCommand": [
                    "set -eu",
                    "case '{{ Action }}' in",
                    "  apply) printf '%s' '{{Change}}' | base64 -d | /usr/local/bin/agent apply --json --file - ;;",
                    "  sync) /usr/local/bin/agent sync --json ;;",
                    "esac",
                ],
            },
        },
        {
            "action": "aws:runPowerShellScript",
            "name": "windows",
            "precondition": {"StringEquals": ["platformType", "Windows"]},
            "inputs": {"runCommand": ["Write-Output never"]},
        },
    ],
}


def _fake_agent(tmp_path, name: str = "agent", exit_code: int = 0) -> str:
    path = tmp_path / name
    path.write_text(
        "#!/bin/sh\n"
        'echo "agent $* config=$AGENT_CONFIG cmd=$SSM_COMMAND_ID inst=$SSM_INSTANCE_ID"\n'
        'if [ "$1" = apply ]; then cat; echo; fi\n'
        f"exit {exit_code}\n"
    )
    path.chmod(0o755)
    return str(path)


def _create_document(world, name: str, content: dict | str, fmt: str = "JSON") -> None:
    world.emu.client("ssm").create_document(
        Name=name,
        Content=content if isinstance(content, str) else json.dumps(content),
        DocumentType="Command",
        DocumentFormat=fmt,
    )


def _finished(ssm, cid: str, instance: str, timeout: float = 15) -> dict:
    return wait_until(
        lambda: (r := ssm.get_command_invocation(CommandId=cid, InstanceId=instance))["Status"] != "InProgress" and r,
        timeout=timeout,
        what=f"invocation {instance} to finish",
    )


def test_ssm_document_runs_with_parameters_paths_and_env(world, tmp_path):
    import base64

    ssm = world.emu.client("ssm")
    a, b = _instances(world, 2, {"Role": "proxy"})
    _create_document(world, "haproxy-asg-agent", AGENT_DOC)
    world.emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {
            a: {"document": True, "env": {"AGENT_CONFIG": "/tmp/h1/agent.toml"}, "paths": {"/usr/local/bin/agent": _fake_agent(tmp_path)}},
            b: {"document": True, "paths": {"/usr/local/bin/agent": _fake_agent(tmp_path, "broken", exit_code=3)}},
        },
    )
    change = base64.b64encode(b'{"add": ["10.0.0.1"]}').decode()
    cid = ssm.send_command(InstanceIds=[a, b], DocumentName="haproxy-asg-agent", Parameters={"Change": [change]})[
        "Command"
    ]["CommandId"]
    done = _finished(ssm, cid, a)
    assert (done["Status"], done["ResponseCode"]) == ("Success", 0), done
    assert done["StandardOutputContent"].splitlines()[0] == (
        f"agent apply --json --file - config=/tmp/h1/agent.toml cmd={cid} inst={a}"
    )
    assert '{"add": ["10.0.0.1"]}' in done["StandardOutputContent"]
    assert "never" not in done["StandardOutputContent"], "a Windows step is skipped on the Linux host"
    failed = _finished(ssm, cid, b)
    assert (failed["Status"], failed["ResponseCode"]) == ("Failed", 3)
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "Failed"

    # The default of Action is apply; an explicit sync runs the other branch.
    cid = ssm.send_command(InstanceIds=[a], DocumentName="haproxy-asg-agent", Parameters={"Action": ["sync"]})[
        "Command"
    ]["CommandId"]
    assert _finished(ssm, cid, a)["StandardOutputContent"].startswith("agent sync --json config=")

    # YAML documents run too; a StringList entry that is one reference expands to its lines.
    _create_document(
        world,
        "yaml-doc",
        "schemaVersion: '2.2'\n"
        "description: lines\n"
        "parameters:\n"
        "  commands: {type: StringList}\n"
        "mainSteps:\n"
        "- action: aws:runShellScript\n"
        "  name: run\n"
        "  inputs:\n"
        "    runCommand: ['{{ commands }}']\n",
        fmt="YAML",
    )
    cid = ssm.send_command(InstanceIds=[a], DocumentName="yaml-doc", Parameters={"commands": ["echo one", "echo two"]})[
        "Command"
    ]["CommandId"]
    assert _finished(ssm, cid, a)["StandardOutputContent"] == "one\ntwo\n"


def test_ssm_document_parameters_checked_as_ssm_does(world, tmp_path):
    ssm = world.emu.client("ssm", NO_RETRY)
    (a,) = _instances(world, 1, {"Role": "proxy"})
    _create_document(world, "haproxy-asg-agent", AGENT_DOC)
    _create_document(
        world,
        "needs-target",
        {
            "schemaVersion": "2.2",
            "description": "required parameter",
            "parameters": {"Target": {"type": "String"}},
            "mainSteps": [{"action": "aws:runShellScript", "name": "s", "inputs": {"runCommand": ["echo {{ Target }}"]}}],
        },
    )
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True, "paths": {"/usr/local/bin/agent": _fake_agent(tmp_path)}}})
    for doc, params, name in [
        ("haproxy-asg-agent", {"Bogus": ["x"]}, "Bogus"),
        ("haproxy-asg-agent", {"Action": ["delete"]}, "Action"),
        ("haproxy-asg-agent", {"Change": ["'; rm -rf / #"]}, "Change"),
        ("haproxy-asg-agent", {"Action": ["apply", "sync"]}, "Action"),
        ("needs-target", {}, "Target"),
    ]:
        with pytest.raises(ClientError) as err:
            ssm.send_command(InstanceIds=[a], DocumentName=doc, Parameters=params)
        assert err.value.response["Error"]["Code"] == "InvalidParameters", params
        assert f'"{name}"' in err.value.response["Error"]["Message"]
    assert ssm.list_commands()["Commands"] == [], "a refused SendCommand creates no command"
    cid = ssm.send_command(InstanceIds=[a], DocumentName="needs-target", Parameters={"Target": ["here"]})["Command"][
        "CommandId"
    ]
    assert _finished(ssm, cid, a)["StandardOutputContent"] == "here\n"

    # A host that runs the document needs the document.
    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=[a], DocumentName="never-created")
    assert err.value.response["Error"]["Code"] == "InvalidDocument"


def test_ssm_document_execution_timeout_kills_the_process_group(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1, {"Role": "proxy"})
    pids = tmp_path / "pids"
    _create_document(
        world,
        "slow",
        {
            "schemaVersion": "2.2",
            "description": "sleeps",
            "parameters": {"executionTimeout": {"type": "String", "default": "1"}},
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "sleep",
                    "inputs": {
                        "timeoutSeconds": "{{ executionTimeout }}",
                        "runCommand": [f"sleep 30 & echo $! > {pids}", "echo started", "wait"],
                    },
                }
            ],
        },
    )
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True}})
    started = time.monotonic()
    cid = ssm.send_command(InstanceIds=[a], DocumentName="slow")["Command"]["CommandId"]
    done = _finished(ssm, cid, a, timeout=10)
    assert time.monotonic() - started < 6
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("TimedOut", "ExecutionTimedOut", 137)
    assert done["StandardOutputContent"] == "started\n"
    listed = ssm.list_commands(CommandId=cid)["Commands"][0]
    assert (listed["Status"], listed["ErrorCount"]) == ("TimedOut", 1)
    child = int(pids.read_text())
    wait_until(lambda: not _alive(child), timeout=5, what="the step's child killed with its group")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of someone else still answers kill(0): look at its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ssm_parameters_64kb_limit(world):
    ssm = world.emu.client("ssm", NO_RETRY)
    (a,) = _instances(world, 1, {"Role": "proxy"})
    doc = {
        "schemaVersion": "2.2",
        "description": "blob",
        "parameters": {"Blob": {"type": "String"}},
        "mainSteps": [{"action": "aws:runShellScript", "name": "s", "inputs": {"runCommand": ["true"]}}],
    }
    content = json.dumps(doc)
    _create_document(world, "blob", content)
    room = 65536 - len(content.encode()) - len("Blob")
    ssm.send_command(InstanceIds=[a], DocumentName="blob", Parameters={"Blob": ["é" * (room // 2)]})  # 2 bytes each
    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=[a], DocumentName="blob", Parameters={"Blob": ["x" * (room + 1)]})
    assert err.value.response["Error"]["Code"] == "MaxDocumentSizeExceeded"
    assert "64 KB" in err.value.response["Error"]["Message"]
    # A document the emulator does not hold (AWS-owned): the parameters alone count.
    ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript", Parameters={"commands": ["x" * (65536 - 8)]})
    with pytest.raises(ClientError) as err:
        ssm.send_command(InstanceIds=[a], DocumentName="AWS-RunShellScript", Parameters={"commands": ["x" * (65536 - 7)]})
    assert err.value.response["Error"]["Code"] == "MaxDocumentSizeExceeded"
    assert len(ssm.list_commands()["Commands"]) == 2


def test_ssm_status_change_events(world):
    emu, ssm = world.emu, world.emu.client("ssm")
    queue = EventQueue(emu, "ssm-events", {"source": ["aws.ssm"]})
    a, b = _instances(world, 2, {"Role": "proxy"})
    emu.control("POST", "/moto-ext/ssm/hosts", {b: {"status": "Failed", "stdout": "", "stderr": "x", "code": 2}})
    cmd = ssm.send_command(InstanceIds=[a, b], DocumentName="AWS-RunShellScript", Parameters={"commands": ["date"]})["Command"]
    cid = cmd["CommandId"]
    got = queue.collect(lambda g: len(g) >= 6)
    assert len(got) == 6
    arn = {i: f"arn:aws:ec2:us-east-1:123456789012:instance/{i}" for i in (a, b)}
    kinds = [(e["detail-type"].split()[1], e["detail"].get("instance-id"), e["detail"]["status"]) for e in got]
    assert kinds == [
        ("Command", None, "InProgress"),
        ("Command", a, "InProgress"),
        ("Command", a, "Success"),
        ("Command", b, "InProgress"),
        ("Command", b, "Failed"),
        ("Command", None, "Failed"),
    ]
    first, inv = got[0], got[2]
    assert first["detail-type"] == "EC2 Command Status-change Notification"
    assert first["source"] == "aws.ssm" and first["account"] == "123456789012" and first["region"] == "us-east-1"
    assert first["resources"] == [arn[a], arn[b]]
    assert set(first["detail"]) == {"command-id", "document-name", "expire-after", "parameters", "requested-date-time", "status"}
    assert first["detail"]["parameters"] == {"commands": ["date"]}
    assert first["detail"]["command-id"] == cid and first["detail"]["document-name"] == "AWS-RunShellScript"
    assert inv["detail-type"] == "EC2 Command Invocation Status-change Notification"
    assert inv["resources"] == [arn[a]]
    assert set(inv["detail"]) == {"command-id", "document-name", "instance-id", "requested-date-time", "status"}
    assert inv["detail"]["requested-date-time"] == first["detail"]["requested-date-time"]
    recorded = [e for e in emu.control("GET", "/moto-ext/events") if e["source"] == "aws.ssm"]
    assert [e["id"] for e in recorded] == [e["id"] for e in got]
    assert all(isinstance(e["emitted"], float) for e in recorded)


def test_ssm_event_arrives_after_its_state_is_visible(world):
    emu, ssm = world.emu, world.emu.client("ssm")
    queue = EventQueue(emu, "ssm-visible", {"source": ["aws.ssm"], "detail": {"status": ["Success", "Failed"]}})
    ids = _instances(world, 3, {"Role": "proxy"})
    emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {i: {"exec": ["python3", "-c", f"import time; time.sleep({0.2 * n})"]} for n, i in enumerate(ids)},
    )
    cid = ssm.send_command(InstanceIds=ids, DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    seen = 0
    deadline = time.monotonic() + 15
    while seen < 4 and time.monotonic() < deadline:
        for event in queue.receive():
            seen += 1
            d = event["detail"]
            if "instance-id" in d:  # the consumer reads the outcome the moment the event arrives
                assert ssm.get_command_invocation(CommandId=cid, InstanceId=d["instance-id"])["Status"] == d["status"]
            else:
                assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == d["status"]
    assert seen == 4


def test_ssm_cancel_command(world, tmp_path):
    emu, ssm = world.emu, world.emu.client("ssm")
    a, b = _instances(world, 2, {"Role": "proxy"})
    pid_a = tmp_path / "a.pid"
    emu.control(
        "POST",
        "/moto-ext/ssm/hosts",
        {"*": {"exec": ["sleep", "30"]}, a: {"exec": ["sh", "-c", f"echo $$ > {pid_a}; exec sleep 30"]}},
    )
    cid = ssm.send_command(InstanceIds=[a, b], DocumentName="AWS-RunShellScript")["Command"]["CommandId"]
    wait_until(lambda: pid_a.exists() and pid_a.read_text().strip(), timeout=5, what="process started")
    ssm.cancel_command(CommandId=cid, InstanceIds=[a])
    wait_until(lambda: not _alive(int(pid_a.read_text())), timeout=5, what="cancelled process killed")
    assert ssm.get_command_invocation(CommandId=cid, InstanceId=a)["Status"] == "Cancelled"
    assert ssm.get_command_invocation(CommandId=cid, InstanceId=b)["Status"] == "InProgress"
    ssm.cancel_command(CommandId=cid)
    assert ssm.get_command_invocation(CommandId=cid, InstanceId=b)["Status"] == "Cancelled"
    assert ssm.list_commands(CommandId=cid)["Commands"][0]["Status"] == "Cancelled"
    statuses = [e["detail"]["status"] for e in emu.control("GET", "/moto-ext/events") if e["source"] == "aws.ssm"]
    assert statuses == ["InProgress", "InProgress", "InProgress", "Cancelled", "Cancelled", "Cancelled"]


# --------------------------------------------------------------------------- EC2 spot signals


def _lifecycle_of(world, instance: str) -> list[dict]:
    return [r for r in world.emu.control("GET", "/moto-ext/lifecycle") if r["instance"] == instance]


def _details(world, detail_type: str) -> list[dict]:
    return [e["detail"] for e in world.emu.control("GET", "/moto-ext/events") if e["detail-type"] == detail_type]


def test_spot_interruption_warning_then_hook_then_reclaim(world):
    queue = EventQueue(world.emu, "ec2-events", {"source": ["aws.ec2"]})
    g = world.group(desired=2)
    world.hook(g, "drain", TERMINATING, timeout=300)
    a, b = [i for i, _ in world.members(g)]

    def lifecycle(i):
        (r,) = world.ec2.describe_instances(InstanceIds=[i])["Reservations"]
        return r["Instances"][0].get("InstanceLifecycle")

    assert lifecycle(a) is None, "moto launches On-Demand instances"
    t0 = time.monotonic()
    answer = world.emu.control(
        "POST", "/moto-ext/ec2/spot-interruption", {"instance": a, "hook_after_ms": 300, "terminate_after_ms": 1500}
    )
    assert (lifecycle(a), lifecycle(b)) == ("spot", None), "EC2 warns Spot instances only: the warned one is one"
    assert world.states(g) == {a: "InService", b: "InService"}, "nothing happens before hook_after_ms"
    assert [t["action"] for t in world.emu.control("GET", "/moto-ext/timers")] == ["replace_interrupted", "reclaim"]
    assert answer == {"instance": a, "action": "terminate", "hook_after_ms": 300, "terminate_after_ms": 1500}
    (warning,) = queue.collect(lambda got: len(got) >= 1)
    assert warning["detail-type"] == "EC2 Spot Instance Interruption Warning" and warning["source"] == "aws.ec2"
    assert warning["detail"] == {"instance-id": a, "instance-action": "terminate"}
    assert warning["resources"] == [f"arn:aws:ec2:us-east-1:123456789012:instance/{a}"]

    states = wait_until(lambda: (s := world.states(g)).get(a) == "Terminating:Wait" and len(s) == 3 and s, timeout=5)
    assert time.monotonic() - t0 >= 0.3
    (replacement,) = [i for i in states if i not in (a, b)]
    assert states[replacement] == "InService" and world.ec2_state(a) == "running"
    (action,) = world.pending(a)
    assert action["transition"] == TERMINATING

    wait_until(lambda: a not in world.states(g), timeout=5, what="EC2 reclaims the instance")
    assert time.monotonic() - t0 >= 1.5
    assert world.ec2_state(a) == "terminated"
    assert world.states(g) == {b: "InService", replacement: "InService"}
    (record,) = _lifecycle_of(world, a)
    assert (record["result"], record["by"]) == ("ABANDON", "vanished")
    assert [d["EC2InstanceId"] for d in _details(world, "EC2 Instance Terminate Successful")] == [a]
    assert world.emu.control("GET", "/moto-ext/timers") == []


def test_rebalance_recommendation_and_reclaim_outside_groups(world):
    (plain,) = _instances(world, 1, {"Role": "spot"})
    (stopped,) = _instances(world, 1, {"Role": "spot"})
    answer = world.emu.control("POST", "/moto-ext/ec2/rebalance-recommendation", {"instance": plain})
    assert answer == {"instance": plain, "hook_after_ms": None, "terminate_after_ms": None}
    assert _details(world, "EC2 Instance Rebalance Recommendation") == [{"instance-id": plain}]
    assert world.emu.control("GET", "/moto-ext/timers") == [], "no follow-up unless asked"

    world.emu.control("POST", "/moto-ext/ec2/rebalance-recommendation", {"instance": plain, "terminate_after_ms": 100})
    world.emu.control(
        "POST", "/moto-ext/ec2/spot-interruption", {"instance": stopped, "action": "stop", "terminate_after_ms": 100}
    )
    assert _details(world, "EC2 Spot Instance Interruption Warning") == [{"instance-id": stopped, "instance-action": "stop"}]
    wait_until(lambda: world.ec2_state(plain) == "terminated", timeout=5)
    wait_until(lambda: world.ec2_state(stopped) == "stopped", timeout=5)
    assert world.private_ip(stopped).startswith("127.0.1.")

    for path, body in [
        ("/moto-ext/ec2/spot-interruption", {"instance": "i-0000000000000dead"}),
        ("/moto-ext/ec2/rebalance-recommendation", {"instance": "i-0000000000000dead"}),
        ("/moto-ext/ec2/spot-interruption", {"instance": stopped, "action": "explode"}),
        ("/moto-ext/ec2/spot-interruption", {"instance": stopped, "hook_after_ms": -1}),
        ("/moto-ext/ec2/rebalance-recommendation", {"instance": plain}),  # terminated by now
        ("/moto-ext/ec2/rebalance-recommendation", {}),
    ]:
        with pytest.raises(urllib.error.HTTPError) as err:
            world.emu.control("POST", path, body)
        assert err.value.code == 400
        message = json.loads(err.value.read())["error"]
        assert message and ("i-0000000000000dead" not in json.dumps(body) or "unknown instance" in message)


def test_reset_drops_pending_timers(world):
    (plain,) = _instances(world, 1, {"Role": "spot"})
    world.emu.control("POST", "/moto-ext/ec2/spot-interruption", {"instance": plain, "hook_after_ms": 60000})
    assert len(world.emu.control("GET", "/moto-ext/timers")) == 2
    world.emu.control("POST", "/moto-ext/reset")
    assert world.emu.control("GET", "/moto-ext/timers") == []


# --------------------------------------------------------------------------- warm pools


def _pool(world, group: str) -> dict[str, str]:
    return {i["InstanceId"]: i["LifecycleState"] for i in world.asg.describe_warm_pool(AutoScalingGroupName=group)["Instances"]}


def _events(world, detail_type: str, instance: str) -> list[dict]:
    return [d for d in _details(world, detail_type) if d.get("EC2InstanceId") == instance]


def _route(world, detail_type: str, instance: str) -> list[tuple[str, str]]:
    return [(d.get("Origin"), d.get("Destination")) for d in _events(world, detail_type, instance)]


def _wait_pool(world, group: str, expected: dict[str, str] | Callable[[dict], bool], what: str = "pool") -> dict:
    check = expected if callable(expected) else (lambda p: p == expected)
    return wait_until(lambda: p if check(p := _pool(world, group)) else None, timeout=8, what=what)


def test_warm_pool_fills_through_the_launch_hook_then_stops(world):
    g = world.group(desired=1)
    world.asg.update_auto_scaling_group(AutoScalingGroupName=g, MaxSize=4)
    world.hook(g, "launch", LAUNCHING, timeout=300, default="CONTINUE")
    (member,) = [i for i, _ in world.members(g)]  # launched before the hook: InService
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=1, MaxGroupPreparedCapacity=3, PoolState="Stopped")
    pool = _pool(world, g)
    assert list(pool.values()) == ["Warmed:Pending:Wait", "Warmed:Pending:Wait"], "size max(3 - 1, 1) = 2"
    first, second = pool
    assert world.states(g) == {member: "InService"}, "warm instances are not group members"
    described = world.asg.describe_warm_pool(AutoScalingGroupName=g)
    assert described["WarmPoolConfiguration"] == {"MaxGroupPreparedCapacity": 3, "MinSize": 1, "PoolState": "Stopped"}
    group = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]
    assert group["WarmPoolSize"] == 2 and group["WarmPoolConfiguration"]["PoolState"] == "Stopped"
    inst = world.asg.describe_auto_scaling_instances(InstanceIds=[first])["AutoScalingInstances"]
    assert [(i["InstanceId"], i["LifecycleState"]) for i in inst] == [(first, "Warmed:Pending:Wait")]
    assert world.ec2_state(first) == "running"
    ip = world.private_ip(first)

    (action,) = world.pending(first)
    assert (action["transition"], action["origin"], action["destination"]) == (LAUNCHING, "EC2", "WarmPool")
    assert _route(world, "EC2 Instance-launch Lifecycle Action", first) == [("EC2", "WarmPool")]
    world.complete(g, "launch", "CONTINUE", token=action["token"])
    assert _pool(world, g) == {first: "Warmed:Stopped", second: "Warmed:Pending:Wait"}
    assert world.ec2_state(first) == "stopped" and world.private_ip(first) == ip
    assert _route(world, "EC2 Instance Launch Successful", first) == [("EC2", "WarmPool")]

    # Heartbeats and timeouts work for warm transitions too (DefaultResult CONTINUE here).
    (other,) = world.pending(second)
    world.asg.record_lifecycle_action_heartbeat(
        AutoScalingGroupName=g, LifecycleHookName="launch", LifecycleActionToken=other["token"]
    )
    world.asg.put_lifecycle_hook(
        AutoScalingGroupName=g, LifecycleHookName="launch", LifecycleTransition=LAUNCHING, HeartbeatTimeout=300
    )
    (record,) = _lifecycle_of(world, second)
    assert record["heartbeats"] == 1
    world.complete(g, "launch", "ABANDON", instance=second)  # abandoned: terminated, the pool refills
    pool = _pool(world, g)
    assert second not in pool and world.ec2_state(second) == "terminated" and len(pool) == 2
    assert _route(world, "EC2 Instance Launch Unsuccessful", second) == [("EC2", "WarmPool")]


def test_warm_pool_timeout_applies_default_result(world):
    g = world.group(desired=0)
    world.hook(g, "launch", LAUNCHING, timeout=2, default="CONTINUE")
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=1, MaxGroupPreparedCapacity=1, PoolState="Running")
    (warm,) = _pool(world, g)
    _wait_pool(world, g, {warm: "Warmed:Running"}, what="timeout CONTINUE")
    assert world.ec2_state(warm) == "running"
    (record,) = _lifecycle_of(world, warm)
    assert (record["result"], record["by"]) == ("CONTINUE", "timeout")


def test_warm_pool_scale_out_draws_warm_instances_first_and_refills(world):
    g = world.group(desired=0)
    world.hook(g, "launch", LAUNCHING, timeout=300)
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=1, MaxGroupPreparedCapacity=2)
    older, newer = _pool(world, g)
    for i in (older, newer):
        world.complete(g, "launch", "CONTINUE", instance=i)
    assert _pool(world, g) == {older: "Warmed:Stopped", newer: "Warmed:Stopped"}
    ips = {i: world.private_ip(i) for i in (older, newer)}

    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    assert world.states(g) == {older: "Pending:Wait"}, "the oldest warm instance, not a new one"
    assert world.ec2_state(older) == "running" and world.private_ip(older) == ips[older]
    assert _pool(world, g) == {newer: "Warmed:Stopped"}, "size max(2 - 1, 1) = 1: no refill needed"
    assert _route(world, "EC2 Instance-launch Lifecycle Action", older)[-1] == ("WarmPool", "AutoScalingGroup")
    world.complete(g, "launch", "CONTINUE", instance=older)
    assert world.states(g) == {older: "InService"}
    assert _route(world, "EC2 Instance Launch Successful", older) == [("EC2", "WarmPool"), ("WarmPool", "AutoScalingGroup")]

    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=3)
    states = world.states(g)
    (cold,) = [i for i in states if i not in (older, newer)]
    assert states == {older: "InService", newer: "Pending:Wait", cold: "Pending:Wait"}
    assert _route(world, "EC2 Instance-launch Lifecycle Action", cold) == [("EC2", "AutoScalingGroup")], "pool empty: cold start"
    (refill,) = _pool(world, g)
    assert _pool(world, g) == {refill: "Warmed:Pending:Wait"}, "MinSize 1 refilled"
    assert _route(world, "EC2 Instance-launch Lifecycle Action", refill) == [("EC2", "WarmPool")]


def test_warm_pool_reuse_on_scale_in_goes_back_through_the_terminate_hook(world):
    g = world.group(desired=2)
    world.hook(g, "drain", TERMINATING, timeout=300)
    a, b = [i for i, _ in world.members(g)]
    world.asg.put_warm_pool(
        AutoScalingGroupName=g, MinSize=0, MaxGroupPreparedCapacity=2, InstanceReusePolicy={"ReuseOnScaleIn": True}
    )
    assert _pool(world, g) == {}, "size max(2 - 2, 0) = 0"
    assert world.asg.describe_warm_pool(AutoScalingGroupName=g)["WarmPoolConfiguration"]["InstanceReusePolicy"] == {
        "ReuseOnScaleIn": True
    }
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    assert world.states(g) == {b: "InService"}, "the returning instance has left the group"
    assert _pool(world, g) == {a: "Warmed:Pending:Wait"}
    assert world.ec2_state(a) == "running"
    (action,) = world.pending(a)
    assert (action["transition"], action["origin"], action["destination"]) == (TERMINATING, "AutoScalingGroup", "WarmPool")
    assert _route(world, "EC2 Instance-terminate Lifecycle Action", a) == [("AutoScalingGroup", "WarmPool")]
    world.complete(g, "drain", "CONTINUE", token=action["token"])
    assert _pool(world, g) == {a: "Warmed:Stopped"}
    assert world.ec2_state(a) == "stopped"
    # AWS: returning to the warm pool "can also generate EC2 Instance Terminate Successful
    # events", with WarmPool as the Destination (the instance is not terminated).
    assert _route(world, "EC2 Instance Terminate Successful", a) == [("AutoScalingGroup", "WarmPool")]

    # The pool is over its size (1 > max(2 - 1, 0))? No: 2 - 1 = 1. Scale out takes it back.
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=2)
    assert world.states(g) == {a: "InService", b: "InService"}
    assert _pool(world, g) == {}

    # Without reuse, scale-in terminates (the group has a pool: Origin/Destination set).
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=0, MaxGroupPreparedCapacity=2)
    world.asg.set_desired_capacity(AutoScalingGroupName=g, DesiredCapacity=1)
    assert world.states(g) == {a: "Terminating:Wait", b: "InService"}
    assert _route(world, "EC2 Instance-terminate Lifecycle Action", a)[-1] == ("AutoScalingGroup", "EC2")
    world.complete(g, "drain", "ABANDON", instance=a)
    assert world.ec2_state(a) == "terminated"
    assert _route(world, "EC2 Instance Terminate Successful", a) == [("AutoScalingGroup", "WarmPool"), ("AutoScalingGroup", "EC2")]
    (refill,) = _pool(world, g)  # size 2 - 1 = 1 again


def test_delete_warm_pool(world):
    g = world.group(desired=0)
    world.hook(g, "drain", TERMINATING, timeout=300)
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=2, MaxGroupPreparedCapacity=0)
    a, b = _pool(world, g)
    assert _pool(world, g) == {a: "Warmed:Stopped", b: "Warmed:Stopped"}, "no launch hook: straight to Stopped"
    world.asg.delete_warm_pool(AutoScalingGroupName=g)
    described = world.asg.describe_warm_pool(AutoScalingGroupName=g)
    assert described["WarmPoolConfiguration"]["Status"] == "PendingDelete"
    assert _pool(world, g) == {a: "Warmed:Terminating:Wait", b: "Warmed:Terminating:Wait"}
    assert _route(world, "EC2 Instance-terminate Lifecycle Action", a) == [("WarmPool", "EC2")]
    world.complete(g, "drain", "CONTINUE", instance=a)
    assert world.ec2_state(a) == "terminated" and _pool(world, g) == {b: "Warmed:Terminating:Wait"}
    assert _route(world, "EC2 Instance Terminate Successful", a) == [("WarmPool", "EC2")]
    world.complete(g, "drain", "CONTINUE", instance=b)
    assert "WarmPoolConfiguration" not in world.asg.describe_warm_pool(AutoScalingGroupName=g)

    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=1, MaxGroupPreparedCapacity=0)
    (c,) = _pool(world, g)
    world.asg.delete_warm_pool(AutoScalingGroupName=g, ForceDelete=True)
    assert world.ec2_state(c) == "terminated" and _pool(world, g) == {}
    assert "WarmPoolConfiguration" not in world.asg.describe_warm_pool(AutoScalingGroupName=g)


def test_warm_instance_terminated_by_ec2_or_auto_scaling_is_replaced(world):
    g = world.group(desired=0)
    world.hook(g, "drain", TERMINATING, timeout=300)
    world.asg.put_warm_pool(AutoScalingGroupName=g, MinSize=2, MaxGroupPreparedCapacity=0)
    a, b = _pool(world, g)
    world.ec2.terminate_instances(InstanceIds=[a])
    pool = _pool(world, g)
    assert a not in pool and len(pool) == 2, "EC2 termination: gone at once, the pool refilled"
    assert _route(world, "EC2 Instance Terminate Successful", a) == [("WarmPool", "EC2")]
    world.asg.terminate_instance_in_auto_scaling_group(InstanceId=b, ShouldDecrementDesiredCapacity=True)
    assert world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[g])["AutoScalingGroups"][0]["DesiredCapacity"] == 0
    pool = _pool(world, g)
    assert pool[b] == "Warmed:Terminating:Wait" and len(pool) == 3, "a replacement does not wait for it"
    world.complete(g, "drain", "CONTINUE", instance=b)
    assert b not in _pool(world, g) and world.ec2_state(b) == "terminated"


def test_reset_kills_running_document_steps(world, tmp_path):
    ssm = world.emu.client("ssm")
    (a,) = _instances(world, 1, {"Role": "proxy"})
    pid = tmp_path / "pid"
    _create_document(
        world,
        "long",
        {
            "schemaVersion": "2.2",
            "description": "runs long",
            "mainSteps": [{"action": "aws:runShellScript", "name": "s", "inputs": {"runCommand": [f"echo $$ > {pid}", "sleep 30"]}}],
        },
    )
    world.emu.control("POST", "/moto-ext/ssm/hosts", {a: {"document": True}})
    ssm.send_command(InstanceIds=[a], DocumentName="long")
    wait_until(lambda: pid.exists() and pid.read_text().strip(), timeout=5, what="step started")
    world.emu.control("POST", "/moto-ext/reset")
    wait_until(lambda: not _alive(int(pid.read_text())), timeout=5, what="reset kills the step's process group")


# --------------------------------------------------------------------------- terraform_compat
# What the Terraform AWS provider needs of moto to apply and destroy the complete example
# (scripts/check-terraform-apply).


def test_bucket_policy_deny_with_unmet_condition_does_not_apply(emu):
    s3 = emu.client("s3")
    s3.create_bucket(Bucket="artefacts")
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::artefacts", "arn:aws:s3:::artefacts/*"]}
    insecure = dict(deny, Sid="DenyInsecureTransport", Condition={"Bool": {"aws:SecureTransport": "false"}})
    s3.put_bucket_policy(Bucket="artefacts", Policy=json.dumps({"Version": "2012-10-17", "Statement": [insecure]}))
    s3.put_object(Bucket="artefacts", Key="agent/x/agent", Body=b"agent")
    assert s3.head_object(Bucket="artefacts", Key="agent/x/agent")["ContentLength"] == 5
    assert s3.get_object(Bucket="artefacts", Key="agent/x/agent")["Body"].read() == b"agent"
    deleted = s3.delete_objects(Bucket="artefacts", Delete={"Objects": [{"Key": "agent/x/agent"}]})
    assert [d["Key"] for d in deleted.get("Deleted", [])] == ["agent/x/agent"] and not deleted.get("Errors")
    # A Deny without condition still denies.
    s3.put_bucket_policy(Bucket="artefacts", Policy=json.dumps({"Version": "2012-10-17", "Statement": [dict(deny, Sid="All")]}))
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket="artefacts", Key="k", Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_redrive_policy_is_answered_as_it_was_set(emu):
    sqs = emu.client("sqs")
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5}, separators=(",", ":"))
    inbox = sqs.create_queue(QueueName="inbox", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    assert got == policy


def _send_numbered(sqs: Any, url: str, n: int) -> None:
    """Sends the bodies m0 .. m{n-1}, ten to a batch."""
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(min(10, n - start))])


def _receive_bodies(sqs: Any, url: str, rounds: int) -> set[str]:
    """The bodies received (kept in flight) until a receive comes back empty."""
    bodies: set[str] = set()
    for _ in range(rounds):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not got:
            break
        bodies.update(m["Body"] for m in got)
    return bodies


def test_messages_within_their_retention_are_received_from_a_backlog(emu):
    # speed.py reads the retention period from the queue instead of building every
    # attribute per message handed out; what is received must not change.
    sqs = emu.client("sqs")
    url = sqs.create_queue(QueueName="backlog", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    _send_numbered(sqs, url, 300)
    # Sending skips the message counts; asking for them still counts.
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "300", counts
    assert _receive_bodies(sqs, url, 60) == {f"m{i}" for i in range(300)}


def test_deletes_from_a_backlog_remove_exactly_the_messages_named(emu):
    # speed.py deletes a batch in one walk of the queue; what is deleted, and what each
    # entry answers, must not change: a handle deleted before succeeds again, an old
    # handle of a message received twice deletes it, an unknown handle fails alone.
    sqs = emu.client("sqs")
    url = sqs.create_queue(QueueName="deletes")["QueueUrl"]
    _send_numbered(sqs, url, 200)
    got = []
    for _ in range(10):
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)["Messages"]
    assert len(got) == 100
    first = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"]}])
    assert [e["Id"] for e in first["Successful"]] == ["a"]
    # One message received again: its first handle still deletes it.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[1]["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=300)["Messages"]
    assert again and again[0]["Body"] == got[1]["Body"]
    entries = [{"Id": f"e{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[1:10], start=1)]
    entries.append({"Id": "gone", "ReceiptHandle": got[0]["ReceiptHandle"]})
    entries.append({"Id": "bad", "ReceiptHandle": "not-a-handle"})
    out = sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(e["Id"] for e in out["Successful"]) == sorted([f"e{i}" for i in range(1, 10)] + ["gone"])
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert e.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[10]["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[10]["ReceiptHandle"])
    # 11 deleted: the other 89 in flight stay, the 100 never received are received.
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "89", counts
    assert _receive_bodies(sqs, url, 30) == {f"m{i}" for i in range(200)} - {m["Body"] for m in got}


def test_lifecycle_hooks_have_only_the_targets_they_were_given(world):
    g = world.group(
        hooks=[
            {
                "LifecycleHookName": "spec",
                "LifecycleTransition": LAUNCHING,
                "RoleARN": "arn:aws:iam::123456789012:role/hooks",
                "NotificationTargetARN": "arn:aws:sqs:us-east-1:123456789012:hooks",
            }
        ]
    )
    world.hook(g, "plain", TERMINATING)
    world.asg.put_lifecycle_hook(
        AutoScalingGroupName=g,
        LifecycleHookName="targeted",
        LifecycleTransition=TERMINATING,
        RoleARN="arn:aws:iam::123456789012:role/hooks",
        NotificationTargetARN="arn:aws:sns:us-east-1:123456789012:hooks",
    )
    hooks = {h["LifecycleHookName"]: h for h in world.asg.describe_lifecycle_hooks(AutoScalingGroupName=g)["LifecycleHooks"]}
    assert "RoleARN" not in hooks["plain"] and "NotificationTargetARN" not in hooks["plain"]
    assert hooks["plain"]["NotificationMetadata"] == "meta-plain"
    assert hooks["targeted"]["NotificationTargetARN"] == "arn:aws:sns:us-east-1:123456789012:hooks"
    assert hooks["spec"]["RoleARN"] == "arn:aws:iam::123456789012:role/hooks"
    assert hooks["spec"]["NotificationTargetARN"] == "arn:aws:sqs:us-east-1:123456789012:hooks"


def test_lambda_keeps_dead_letter_and_logging_config(emu):
    import io
    import zipfile

    role = emu.client("iam").create_role(
        RoleName="reactor",
        AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    lam = emu.client("lambda")
    dlq = "arn:aws:sqs:us-east-1:123456789012:reactor-dlq"
    lam.create_function(
        FunctionName="reactor",
        Role=role,
        Runtime="provided.al2023",
        Handler="bootstrap",
        Code={"ZipFile": code.getvalue()},
        DeadLetterConfig={"TargetArn": dlq},
    )
    conf = lam.get_function(FunctionName="reactor")["Configuration"]
    assert conf["DeadLetterConfig"] == {"TargetArn": dlq}
    assert conf["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/reactor"}, "AWS's default"
    lam.update_function_configuration(
        FunctionName="reactor",
        DeadLetterConfig={"TargetArn": dlq + "-2"},
        LoggingConfig={"LogFormat": "JSON", "LogGroup": "/custom/reactor"},
    )
    conf = lam.get_function_configuration(FunctionName="reactor")
    assert conf["DeadLetterConfig"] == {"TargetArn": dlq + "-2"}
    assert conf["LoggingConfig"]["LogFormat"] == "JSON" and conf["LoggingConfig"]["LogGroup"] == "/custom/reactor"


def test_security_group_rule_referencing_a_group_has_its_description(world):
    vpc = world.ec2.describe_subnets(SubnetIds=[world.subnet])["Subnets"][0]["VpcId"]
    web = world.ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    proxy = world.ec2.create_security_group(GroupName="proxy", Description="proxy", VpcId=vpc)["GroupId"]
    world.ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": proxy, "Description": "from the proxies"}]}],
    )
    rules = world.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [web]}])["SecurityGroupRules"]
    (rule,) = [r for r in rules if not r["IsEgress"]]
    assert rule["ReferencedGroupInfo"]["GroupId"] == proxy and rule["Description"] == "from the proxies"


def test_launch_template_own_tags_stay_off_its_data(world):
    world.ec2.create_launch_template(
        LaunchTemplateName="tagged",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": "proxy"}]}]},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "Project", "Value": "haproxy-asg"}]}],
    )
    template = world.ec2.describe_launch_templates(LaunchTemplateNames=["tagged"])["LaunchTemplates"][0]
    assert {"Key": "Project", "Value": "haproxy-asg"} in template.get("Tags", [])
    data = world.ec2.describe_launch_template_versions(LaunchTemplateName="tagged")["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert [s["ResourceType"] for s in data["TagSpecifications"]] == ["instance"]


def test_nat_gateway_deletion_frees_its_interface_and_address(world):
    eip = world.ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = world.ec2.create_nat_gateway(SubnetId=world.subnet, AllocationId=eip)["NatGateway"]["NatGatewayId"]
    enis = lambda: {n["NetworkInterfaceId"] for n in world.ec2.describe_network_interfaces()["NetworkInterfaces"]}
    (eni,) = {a["NetworkInterfaceId"] for a in world.ec2.describe_addresses(AllocationIds=[eip])["Addresses"]}
    assert eni in enis()
    world.ec2.delete_nat_gateway(NatGatewayId=nat)
    assert eni not in enis()
    (address,) = world.ec2.describe_addresses(AllocationIds=[eip])["Addresses"]
    assert not address.get("AssociationId") and not address.get("NetworkInterfaceId")
    world.ec2.release_address(AllocationId=eip)


def test_network_load_balancer_scheme_and_arn(world):
    elbv2 = world.emu.client("elbv2")
    nlb = elbv2.create_load_balancer(Name="proxies", Subnets=[world.subnet], Type="network", Tags=[{"Key": "Project", "Value": "haproxy-asg"}])["LoadBalancers"][0]
    arn = nlb["LoadBalancerArn"]
    assert ":loadbalancer/net/proxies/" in arn and nlb["Scheme"] == "internet-facing"
    assert elbv2.describe_load_balancers(Names=["proxies"])["LoadBalancers"][0]["LoadBalancerArn"] == arn
    assert elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"] == [{"Key": "Project", "Value": "haproxy-asg"}]
    vpc = world.ec2.describe_subnets(SubnetIds=[world.subnet])["Subnets"][0]["VpcId"]
    tg = elbv2.create_target_group(Name="proxies-80", Protocol="TCP", Port=80, VpcId=vpc, TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(LoadBalancerArn=arn, Protocol="TCP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    assert ":listener/net/proxies/" in listener["Listeners"][0]["ListenerArn"]
    alb = elbv2.create_load_balancer(Name="web", Subnets=[world.subnet], Scheme="internal")["LoadBalancers"][0]
    assert ":loadbalancer/app/web/" in alb["LoadBalancerArn"] and alb["Scheme"] == "internal"
    elbv2.delete_load_balancer(LoadBalancerArn=arn)
    assert [lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]] == ["web"]


def test_classic_load_balancer_zone_and_connection_draining(emu):
    elb = emu.client("elb")
    elb.create_load_balancer(
        LoadBalancerName="proxies",
        Listeners=[{"Protocol": "tcp", "LoadBalancerPort": 80, "InstancePort": 80}],
        AvailabilityZones=["us-east-1a"],
    )
    (lb,) = elb.describe_load_balancers(LoadBalancerNames=["proxies"])["LoadBalancerDescriptions"]
    assert lb["CanonicalHostedZoneNameID"] == "Z3DZXE0EXAMPLE", "an alias record needs it"
    draining = lambda: elb.describe_load_balancer_attributes(LoadBalancerName="proxies")["LoadBalancerAttributes"]["ConnectionDraining"]
    # The provider sets the timeout (with Enabled true), then Enabled alone.
    elb.modify_load_balancer_attributes(LoadBalancerName="proxies", LoadBalancerAttributes={"ConnectionDraining": {"Enabled": True, "Timeout": 60}})
    assert draining() == {"Enabled": True, "Timeout": 60}
    elb.modify_load_balancer_attributes(LoadBalancerName="proxies", LoadBalancerAttributes={"ConnectionDraining": {"Enabled": True}})
    assert draining() == {"Enabled": True, "Timeout": 60}, "Enabled alone keeps the timeout"


def test_tags_read_from_the_table_answer_as_describe_tags(world):
    # speed.py reads an EC2 resource's tags straight from moto's tag table instead of
    # filtering every tag of every resource: filters and tag sets must not change.
    ec2 = world.ec2
    ids = [
        i["InstanceId"]
        for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, SubnetId=world.subnet)["Instances"]
    ]
    ec2.create_tags(Resources=ids[:2], Tags=[{"Key": "role", "Value": "proxy"}, {"Key": "Name", "Value": "p"}])
    ec2.create_tags(Resources=[ids[2]], Tags=[{"Key": "role", "Value": "backend"}])
    ec2.create_tags(Resources=[world.subnet], Tags=[{"Key": "role", "Value": "proxy"}])
    ec2.terminate_instances(InstanceIds=[ids[1]])
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:role", "Values": ["proxy"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    got = {i["InstanceId"]: i for r in found["Reservations"] for i in r["Instances"]}
    assert sorted(got) == [ids[0]]
    tags = {(t["Key"], t["Value"]) for t in got[ids[0]]["Tags"]}
    assert tags == {("role", "proxy"), ("Name", "p")}
    described = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [ids[0]]}])["Tags"]
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in described} == {
        ("role", "proxy", "instance"),
        ("Name", "p", "instance"),
    }
    keyed = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["role"]}])
    assert sorted(i["InstanceId"] for r in keyed["Reservations"] for i in r["Instances"]) == sorted(ids)
    untagged = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=world.subnet)
    only = untagged["Instances"][0]["InstanceId"]
    plain = ec2.describe_instances(InstanceIds=[only])["Reservations"][0]["Instances"][0]
    assert plain.get("Tags", []) == []


def _key_paths(value: Any, path: str = "") -> set[str]:
    """Every key path of a response (list positions folded), and the scalar values of
    the fields that do not differ from one emulator to another."""
    if isinstance(value, dict):
        out = {path}
        for k, v in value.items():
            if k != "ResponseMetadata":
                out |= _key_paths(v, f"{path}.{k}")
        return out
    if isinstance(value, list):
        return set().union({path + "[]"}, *(_key_paths(v, path + "[]") for v in value))
    stable = ("InstanceType", "ImageId", "Name", "Key", "Value", "LifecycleState", "HealthStatus", "Code")
    generated = isinstance(value, str) and re.fullmatch(r"[a-z]+-[0-9a-f]{8,}", value)
    return {f"{path}={value}" if path.rsplit(".", 1)[-1] in stable and not generated else path}


def test_memoized_serializer_answers_as_moto_does(world):
    # speed.py remembers, per shape, member and class, which attribute names a response
    # member is read from: a group and its instances must serialize with every field
    # (and the same values) as moto itself answers in-process, unpatched.
    from moto import mock_aws

    def scenario(ec2: Any, asg: Any) -> tuple[set[str], set[str]]:
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        ec2.create_launch_template(
            LaunchTemplateName="memo-lt",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )
        asg.create_auto_scaling_group(
            AutoScalingGroupName="memo",
            MinSize=0,
            MaxSize=4,
            DesiredCapacity=2,
            LaunchTemplate={"LaunchTemplateName": "memo-lt"},
            VPCZoneIdentifier=subnet,
            Tags=[{"Key": "haproxy:pool", "Value": "web", "PropagateAtLaunch": True}],
        )
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["memo"])
        ids = [i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"]]
        ec2.create_tags(Resources=ids[:1], Tags=[{"Key": "Name", "Value": "one"}])
        instances = ec2.describe_instances(InstanceIds=ids)
        return _key_paths(group), _key_paths(instances)

    emulated = scenario(world.ec2, world.asg)
    with mock_aws():
        kw = dict(region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        plain = scenario(boto3.client("ec2", **kw), boto3.client("autoscaling", **kw))
    assert emulated[0] == plain[0], emulated[0] ^ plain[0]
    assert emulated[1] == plain[1], emulated[1] ^ plain[1]
    assert ".Reservations[].Instances[].Tags[].Value=one" in emulated[1]
