"""Times the emulator's hot AWS calls at the scale of a 100-proxy benchmark.

    ~/.cache/haproxy-asg/venv/bin/python tests/emulator/bench_calls.py [--rounds 50] [--json FILE]
        [--only ec2|ssm|sqs|dynamodb ...] [--server PATH]

(about a minute at 50 rounds; the DynamoDB ledger grows by 100 items a round).

Starts tests/emulator/server.py on a free loopback port (as the self-test's harness,
conftest.py, does), builds a world of 102 running instances (100 in an Auto Scaling group
tagged as the reactor's proxies, 2 outside it, each with tags), then times, over
``--rounds`` calls each (bounded loops, loopback only, nothing else is contacted):

- DescribeInstances as the reactor and discovery send it: by the 102 instance ids
  (infra/src/aws/discovery.rs ``describe_ids``), by the group's 100 ids with a
  ``tag:Role`` filter (functions/reactor/src/dispatch/ssm.rs ``hosts``), and by an
  ``instance-id`` filter (discovery's fallback ``describe_filtered``);
- DescribeAutoScalingGroups by name (ssm.rs ``in_service``) and by ``tag-key`` filter
  (discovery ``tagged_groups``);
- SendCommand to the 100 proxies, two calls of 50 (the API's limit, ssm.rs
  ``SSM_INSTANCE_BATCH``), each invocation forwarded to one stand-in HTTP server on
  loopback (``{"forward": ...}``, the way benchmarks play 100 hosts), plus the time until
  the stand-in got all 100 invocations and until both commands ended;
- SQS SendMessage, ReceiveMessage (10), DeleteMessageBatch (10);
- DynamoDB TransactWriteItems (100 conditional Puts, ledger/dynamo.rs ``put_many``) and
  BatchGetItem (100 keys, consistent).

Prints p50/p99 (nearest rank) per call, in milliseconds: "server" is how long the emulator
held the request (its call log, ``end - time``), "client" the boto3 call's wall time
(including botocore's parsing of the answer, which the Rust SDK does much faster), and
"cpu/round" the emulator process's CPU time per round (mean, from /proc/PID/stat; 10 ms
ticks), which depends much less than wall times on what else the machine runs.

``--server PATH`` times another emulator, e.g. the one before a change:

    git archive HEAD~1 tests/emulator | tar -x -C /tmp/before
    .../python tests/emulator/bench_calls.py --server /tmp/before/tests/emulator/server.py
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import conftest  # noqa: E402  (the self-test's harness)
from conftest import Emulator, wait_until  # noqa: E402

GROUP = "proxies"
RUNNING = ("Pending", "InProgress", "Delayed")
PROXIES = 100
TAGS = [("Role", "proxy"), ("haproxy:pool", "web"), ("Name", "haproxy-asg-proxy")]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class StandIn:
    """One HTTP server on loopback answering every forwarded invocation with success."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()
        bench = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                raw = b'{"code": 0, "stdout": "ACCEPTED\\n", "stderr": ""}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                with bench.cond:
                    bench.count += 1
                    bench.cond.notify_all()

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # 100 hosts connect at once (the default backlog is 5)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/ssm"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= count, timeout=timeout):
                raise AssertionError(f"stand-in got {self.count} invocations, not {count}, in {timeout}s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build_world(emu: Emulator) -> dict[str, Any]:
    """102 running instances with tags: 100 in GROUP (InService), 2 outside it."""
    ec2, asg = emu.client("ec2"), emu.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName="proxy-lt",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        MinSize=0,
        MaxSize=PROXIES,
        DesiredCapacity=PROXIES,
        LaunchTemplate={"LaunchTemplateName": "proxy-lt"},
        VPCZoneIdentifier=subnet,
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in TAGS],
    )
    others = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=2,
        MaxCount=2,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Role", "Value": "backend"}]}],
    )["Instances"]

    def in_service() -> list[str]:
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        ids = [i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"]
        return ids if len(ids) == PROXIES else []

    members = sorted(wait_until(in_service, timeout=60, what="100 proxies InService"))
    return {"members": members, "all": sorted(members + [i["InstanceId"] for i in others])}


def cpu_ms(pid: int) -> float:
    """CPU time the process used so far (user + system, all threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def timed(emu: Emulator, action: str, rounds: int, call: Callable[[int], Any]) -> dict[str, Any]:
    """Runs call(round) `rounds` times; client times, the server times of `action`, and the
    emulator's CPU time per call (mean: with other work on the machine, wall times say
    more about the machine than about the emulator; CPU time much less)."""
    emu.control("POST", "/moto-ext/calls/reset")
    client: list[float] = []
    cpu = cpu_ms(emu.proc.pid)
    for n in range(rounds):
        start = time.perf_counter()
        call(n)
        client.append((time.perf_counter() - start) * 1000)
    cpu = cpu_ms(emu.proc.pid) - cpu
    log = emu.control("GET", "/moto-ext/calls")
    server = [(c["end"] - c["time"]) * 1000 for c in log if c["action"] == action]
    return {"client": client, "server": server, "cpu": cpu / rounds}


def bench_ec2_asg(emu: Emulator, world: dict[str, Any], rounds: int) -> dict[str, dict[str, Any]]:
    ec2, asg = emu.client("ec2"), emu.client("autoscaling")
    every, members = world["all"], world["members"]
    role = [{"Name": "tag:Role", "Values": ["proxy"]}]
    by_id_filter = [{"Name": "instance-id", "Values": every}]
    pool_tag = [{"Name": "tag-key", "Values": ["haproxy:pool"]}]

    def describe(**kwargs: Any) -> Callable[[int], None]:
        def call(_: int) -> None:
            found = [i for r in ec2.describe_instances(**kwargs)["Reservations"] for i in r["Instances"]]
            assert len(found) in (len(every), len(members)), len(found)

        return call

    return {
        "DescribeInstances ids (102)": timed(emu, "DescribeInstances", rounds, describe(InstanceIds=every)),
        "DescribeInstances ids+tag (100)": timed(
            emu, "DescribeInstances", rounds, describe(InstanceIds=members, Filters=role)
        ),
        "DescribeInstances instance-id filter (102)": timed(
            emu, "DescribeInstances", rounds, describe(Filters=by_id_filter)
        ),
        "DescribeAutoScalingGroups name": timed(
            emu,
            "DescribeAutoScalingGroups",
            rounds,
            lambda _: asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP]),
        ),
        "DescribeAutoScalingGroups tag-key": timed(
            emu, "DescribeAutoScalingGroups", rounds, lambda _: asg.describe_auto_scaling_groups(Filters=pool_tag)
        ),
    }


def bench_ssm(emu: Emulator, world: dict[str, Any], rounds: int) -> dict[str, dict[str, Any]]:
    """SendCommand x2 (50 ids each) per round; then waits for the stand-in and the end."""
    ssm = emu.client("ssm")
    stand_in = StandIn()
    emu.control("POST", "/moto-ext/ssm/hosts", {"*": {"forward": stand_in.url}})
    change = base64.b64encode(json.dumps({"generation": 1, "pools": ["x" * 1500]}).encode()).decode()
    members = world["members"]
    fanout: list[float] = []
    done: list[float] = []

    def ended(cid: str) -> str | None:
        status = ssm.list_commands(CommandId=cid)["Commands"][0]["Status"]
        return None if status in RUNNING else status

    def send(n: int) -> None:
        start = time.perf_counter()
        ids = [
            ssm.send_command(
                InstanceIds=members[i : i + 50],
                DocumentName="haproxy-asg-apply",
                Parameters={"Change": [change], "Action": ["apply"]},
                TimeoutSeconds=60,
                Comment=f"haproxy-asg change generation {n}",
            )["Command"]["CommandId"]
            for i in (0, 50)
        ]
        stand_in.wait_for((n + 1) * PROXIES)
        fanout.append((time.perf_counter() - start) * 1000)
        for cid in ids:  # ListCommands(CommandId) every 10 ms, at most 30 s
            status = wait_until(lambda: ended(cid), timeout=30, interval=0.01, what=f"command {cid} done")
            assert status == "Success", f"command {cid} ended {status}"
        done.append((time.perf_counter() - start) * 1000)

    try:
        result = timed(emu, "SendCommand", rounds, send)
    finally:
        stand_in.close()
    return {
        "SendCommand (50 ids, forwarded)": {"client": [], "server": result["server"]},
        "SendCommand x2 -> 100 invocations at the stand-in": {"client": fanout, "server": []},
        # CPU of a whole round: 2 SendCommand, 100 forwards ended, the ListCommands polls
        "SendCommand x2 -> both commands Success": {"client": done, "server": [], "cpu": result["cpu"]},
    }


def bench_sqs(emu: Emulator, world: dict[str, Any], rounds: int) -> dict[str, dict[str, Any]]:
    sqs = emu.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    body = json.dumps({"report": "x" * 600})
    received: list[list[dict[str, str]]] = []
    send = timed(emu, "SendMessage", rounds * 10, lambda _: sqs.send_message(QueueUrl=url, MessageBody=body))

    def receive(_: int) -> None:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        received.append([{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(got)])

    receive_t = timed(emu, "ReceiveMessage", rounds, receive)
    delete = timed(
        emu,
        "DeleteMessageBatch",
        rounds,
        lambda n: received[n] and sqs.delete_message_batch(QueueUrl=url, Entries=received[n]),
    )
    return {"SQS SendMessage": send, "SQS ReceiveMessage (10)": receive_t, "SQS DeleteMessageBatch (10)": delete}


def bench_dynamodb(emu: Emulator, world: dict[str, Any], rounds: int) -> dict[str, dict[str, Any]]:
    ddb = emu.client("dynamodb")
    ddb.create_table(
        TableName="ledger",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def item(n: int, k: int) -> dict[str, Any]:
        return {"id": {"S": f"web#i-{n:04d}{k:03d}#launch"}, "open": {"S": "1"}, "version": {"N": "1"}}

    def write(n: int) -> None:
        puts = [
            {"Put": {"TableName": "ledger", "Item": item(n, k), "ConditionExpression": "attribute_not_exists(id)"}}
            for k in range(100)
        ]
        ddb.transact_write_items(TransactItems=puts)

    def read(n: int) -> None:
        keys = [{"id": item(n, k)["id"]} for k in range(100)]
        got = ddb.batch_get_item(RequestItems={"ledger": {"Keys": keys, "ConsistentRead": True}})
        assert len(got["Responses"]["ledger"]) == 100

    return {
        "DynamoDB TransactWriteItems (100 Puts)": timed(emu, "TransactWriteItems", rounds, write),
        "DynamoDB BatchGetItem (100 keys)": timed(emu, "BatchGetItem", rounds, read),
    }


SECTIONS: dict[str, Callable[[Emulator, dict[str, Any], int], dict[str, dict[str, Any]]]] = {
    "ec2": bench_ec2_asg,
    "ssm": bench_ssm,
    "sqs": bench_sqs,
    "dynamodb": bench_dynamodb,
}


def report(figures: dict[str, dict[str, Any]]) -> None:
    print(f"{'call':52} {'n':>4} {'server p50':>10} {'p99':>7} {'client p50':>10} {'p99':>7} {'cpu/round':>9}  (ms)")
    for name, f in figures.items():
        cells = []
        for side in ("server", "client"):
            values = f[side]
            cells += [f"{percentile(values, 50):.1f}", f"{percentile(values, 99):.1f}"] if values else ["-", "-"]
        cpu = f"{f['cpu']:.1f}" if "cpu" in f else "-"
        n = len(f["server"] or f["client"])
        print(f"{name:52} {n:>4} {cells[0]:>10} {cells[1]:>7} {cells[2]:>10} {cells[3]:>7} {cpu:>9}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="calls per figure (default 50)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures (ms) as JSON")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="time these sections only (repeatable)")
    parser.add_argument(
        "--server",
        metavar="PATH",
        default=conftest.SERVER,
        help="the emulator's server.py to time (e.g. an earlier commit's, extracted with git archive)",
    )
    args = parser.parse_args()
    conftest.SERVER = os.path.abspath(args.server)
    emu = Emulator()
    figures: dict[str, dict[str, Any]] = {}
    try:
        emu.control("POST", "/moto-ext/reset")
        world = build_world(emu)
        for name in args.only or SECTIONS:
            figures.update(SECTIONS[name](emu, world, args.rounds))
    finally:
        emu.stop()
    report(figures)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
