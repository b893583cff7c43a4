"""The self-test's harness: one emulator (tests/emulator/server.py) for the whole session,
on a free loopback port, reset before each test; boto3 clients; a loopback VPC world.

Every wait is bounded by a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


# --------------------------------------------------------------------------- harness


def wait_until(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll fn until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}; last={last!r}")


class Emulator:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=60)
        if not line or not line[0].startswith("emulator ready on http://127.0.0.1:"):
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line!r} {self.proc.stderr.read()[-3000:]}")
        self.url = line[0].split(" on ", 1)[1].strip()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def client(self, service: str, config: Config | None = None) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="session")
def emulator():
    emu = Emulator()
    yield emu
    assert emu.stop() == 0, "server must exit cleanly on SIGTERM"


@pytest.fixture
def emu(emulator):
    emulator.control("POST", "/moto-ext/reset")
    return emulator


class World:
    """A VPC on 127.0.0.0/16 so instances get loopback private addresses."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.ec2 = emu.client("ec2")
        self.asg = emu.client("autoscaling")
        vpc = self.ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.1.0/24")["Subnet"]
        self.subnet, self.zone = subnet["SubnetId"], subnet["AvailabilityZone"]
        self.ec2.create_launch_template(
            LaunchTemplateName="backend-lt",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )

    def group(self, name: str = "web", desired: int = 0, hooks: list[dict] | None = None) -> str:
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=desired,
            LaunchTemplate={"LaunchTemplateName": "backend-lt"},
            VPCZoneIdentifier=self.subnet,
            LifecycleHookSpecificationList=hooks or [],
        )
        return name

    def hook(self, group: str, name: str, transition: str, timeout: int = 300, default: str = "ABANDON") -> None:
        self.asg.put_lifecycle_hook(
            AutoScalingGroupName=group,
            LifecycleHookName=name,
            LifecycleTransition=transition,
            HeartbeatTimeout=timeout,
            DefaultResult=default,
            NotificationMetadata=f"meta-{name}",
        )

    def members(self, group: str) -> list[tuple[str, str]]:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        return [(i["InstanceId"], i["LifecycleState"]) for i in g["Instances"]]

    def states(self, group: str) -> dict[str, str]:
        return dict(self.members(group))

    def ec2_state(self, instance_id: str) -> str:
        r = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return r[0]["Instances"][0]["State"]["Name"]

    def private_ip(self, instance_id: str) -> str:
        r = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return r[0]["Instances"][0]["PrivateIpAddress"]

    def pending(self, instance_id: str | None = None) -> list[dict]:
        return [
            r
            for r in self.emu.control("GET", "/moto-ext/lifecycle")
            if r["result"] is None and (instance_id is None or r["instance"] == instance_id)
        ]

    def complete(self, group: str, hook: str, result: str, token: str | None = None, instance: str | None = None) -> None:
        kwargs: dict[str, Any] = dict(AutoScalingGroupName=group, LifecycleHookName=hook, LifecycleActionResult=result)
        if token:
            kwargs["LifecycleActionToken"] = token
        if instance:
            kwargs["InstanceId"] = instance
        self.asg.complete_lifecycle_action(**kwargs)


@pytest.fixture
def world(emu):
    return World(emu)


