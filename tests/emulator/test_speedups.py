"""The serializer speed-ups (serialize_speed.py) answer exactly what moto's own serializer
answers, DescribeTags of exact ids (speed.py) what moto's walk answers, and the Run
Command thread pool (workers.py) starts every job at once.

The answers are compared in this process, not through the emulator: moto's server runs
here (``ThreadedMotoServer`` on a free loopback port, moto unpatched except for
serialize_speed), and every response moto serializes is serialized twice, by the fast path
and by moto's own code (``serialize_speed.unpatched``); the test fails on any difference,
byte for byte. A moto upgrade that changes the shapes, the alias providers, the response
transformers or the XML output therefore fails here, not in a benchmark.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

import boto3
import pytest
import xmltodict

from emulator import serialize_speed, speed, workers

from .conftest import wait_until


class Twice:
    """Wraps ActionResult.execute_result: each result serialized by both paths, kept."""

    def __init__(self) -> None:
        from moto.core.responses import ActionResult

        self.pairs: list[tuple[str, Any, Any]] = []
        self.cls, self.original = ActionResult, ActionResult.execute_result
        twice = self

        def execute_result(result: Any, context: Any) -> Any:
            fast = twice.original(result, context)
            with serialize_speed.unpatched():
                slow = twice.original(result, context)
            # (status, headers, body); moto adds headers to the answer's dict afterwards
            twice.pairs.append((str(context.operation_model.name), repr(fast), repr(slow)))
            return fast

        ActionResult.execute_result = execute_result  # type: ignore[method-assign]

    def restore(self) -> None:
        self.cls.execute_result = self.original  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, Any, Any]]:
        pairs, self.pairs = self.pairs, []
        return pairs


@pytest.fixture(scope="module")
def moto_here() -> Iterator[tuple[Any, Twice]]:
    """moto's server in this process (loopback, free port) with the fast path installed."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    serialize_speed.install()
    from moto.core import serialize

    assert serialize.ResponseSerializer.get_value is serialize_speed.get_value
    twice = Twice()
    host, port = server.get_host_and_port()

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    try:
        yield client, twice
    finally:
        twice.restore()
        serialize_speed.uninstall()
        server.stop()


def assert_same(pairs: list[tuple[str, Any, Any]], expected: set[str]) -> None:
    """Every answer byte for byte the same; and the operations expected were all compared."""
    seen = {name for name, _, _ in pairs}
    assert expected <= seen, f"not compared: {expected - seen}"
    for name, fast, slow in pairs:
        assert fast == slow, f"{name}: the fast serializer's answer differs from moto's"


def _ec2_world(client: Any) -> dict[str, Any]:
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="proxies", Description="p & <q>", VpcId=vpc)["GroupId"]
    tags = [{"Key": "Role", "Value": "proxy"}, {"Key": "haproxy:pool", "Value": 'web "a" & <b>'}]
    run = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=6,
        MaxCount=6,
        SubnetId=subnet,
        SecurityGroupIds=[sg],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    bare = ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]  # no tags, no VPC
    ids = [i["InstanceId"] for i in run + bare]
    ec2.stop_instances(InstanceIds=ids[:1])
    ec2.terminate_instances(InstanceIds=ids[1:2])
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[sg], Description="second")["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=ids[2], DeviceIndex=1)
    ec2.create_tags(Resources=[ids[3]], Tags=[{"Key": "Empty", "Value": ""}])
    return {"ec2": ec2, "ids": ids, "vpc": vpc, "subnet": subnet}


def test_ec2_answers_are_moto_s_byte_for_byte(moto_here):
    client, twice = moto_here
    w = _ec2_world(client)
    ec2, ids = w["ec2"], w["ids"]
    twice.take()
    serialize_speed._names.clear()
    listed = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert sum(len(r["Instances"]) for r in listed) == len(ids)
    states = {i["State"]["Name"] for r in listed for i in r["Instances"]}
    assert {"running", "stopped", "terminated"} <= states
    ec2.describe_instances()
    ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["proxy"]}])
    ec2.describe_instances(InstanceIds=ids[2:], Filters=[{"Name": "tag:Role", "Values": ["proxy"]}])
    ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])
    ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": ["none"]}])["Reservations"] == []
    ec2.describe_instance_status(IncludeAllInstances=True)
    ec2.describe_network_interfaces()
    ec2.describe_tags()
    ec2.describe_security_groups()
    ec2.describe_subnets()
    ec2.describe_vpcs()
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=w["subnet"])
    peer = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.create_vpc_peering_connection(VpcId=w["vpc"], PeerVpcId=peer)  # a transformer moto replaces
    with pytest.raises(Exception):
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])  # the error answer
    assert_same(
        twice.take(),
        {
            "DescribeInstances",
            "DescribeInstanceStatus",
            "DescribeNetworkInterfaces",
            "DescribeTags",
            "RunInstances",
            "CreateVpcPeeringConnection",
        },
    )
    assert len(serialize_speed._names) > 100  # the fast path served them (its memo filled)


def test_auto_scaling_ssm_sqs_dynamodb_answers_are_moto_s(moto_here):
    client, twice = moto_here
    asg, ssm, sqs, ddb = client("autoscaling"), client("ssm"), client("sqs"), client("dynamodb")
    client("ec2").create_launch_template(
        LaunchTemplateName="web-lt", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="web",
        MinSize=0,
        MaxSize=5,
        DesiredCapacity=3,
        LaunchTemplate={"LaunchTemplateName": "web-lt"},
        AvailabilityZones=["us-east-1a"],
        Tags=[{"Key": "haproxy:pool", "Value": "web", "PropagateAtLaunch": True}],
    )
    asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
    asg.describe_auto_scaling_groups(Filters=[{"Name": "tag-key", "Values": ["haproxy:pool"]}])
    asg.describe_auto_scaling_instances()
    ids = [i["InstanceId"] for i in asg.describe_auto_scaling_instances()["AutoScalingInstances"]]
    command = ssm.send_command(InstanceIds=ids, DocumentName="AWS-RunShellScript", Parameters={"commands": ["x"]})
    ssm.list_commands(CommandId=command["Command"]["CommandId"])
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"a": "<&>"}')
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": got[0]["ReceiptHandle"]}])
    ddb.create_table(
        TableName="ledger",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "ledger", "Item": {"id": {"S": "a"}}}}])
    ddb.batch_get_item(RequestItems={"ledger": {"Keys": [{"id": {"S": "a"}}]}})
    assert_same(
        twice.take(),
        {"DescribeAutoScalingGroups", "DescribeAutoScalingInstances", "SendCommand", "ListCommands", "ReceiveMessage"},
    )


XML_CASES: list[Any] = [
    {"R": {"a": "x & y < z > w", "b": "", "c": None, "d": 0, "e": True, "f": False, "g": 1.5}},
    {"R": {"@xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/", "item": [{"k": "1"}, {"k": "2"}, "", None]}},
    {"R": {"list": [], "nested": [[1, 2], ("a", "b")], "t": ("x", {"y": "z"})}},
    {"R": {"#text": "text & more", "@id": 'q"uo\'te\n\t', "child": {"@a": None, "@b": 3}}},
    {"R": {"u": "ünïcödé ✓", "bytes": b"raw", "empty": {}, "deep": {"a": {"b": {"c": ""}}}}},
    {"R": {"#text": None, "x": {"#text": ""}}},
]
# What the fast path leaves to xmltodict (a generator it must not consume, a comment, an
# @xmlns map); made afresh for each rendering.
LEFT_TO_XMLTODICT: list[Any] = [
    lambda: {"R": {"xs": (v for v in ["generator"])}},
    lambda: {"R": {"#comment": "a note", "a": "1"}},
    lambda: {"R": {"@xmlns": {"p": "urn:p"}, "a": "1"}},
]
OPTIONS = dict(short_empty_elements=True, pretty=False)  # what moto's serializers pass


@pytest.mark.parametrize("full_document", [True, False])
@pytest.mark.parametrize("case", range(len(XML_CASES)))
def test_xml_fast_path_writes_what_xmltodict_writes(case, full_document):
    theirs = xmltodict.unparse(XML_CASES[case], full_document=full_document, **OPTIONS)
    assert serialize_speed._unparse_fast(XML_CASES[case], full_document) == theirs
    assert serialize_speed.unparse(XML_CASES[case], full_document=full_document, **OPTIONS) == theirs


@pytest.mark.parametrize("case", range(len(LEFT_TO_XMLTODICT)))
def test_xml_the_fast_path_does_not_take_is_xmltodict_s(case):
    make = LEFT_TO_XMLTODICT[case]
    with pytest.raises(serialize_speed._Unsupported):
        serialize_speed._unparse_fast(make(), True)
    assert serialize_speed.unparse(make(), **OPTIONS) == xmltodict.unparse(make(), **OPTIONS)


@pytest.mark.parametrize("body", [{"a": "1", "b": "2"}, {}, {"bad name": "1"}, {"R": {"a/b": "1"}}, {"R": [1, 2]}])
def test_xml_errors_are_xmltodict_s(body):
    options = dict(full_document=True, short_empty_elements=True)
    with pytest.raises(ValueError) as theirs:
        xmltodict.unparse(body, **options)
    with pytest.raises(ValueError) as ours:
        serialize_speed.unparse(body, **options)
    assert str(ours.value) == str(theirs.value)


def test_describe_tags_of_exact_ids_answers_what_moto_answers():
    from moto.ec2.models.tags import TagBackend

    original = getattr(TagBackend.describe_tags, "moto_original", TagBackend.describe_tags)
    table: dict[str, dict[str, str]] = {}
    for n in range(40):
        table[f"i-{n:017x}"] = {"Role": "proxy" if n % 3 else "backend", "Name": f"host {n}"}
    table["i-1"] = {"Role": "proxy"}  # a prefix of others: exact ids only
    table["subnet-0abc"] = {"Role": "proxy"}
    table["i-00000000000000005"] = {}
    backend = speed._TagView(table, TagBackend.VALID_TAG_FILTERS)
    ids = [f"i-{n:017x}" for n in range(0, 40, 2)] + ["i-1", "i-unknown", "subnet-0abc"]
    cases = [
        {"resource-id": ids},
        {"resource-id": ids, "key": ["Role"], "value": ["proxy"]},
        {"resource-id": ids, "key": ["Ro*"]},
        {"resource-id": ids, "resource-type": ["instance"]},
        {"resource-id": ["i-1"]},
        {"resource-id": ["i-1*"]},  # a pattern: moto's own walk
        {"key": ["Role"]},
        None,
    ]
    for filters in cases:
        got = speed.tags_of_ids(original, backend, filters)
        assert got == original(backend, filters), filters
    assert len(speed.tags_of_ids(original, backend, {"resource-id": ["i-1"]})) == 1


def _pool_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "moto-ext-ssm")


def test_pool_starts_every_job_at_once_reuses_idle_threads_and_ends_idle_ones(monkeypatch):
    release, started, lock = threading.Event(), [], threading.Lock()

    def job(n: int) -> None:
        with lock:
            started.append(n)
        release.wait(10)

    for n in range(20):  # all 20 run together: none waits for another to end
        workers.submit(job, n)
    wait_until(lambda: len(started) == 20, timeout=10, what="20 jobs started")
    release.set()
    wait_until(lambda: workers.idle() >= 20, timeout=10, what="20 idle threads")
    threads = _pool_threads()
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(10)
    assert _pool_threads() == threads  # an idle thread took it: none started
    monkeypatch.setattr(workers.RUN_COMMAND, "idle_s", 0.05)  # for the waits begun from now on
    for _ in range(5):
        workers.submit(lambda: None)
    wait_until(lambda: _pool_threads() < threads, timeout=10, what="an idle thread ended")
    done.clear()
    workers.submit(done.set)  # the pool still serves
    assert done.wait(10)


# --------------------------------------------------------------------------- DynamoDB rollback
# Through the emulator (dynamodb_rollback.py): a transaction that fails leaves every table
# as it was, item for item and in Scan order, whether the table got moto's full copy (range
# key) or the copy that shares the items the transaction does not name (hash key only).


def _table(ddb: Any, name: str, range_key: bool) -> None:
    schema = [{"AttributeName": "id", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "id", "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": "at", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "at", "AttributeType": "N"})
    ddb.create_table(TableName=name, KeySchema=schema, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST")


def _key(n: int, range_key: bool) -> dict[str, Any]:
    return {"id": {"S": f"item-{n:02d}"}, **({"at": {"N": str(n % 3)}} if range_key else {})}


def _operations(table: str, range_key: bool, fail: bool) -> list[dict[str, Any]]:
    """Update 3, Delete 5, overwrite 7, add 40, and check 9 (failing if asked)."""
    check = "attribute_not_exists(id)" if fail else "attribute_exists(id)"
    return [
        {
            "Update": {
                "TableName": table,
                "Key": _key(3, range_key),
                "UpdateExpression": "SET v = :v, tags = list_append(tags, :t)",
                "ExpressionAttributeValues": {":v": {"S": "changed"}, ":t": {"L": [{"S": "x"}]}},
            }
        },
        {"Delete": {"TableName": table, "Key": _key(5, range_key)}},
        {"Put": {"TableName": table, "Item": {**_key(7, range_key), "v": {"S": "overwritten"}}}},
        {"Put": {"TableName": table, "Item": {**_key(40, range_key), "v": {"S": "new"}}}},
        {"ConditionCheck": {"TableName": table, "Key": _key(9, range_key), "ConditionExpression": check}},
    ]


@pytest.mark.parametrize("range_key", [False, True])
def test_a_failed_transaction_leaves_the_table_as_it_was(emu, range_key):
    ddb = emu.client("dynamodb")
    _table(ddb, "ledger", range_key)
    for n in (12, 3, 30, 5, 7, 1, 9, 20):  # an order of their own
        item = {**_key(n, range_key), "v": {"S": f"v{n}"}, "tags": {"L": [{"S": "a"}]}, "m": {"M": {"k": {"N": "1"}}}}
        ddb.put_item(TableName="ledger", Item=item)
    before = ddb.scan(TableName="ledger")["Items"]
    for _ in range(2):
        with pytest.raises(ddb.exceptions.TransactionCanceledException) as err:
            ddb.transact_write_items(TransactItems=_operations("ledger", range_key, fail=True))
        reasons = [r["Code"] for r in err.value.response["CancellationReasons"]]
        assert reasons == ["None", "None", "None", "None", "ConditionalCheckFailed"]
        assert ddb.scan(TableName="ledger")["Items"] == before  # contents and order
    ddb.transact_write_items(TransactItems=_operations("ledger", range_key, fail=False))
    after = {i["id"]["S"]: i for i in ddb.scan(TableName="ledger")["Items"]}
    assert "item-05" not in after and after["item-40"]["v"] == {"S": "new"}
    assert after["item-03"]["v"] == {"S": "changed"} and after["item-03"]["tags"]["L"] == [{"S": "a"}, {"S": "x"}]
    assert after["item-07"] == {**_key(7, range_key), "v": {"S": "overwritten"}}
    settled = ddb.scan(TableName="ledger")["Items"]
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=_operations("ledger", range_key, fail=True)[2:])
    assert ddb.scan(TableName="ledger")["Items"] == settled


def test_conditions_are_evaluated_with_each_request_s_names_and_values(emu):
    """speed.py keeps parsed condition expressions: per expression, names and values."""
    ddb = emu.client("dynamodb")
    _table(ddb, "ledger", False)
    failed = ddb.exceptions.ConditionalCheckFailedException

    def put(version: int, expected: int, name: str = "version") -> None:
        ddb.put_item(
            TableName="ledger",
            Item={"id": {"S": "a"}, "version": {"N": str(version)}, "other": {"N": "7"}},
            ConditionExpression="attribute_not_exists(id) OR #v = :v",
            ExpressionAttributeNames={"#v": name},
            ExpressionAttributeValues={":v": {"N": str(expected)}},
        )

    put(1, 0)  # no item yet
    put(2, 1)
    with pytest.raises(failed):
        put(3, 1)  # the same expression, names and values as before: now false
    put(3, 2)
    with pytest.raises(failed):
        put(4, 3, name="other")  # the same expression and values, other names
    put(4, 7, name="other")
    assert ddb.get_item(TableName="ledger", Key={"id": {"S": "a"}})["Item"]["version"] == {"N": "4"}


def test_a_queue_s_visible_messages_and_receipt_handles_are_moto_s():
    import time

    from moto.sqs.models import sqs_backends

    backend = sqs_backends["123456789012"]["eu-west-3"]
    backend.create_queue("walked", VisibilityTimeout="30")
    for n in range(12):
        backend.send_message("walked", f"m{n}", message_attributes={}, delay_seconds=60 if n % 5 == 4 else None)
    received = backend.receive_message("walked", 4, 0, 30, [])
    queue = backend.get_queue("walked")
    # moto's own definition, through its per-message clock reads.
    expected = [m for m in queue._messages if m.visible and not m.delayed]
    assert [m.body for m in speed.visible_messages(queue)] == [m.body for m in expected]
    assert len(expected) == 12 - 2 - len(received), "delayed and in-flight messages are left out"
    for m in received:
        m.change_visibility(0)  # visible again
    time.sleep(0.002)
    expected = [m for m in queue._messages if m.visible and not m.delayed]
    assert [m.body for m in speed.visible_messages(queue)] == [m.body for m in expected]
    handles = {speed.receipt_handle() for _ in range(50)}
    assert len(handles) == 50
    assert all(len(h) == 185 and h.isalpha() and h.islower() and h.isascii() for h in handles)
    backend.delete_queue("walked")
