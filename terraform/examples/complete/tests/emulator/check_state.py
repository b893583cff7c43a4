"""The AWS emulator's side of scripts/check-terraform-apply: what the complete example left
in the emulator, read through boto3 (the emulator's venv), with a clear message per check.

    check_state.py zone-create NAME            prints the new hosted zone's id
    check_state.py zone-delete ZONE_ID
    check_state.py inventory OUT.json          every resource of the types the example creates
    check_state.py wiring STATE.json ZONE_ID RECORD_NAME AGENT_FILE
                                               after apply (STATE.json: terraform show -json)
    check_state.py leftovers BEFORE.json       after destroy: the inventory is BEFORE.json again

Environment: EMULATOR_URL (http://127.0.0.1:PORT), AWS_REGION (the example's region).
Exit status 1 with one line per failed check on stderr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import uuid
from typing import Any, Callable

import boto3
from botocore.config import Config

URL = os.environ["EMULATOR_URL"]
REGION = os.environ.get("AWS_REGION", "us-west-2")
CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=30)


def client(service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=URL,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=CONFIG,
    )


def pages(service: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
    c = client(service)
    if c.can_paginate(operation):
        out: list[Any] = []
        for page in c.get_paginator(operation).paginate(**kwargs):
            out.extend(page.get(key, []))
        return out
    return c.__getattribute__(operation)(**kwargs).get(key, [])


# --------------------------------------------------------------------------- zone


def zone_create(name: str) -> None:
    zone = client("route53").create_hosted_zone(Name=name, CallerReference=str(uuid.uuid4()))
    print(zone["HostedZone"]["Id"].split("/")[-1])


def zone_delete(zone_id: str) -> None:
    r53 = client("route53")
    changes = [
        {"Action": "DELETE", "ResourceRecordSet": record}
        for record in pages("route53", "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id)
        if record["Type"] not in ("SOA", "NS")
    ]
    if changes:
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    r53.delete_hosted_zone(Id=zone_id)


# --------------------------------------------------------------------------- inventory


def inventory() -> dict[str, list[str]]:
    """Ids of every resource of each type the example creates (region and global)."""
    ec2 = "ec2"
    terminated = {
        i["InstanceId"]
        for r in pages(ec2, "describe_instances", "Reservations")
        for i in r["Instances"]
        if i["State"]["Name"] in ("terminated", "shutting-down")
    }
    inv: dict[str, list[str]] = {
        "ec2 vpcs": [v["VpcId"] for v in pages(ec2, "describe_vpcs", "Vpcs")],
        "ec2 subnets": [s["SubnetId"] for s in pages(ec2, "describe_subnets", "Subnets")],
        "ec2 security groups": [g["GroupId"] for g in pages(ec2, "describe_security_groups", "SecurityGroups")],
        "ec2 security group rules": [
            r["SecurityGroupRuleId"] for r in pages(ec2, "describe_security_group_rules", "SecurityGroupRules")
        ],
        "ec2 internet gateways": [g["InternetGatewayId"] for g in pages(ec2, "describe_internet_gateways", "InternetGateways")],
        "ec2 route tables": [t["RouteTableId"] for t in pages(ec2, "describe_route_tables", "RouteTables")],
        "ec2 NAT gateways": [
            g["NatGatewayId"] for g in pages(ec2, "describe_nat_gateways", "NatGateways") if g["State"] not in ("deleted", "deleting")
        ],
        "ec2 elastic IPs": [a["AllocationId"] for a in client(ec2).describe_addresses()["Addresses"]],
        "ec2 VPC endpoints": [
            e["VpcEndpointId"] for e in pages(ec2, "describe_vpc_endpoints", "VpcEndpoints") if e["State"].lower() not in ("deleted", "deleting")
        ],
        # moto keeps a terminated instance's primary interface attached to it (AWS deletes
        # it with the instance): those belong to the instance, counted (out) with it.
        "ec2 network interfaces": [
            n["NetworkInterfaceId"]
            for n in pages(ec2, "describe_network_interfaces", "NetworkInterfaces")
            if n.get("Attachment", {}).get("InstanceId") not in terminated
        ],
        "ec2 launch templates": [t["LaunchTemplateId"] for t in pages(ec2, "describe_launch_templates", "LaunchTemplates")],
        "ec2 instances (not terminated)": [
            i["InstanceId"]
            for r in pages(ec2, "describe_instances", "Reservations")
            for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")
        ],
        "autoscaling groups": [g["AutoScalingGroupName"] for g in pages("autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups")],
        "elbv2 load balancers": [lb["LoadBalancerArn"] for lb in pages("elbv2", "describe_load_balancers", "LoadBalancers")],
        "elbv2 target groups": [tg["TargetGroupArn"] for tg in pages("elbv2", "describe_target_groups", "TargetGroups")],
        "elb load balancers": [lb["LoadBalancerName"] for lb in pages("elb", "describe_load_balancers", "LoadBalancerDescriptions")],
        "s3 buckets": [b["Name"] for b in client("s3").list_buckets().get("Buckets", [])],
        "iam roles": [r["RoleName"] for r in pages("iam", "list_roles", "Roles")],
        "iam instance profiles": [p["InstanceProfileName"] for p in pages("iam", "list_instance_profiles", "InstanceProfiles")],
        "iam customer policies": [p["Arn"] for p in pages("iam", "list_policies", "Policies", Scope="Local")],
        "lambda functions": [f["FunctionName"] for f in pages("lambda", "list_functions", "Functions")],
        "lambda event source mappings": [m["UUID"] for m in pages("lambda", "list_event_source_mappings", "EventSourceMappings")],
        "sqs queues": client("sqs").list_queues().get("QueueUrls", []),
        "dynamodb tables": pages("dynamodb", "list_tables", "TableNames"),
        "ssm documents (own)": [
            d["Name"] for d in pages("ssm", "list_documents", "DocumentIdentifiers", Filters=[{"Key": "Owner", "Values": ["Self"]}])
        ],
        "events rules": [r["Name"] for r in pages("events", "list_rules", "Rules")],
        "cloudwatch alarms": [a["AlarmName"] for a in pages("cloudwatch", "describe_alarms", "MetricAlarms")],
        "cloudwatch dashboards": [d["DashboardName"] for d in pages("cloudwatch", "list_dashboards", "DashboardEntries")],
        "logs groups": [g["logGroupName"] for g in pages("logs", "describe_log_groups", "logGroups")],
        "route53 zones": [z["Id"] for z in pages("route53", "list_hosted_zones", "HostedZones")],
    }
    for zone in pages("route53", "list_hosted_zones", "HostedZones"):
        inv["route53 records"] = inv.get("route53 records", []) + [
            f"{zone['Id']} {r['Name']} {r['Type']}"
            for r in pages("route53", "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone["Id"])
        ]
    return {k: sorted(v) for k, v in inv.items()}


def leftovers(before_path: str) -> list[str]:
    with open(before_path) as f:
        before = json.load(f)
    now = inventory()
    failures = []
    for kind, ids in now.items():
        extra = sorted(set(ids) - set(before.get(kind, [])))
        if extra:
            failures.append(f"left after destroy: {kind}: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    counted = sum(len(ids) for ids in now.values())
    print(f"    inventory after destroy: {len(now)} resource types, {counted} resources, all present before the apply")
    return failures


# --------------------------------------------------------------------------- wiring


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, what: str, fn: Callable[[], Any]) -> None:
        """fn returns None/True when fine, or a string saying what is wrong."""
        try:
            problem = fn()
        except Exception as exc:  # a missing resource answers an API error
            problem = f"{type(exc).__name__}: {exc}"
        if problem in (None, True):
            self.passed += 1
            print(f"    ok: {what}")
        else:
            self.failures.append(f"{what}: {problem}")
            print(f"    FAILED: {what}: {problem}")


def resources(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """address -> attribute values, over the root module and its children."""
    out: dict[str, dict[str, Any]] = {}

    def walk(module: dict[str, Any]) -> None:
        for r in module.get("resources", []):
            out[r["address"]] = r.get("values", {})
        for child in module.get("child_modules", []):
            walk(child)

    walk(state["values"]["root_module"])
    return out


def expect(cond: bool, message: str) -> str | None:
    return None if cond else message


def wiring(state_path: str, zone_id: str, record_name: str, agent_file: str) -> list[str]:
    with open(state_path) as f:
        state = json.load(f)
    res = resources(state)
    outputs = {k: v["value"] for k, v in state["values"].get("outputs", {}).items()}

    def attr(address: str, name: str) -> Any:
        if address not in res:
            raise KeyError(f"{address} is not in the Terraform state")
        return res[address][name]

    c = Checks()
    asg, elbv2, events, lam = client("autoscaling"), client("elbv2"), client("events"), client("lambda")
    ssm, iam, r53, s3 = client("ssm"), client("iam"), client("route53"), client("s3")

    backend = outputs["backend_group_name"]
    proxy_group = outputs["proxy_group_name"]
    function = outputs["reactor_function_name"]
    document = outputs["ssm_document_name"]
    reactor = function  # the reactor module's name: prefix of its rules, hooks, role
    function_arn = attr("module.reactor.aws_lambda_function.this", "arn")
    dlq_arn = attr("module.reactor.aws_sqs_queue.dlq", "arn")
    inbox_arn = attr("module.reactor.aws_sqs_queue.inbox", "arn")
    inbox_url = outputs["reactor_inbox_queue_url"]
    ledger = outputs["reactor_ledger_table_name"]
    proxy_role_name = attr("module.proxy_fleet.aws_iam_role.instance", "name")
    proxy_role_arn = attr("module.proxy_fleet.aws_iam_role.instance", "arn")
    sqs, ddb = client("sqs"), client("dynamodb")

    # --- lifecycle hooks on the backend group
    def hooks() -> str | None:
        found = asg.describe_lifecycle_hooks(AutoScalingGroupName=backend)["LifecycleHooks"]
        by_name = {h["LifecycleHookName"]: h for h in found}
        want = {
            f"{reactor}-launch": "autoscaling:EC2_INSTANCE_LAUNCHING",
            f"{reactor}-terminate": "autoscaling:EC2_INSTANCE_TERMINATING",
        }
        if set(by_name) != set(want):
            return f"hooks {sorted(by_name)} on {backend}, want {sorted(want)}"
        for name, transition in want.items():
            h = by_name[name]
            if h["LifecycleTransition"] != transition:
                return f"{name}: transition {h['LifecycleTransition']}, want {transition}"
            if h["HeartbeatTimeout"] != 720 or h["DefaultResult"] != "ABANDON":
                return f"{name}: heartbeat {h['HeartbeatTimeout']} / default {h['DefaultResult']}, want 720 / ABANDON"
            if h.get("NotificationTargetARN") or h.get("RoleARN"):
                return f"{name}: a notification target ({h.get('NotificationTargetARN')}); the reactor hears hooks through EventBridge only"
        return None

    c.check(f"lifecycle hooks on {backend}: launch + terminate, heartbeat 720 s, default ABANDON, EventBridge only", hooks)

    def proxy_group_no_hooks() -> str | None:
        found = asg.describe_lifecycle_hooks(AutoScalingGroupName=proxy_group)["LifecycleHooks"]
        return expect(not found, f"{proxy_group} has hooks {[h['LifecycleHookName'] for h in found]}")

    c.check(f"no lifecycle hook on the proxy group {proxy_group}", proxy_group_no_hooks)

    # --- EventBridge rules and targets
    rule_keys = ["lifecycle", "results", "spot", "reconcile"]

    def rules() -> str | None:
        names = {r["Name"]: r for r in events.list_rules(NamePrefix=f"{reactor}-")["Rules"]}
        want = {f"{reactor}-{k}" for k in rule_keys}
        if set(names) != want:
            return f"rules {sorted(names)}, want {sorted(want)}"
        pattern = {k: json.loads(names[f"{reactor}-{k}"].get("EventPattern") or "null") for k in rule_keys}
        lifecycle = pattern["lifecycle"]
        if lifecycle["source"] != ["aws.autoscaling"] or backend not in lifecycle["detail"]["AutoScalingGroupName"]:
            return f"lifecycle rule pattern {lifecycle} does not select {backend}'s lifecycle actions"
        if sorted(lifecycle["detail-type"]) != ["EC2 Instance-launch Lifecycle Action", "EC2 Instance-terminate Lifecycle Action"]:
            return f"lifecycle rule detail-type {lifecycle['detail-type']}"
        groups = pattern["results"]["detail"]["AutoScalingGroupName"]
        if backend not in groups or proxy_group not in groups:
            return f"results rule groups {groups}, want {backend} and {proxy_group}"
        results = sorted(pattern["results"]["detail-type"])
        want_results = sorted(f"EC2 Instance {what} {how}" for what in ("Launch", "Terminate", "Detach") for how in ("Successful", "Unsuccessful"))
        if results != want_results:
            return f"results rule detail-type {results}, want {want_results}"
        if pattern["spot"]["source"] != ["aws.ec2"]:
            return f"spot rule pattern {pattern['spot']}"
        schedule = names[f"{reactor}-reconcile"].get("ScheduleExpression")
        if schedule != "rate(5 minutes)":
            return f"reconcile schedule {schedule!r}, want 'rate(5 minutes)'"
        disabled = [n for n, r in names.items() if r.get("State") != "ENABLED"]
        return expect(not disabled, f"rules not ENABLED: {disabled}")

    c.check("EventBridge rules: lifecycle (backend group), results (launch/terminate/detach, + proxy group), spot, reconcile rate(5 minutes); no commands rule", rules)

    def targets() -> str | None:
        for key in rule_keys:
            found = events.list_targets_by_rule(Rule=f"{reactor}-{key}")["Targets"]
            if len(found) != 1:
                return f"rule {key}: {len(found)} targets, want 1"
            t = found[0]
            if t["Id"] != "reactor" or t["Arn"] != inbox_arn:
                return f"rule {key}: target {t['Id']} -> {t['Arn']}, want reactor -> the inbox {inbox_arn}"
            if (t.get("DeadLetterConfig") or {}).get("Arn") != dlq_arn:
                return f"rule {key}: dead-letter queue {t.get('DeadLetterConfig')}, want {dlq_arn}"
            retry = t.get("RetryPolicy") or {}
            if retry.get("MaximumEventAgeInSeconds") != 240 or retry.get("MaximumRetryAttempts") != 185:
                return f"rule {key}: retry policy {retry}, want 240 s / 185 attempts"
        return None

    c.check("EventBridge targets: each rule -> the inbox (not the Lambda), dead letters to the DLQ, retry 240 s / 185", targets)

    try:
        rule_arns = sorted(events.describe_rule(Name=f"{reactor}-{k}")["Arn"] for k in rule_keys)
    except Exception as exc:  # the rules check above says what is missing
        rule_arns = [f"<rules not readable: {type(exc).__name__}>"]

    def permissions() -> str | None:
        try:
            policy = json.loads(lam.get_policy(FunctionName=function)["Policy"])
        except lam.exceptions.ResourceNotFoundException:
            return None  # no resource policy at all
        statements = [s.get("Sid") for s in policy.get("Statement", [])]
        return expect(not statements, f"the function has a resource policy {statements}: nothing invokes it but its event source mapping")

    c.check("Lambda permissions: none (EventBridge no longer invokes the reactor; the inbox's event source mapping does)", permissions)

    # --- the inbox, its policy and redrive; the dead-letter queue's policy
    def as_list(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    def queue_policy(url: str) -> dict[str, dict[str, Any]]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]
        return {s["Sid"]: s for s in json.loads(attrs.get("Policy") or "{}").get("Statement", [])}

    def inbox() -> str | None:
        if not inbox_url.rstrip("/").endswith(f"/{reactor}-inbox"):
            return f"inbox URL {inbox_url}, want .../{reactor}-inbox"
        attrs = sqs.get_queue_attributes(QueueUrl=inbox_url, AttributeNames=["All"])["Attributes"]
        if attrs.get("QueueArn") != inbox_arn:
            return f"QueueArn {attrs.get('QueueArn')}, want {inbox_arn}"
        if attrs.get("VisibilityTimeout") != "360":
            return f"VisibilityTimeout {attrs.get('VisibilityTimeout')}, want 360 (6 x the 60 s Lambda timeout)"
        if str(attrs.get("SqsManagedSseEnabled")).lower() != "true":
            return f"SqsManagedSseEnabled {attrs.get('SqsManagedSseEnabled')}, want true"
        redrive = json.loads(attrs.get("RedrivePolicy") or "{}")
        if redrive.get("deadLetterTargetArn") != dlq_arn or int(redrive.get("maxReceiveCount", 0)) != 5:
            return f"RedrivePolicy {redrive}, want {dlq_arn} after 5 receives"
        if attrs.get("FifoQueue") == "true":
            return "the inbox is a FIFO queue, want a standard one"
        return None

    c.check(f"inbox {reactor}-inbox: standard, SSE-SQS, visibility 360 s, redrive to the DLQ after 5 receives", inbox)

    def inbox_policy() -> str | None:
        sids = queue_policy(inbox_url)
        if set(sids) != {"EventBridgeRules", "ProxyReports", "DenyInsecureTransport"}:
            return f"statements {sorted(sids)}, want EventBridgeRules, ProxyReports, DenyInsecureTransport"
        rules_st, proxy_st, tls_st = sids["EventBridgeRules"], sids["ProxyReports"], sids["DenyInsecureTransport"]
        if (rules_st.get("Principal") or {}).get("Service") != "events.amazonaws.com" or as_list(rules_st["Action"]) != ["sqs:SendMessage"]:
            return f"EventBridgeRules {rules_st}"
        sources = sorted(as_list((rules_st.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn", [])))
        if sources != rule_arns:
            return f"EventBridgeRules aws:SourceArn {sources}, want the rules {rule_arns}"
        if as_list((proxy_st.get("Principal") or {}).get("AWS")) != [proxy_role_arn] or as_list(proxy_st["Action"]) != ["sqs:SendMessage"] or proxy_st.get("Condition"):
            return f"ProxyReports {proxy_st}, want sqs:SendMessage for {proxy_role_arn}"
        if tls_st.get("Effect") != "Deny" or (tls_st.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport") != "false":
            return f"DenyInsecureTransport {tls_st}"
        allowed = [s for s in sids.values() if s.get("Effect") == "Allow" and as_list(s["Action"]) != ["sqs:SendMessage"]]
        return expect(not allowed, f"statements allowing more than sqs:SendMessage: {allowed}")

    c.check("inbox policy: sqs:SendMessage for EventBridge from the module's rules (aws:SourceArn) and for the proxy role, nobody else; TLS only", inbox_policy)

    def dlq_policy() -> str | None:
        dlq_url = outputs["reactor_dead_letter_queue_url"]
        sids = queue_policy(dlq_url)
        st = sids.get("EventBridgeDeadLetters") or {}
        sources = sorted(as_list((st.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn", [])))
        if sources != rule_arns:
            return f"EventBridgeDeadLetters aws:SourceArn {sources}, want the rules {rule_arns}"
        return expect((sids.get("DenyInsecureTransport") or {}).get("Effect") == "Deny", "no DenyInsecureTransport statement")

    c.check("dead-letter queue policy: EventBridge from the module's rules (the targets' dead letters), TLS only", dlq_policy)

    def event_source_mapping() -> str | None:
        # By the queue: moto 5.2.5 filters FunctionName against the name or ARN the mapping
        # was created with (Terraform gives the ARN), AWS against both.
        found = lam.list_event_source_mappings(EventSourceArn=inbox_arn)["EventSourceMappings"]
        if len(found) != 1:
            return f"{len(found)} event source mappings on the inbox {inbox_arn}, want 1"
        m = lam.get_event_source_mapping(UUID=found[0]["UUID"])
        got = {
            "EventSourceArn": m.get("EventSourceArn"),
            "BatchSize": m.get("BatchSize"),
            # Absent means the default, 0 for SQS (moto 5.2.5 answers null when none was sent).
            "MaximumBatchingWindowInSeconds": m.get("MaximumBatchingWindowInSeconds") or 0,
            "FunctionResponseTypes": m.get("FunctionResponseTypes"),
            "MaximumConcurrency": (m.get("ScalingConfig") or {}).get("MaximumConcurrency"),
        }
        want = {
            "EventSourceArn": inbox_arn,
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "MaximumConcurrency": 5,
        }
        if got != want:
            return f"event source mapping {got}, want {want}"
        return expect(m.get("FunctionArn") == function_arn, f"mapping invokes {m.get('FunctionArn')}, want {function_arn}")

    c.check("event source mapping: the inbox -> the reactor, batch 10, no window, ReportBatchItemFailures, maximum concurrency 5", event_source_mapping)

    # --- the lifecycle ledger
    def ledger_table() -> str | None:
        t = ddb.describe_table(TableName=ledger)["Table"]
        if t.get("KeySchema") != [{"AttributeName": "id", "KeyType": "HASH"}]:
            return f"key schema {t.get('KeySchema')}, want id (HASH) only"
        if (t.get("BillingModeSummary") or {}).get("BillingMode") != "PAY_PER_REQUEST":
            return f"billing {t.get('BillingModeSummary')}, want PAY_PER_REQUEST"
        attrs = sorted((a["AttributeName"], a["AttributeType"]) for a in t.get("AttributeDefinitions", []))
        if attrs != [("id", "S"), ("open", "S")]:
            return f"attributes {attrs}, want id (S), open (S)"
        gsis = [
            (g["IndexName"], g["KeySchema"], g["Projection"].get("ProjectionType"))
            for g in t.get("GlobalSecondaryIndexes", [])
        ]
        if gsis != [("open", [{"AttributeName": "open", "KeyType": "HASH"}], "ALL")]:
            return f"global secondary indexes {gsis}, want open (hash open, projection ALL)"
        if (t.get("SSEDescription") or {}).get("Status") not in ("ENABLED", "ENABLING"):
            return f"SSE {t.get('SSEDescription')}, want enabled"
        ttl = ddb.describe_time_to_live(TableName=ledger)["TimeToLiveDescription"]
        if (ttl.get("AttributeName"), ttl.get("TimeToLiveStatus")) != ("expires_at", "ENABLED"):
            return f"TTL {ttl}, want expires_at ENABLED"
        pitr = ddb.describe_continuous_backups(TableName=ledger)["ContinuousBackupsDescription"]
        status = (pitr.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus")
        return expect(status == "ENABLED", f"point-in-time recovery {status}, want ENABLED")

    c.check(f"ledger {ledger}: on demand, hash key id, sparse GSI open (ALL), TTL expires_at, PITR, SSE", ledger_table)

    # --- the Lambda itself
    def function_config() -> str | None:
        conf = lam.get_function(FunctionName=function)["Configuration"]
        env = conf.get("Environment", {}).get("Variables", {})
        want_env = {
            "SSM_DOCUMENT": document,
            "PROXY_GROUP": proxy_group,
            "MANAGED_GROUPS": "",
            "LIFECYCLE_HOOKS": f"{reactor}-launch,{reactor}-terminate",
            "PROXY_TAG_KEY": "haproxy-asg:fleet",
            "PROXY_TAG_VALUE": proxy_group,
            "LEDGER_TABLE": ledger,
            "LEDGER_TTL_S": "86400",
            "PROXY_ROLE_ID": iam.get_role(RoleName=proxy_role_name)["Role"]["RoleId"],
            "HOST_REPORT_TIMEOUT_S": "30",
            "INBOX_QUEUE_URL": attr("module.reactor.aws_sqs_queue.inbox", "id"),
        }
        wrong = {k: env.get(k) for k, v in want_env.items() if env.get(k) != v}
        if wrong:
            return f"environment {wrong}, want {want_env}"
        pools = json.loads(env.get("POOLS", "{}"))
        if pools != {backend: [{"name": "web", "port": 8080, "ports": []}]}:
            return f"POOLS {pools}"
        if conf.get("Handler") != "bootstrap" or conf.get("Runtime") != "provided.al2023":
            return f"handler/runtime {conf.get('Handler')}/{conf.get('Runtime')}, want bootstrap/provided.al2023"
        if (conf.get("DeadLetterConfig") or {}).get("TargetArn"):
            return f"dead-letter config {conf.get('DeadLetterConfig')}, want none (nothing invokes the function asynchronously)"
        if conf.get("Role") != attr("module.reactor.aws_iam_role.this", "arn"):
            return f"role {conf.get('Role')}"
        log_group = (conf.get("LoggingConfig") or {}).get("LogGroup")
        return expect(log_group == f"/aws/lambda/{function}", f"log group {log_group}")

    c.check("reactor Lambda: bootstrap on provided.al2023, environment (document, groups, hooks, tag, POOLS, ledger, proxy role id = the proxy role's RoleId, report timeout), no DLQ config, role, log group", function_config)

    def invoke_config() -> str | None:
        try:
            conf = lam.get_function_event_invoke_config(FunctionName=function)
        except lam.exceptions.ResourceNotFoundException:
            return None
        return f"an asynchronous invocation config {conf}: nothing invokes the function asynchronously any more"

    c.check("reactor Lambda: no asynchronous invocation config", invoke_config)

    # --- the alarms on the new path
    def alarms() -> str | None:
        cw = client("cloudwatch")
        found = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=f"{reactor}-")["MetricAlarms"]}
        want = {
            f"{reactor}-hosts-dropped": ("HaproxyAsg", "HostsDropped", "Sum", 0.0, [{"Name": "Function", "Value": reactor}]),
            f"{reactor}-inbox-age": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum", 300.0, [{"Name": "QueueName", "Value": f"{reactor}-inbox"}]),
        }
        for name, (namespace, metric, statistic, threshold, dimensions) in want.items():
            a = found.get(name)
            if not a:
                return f"no alarm {name} (alarms: {sorted(found)})"
            got = (a.get("Namespace"), a.get("MetricName"), a.get("Statistic"), a.get("Threshold"), a.get("Dimensions"))
            if got != (namespace, metric, statistic, threshold, dimensions) or a.get("ComparisonOperator") != "GreaterThanThreshold":
                return f"{name}: {got} {a.get('ComparisonOperator')}, want {(namespace, metric, statistic, threshold, dimensions)} GreaterThanThreshold"
        return None

    c.check(f"alarms {reactor}-hosts-dropped (HostsDropped > 0) and {reactor}-inbox-age (oldest inbox message > 300 s)", alarms)

    # --- the SSM document
    def ssm_document() -> str | None:
        desc = ssm.describe_document(Name=document)["Document"]
        if desc["DocumentType"] != "Command" or desc.get("TargetType") != "/AWS::EC2::Instance":
            return f"type {desc['DocumentType']} / target {desc.get('TargetType')}"
        params = {p["Name"]: p for p in desc.get("Parameters", [])}
        if sorted(params) != ["Action", "Change"]:
            return f"parameters {sorted(params)}, want Action, Change (no Context)"
        content = json.loads(ssm.get_document(Name=document, DocumentFormat="JSON")["Content"])
        cparams = content["parameters"]
        if cparams["Action"]["allowedValues"] != ["apply", "sync"]:
            return f"Action allowedValues {cparams['Action']['allowedValues']}"
        if cparams["Change"]["allowedPattern"] != "^[A-Za-z0-9+/]{4,}={0,2}$":
            return f"Change allowedPattern {cparams['Change']['allowedPattern']}"
        step = content["mainSteps"][0]
        if step["action"] != "aws:runShellScript" or step["inputs"]["timeoutSeconds"] != "120":
            return f"step {step['action']} timeout {step['inputs']['timeoutSeconds']}, want aws:runShellScript 120 (delivery only)"
        script = step["inputs"]["runCommand"]
        want = [
            "  apply) exec /usr/local/bin/agent apply --json --change-base64 '{{ Change }}' ;;",
            "  sync) exec /usr/local/bin/agent sync --json --no-wait ;;",
        ]
        return expect(all(line in script for line in want) and not any("Context" in line for line in script), f"script {script!r}")

    c.check(f"SSM document {document}: Command, parameters Action/Change as restricted, agent script (apply returns at once, sync --no-wait), timeout 120 s", ssm_document)

    # --- the load balancer: an NLB whose target group speaks proxy protocol v2 (default), or
    # a classic ELB with a proxy protocol policy (load_balancer_type = "elb")
    lb_sg = attr("module.proxy_fleet.aws_security_group.lb[0]", "id")
    classic = "module.proxy_fleet.aws_elb.this[0]" in res

    def proxy_group_registration(target_groups: list[str], load_balancers: list[str]) -> str | None:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[proxy_group])["AutoScalingGroups"][0]
        got = (group.get("TargetGroupARNs", []), group.get("LoadBalancerNames", []), group.get("HealthCheckType"))
        want = (target_groups, load_balancers, "ELB")
        return expect(got == want, f"proxy group target groups / load balancers / health check {got}, want {want}")

    if not classic:
        tg_arn = attr('module.proxy_fleet.aws_lb_target_group.this["80"]', "arn")
        lb_arn = attr("module.proxy_fleet.aws_lb.this[0]", "arn")

        def target_group() -> str | None:
            attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]}
            if attrs.get("proxy_protocol_v2.enabled") != "true":
                return f"proxy_protocol_v2.enabled = {attrs.get('proxy_protocol_v2.enabled')!r}, want 'true'"
            if attrs.get("deregistration_delay.timeout_seconds") != "60":
                return f"deregistration delay {attrs.get('deregistration_delay.timeout_seconds')}, want 60"
            tg = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
            return expect((tg["Protocol"], tg["Port"], tg["TargetType"]) == ("TCP", 80, "instance"), f"target group {tg['Protocol']}:{tg['Port']} {tg['TargetType']}")

        c.check("target group: TCP 80, instances, proxy_protocol_v2.enabled = true, deregistration delay 60 s", target_group)

        def load_balancer() -> str | None:
            lb = elbv2.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]
            if lb["Type"] != "network" or lb["Scheme"] != "internet-facing" or ":loadbalancer/net/" not in lb_arn:
                return f"{lb['Type']} {lb['Scheme']} {lb_arn}, want a network (loadbalancer/net/) internet-facing one"
            if lb.get("SecurityGroups") != [lb_sg]:
                return f"security groups {lb.get('SecurityGroups')}, want [{lb_sg}]"
            listeners = elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
            wired = [(l["Protocol"], l["Port"], l["DefaultActions"][0].get("TargetGroupArn")) for l in listeners]
            if wired != [("TCP", 80, tg_arn)]:
                return f"listeners {wired}, want TCP 80 -> the target group"
            return proxy_group_registration([tg_arn], [])

        c.check("NLB: network, internet-facing, its own security group, listener TCP 80 -> the target group; proxy group registers there (ELB health)", load_balancer)

        def lb_alias() -> tuple[str, str]:
            lb = elbv2.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"][0]
            return lb["DNSName"], lb["CanonicalHostedZoneId"]

    else:
        elb = client("elb")
        elb_name = attr("module.proxy_fleet.aws_elb.this[0]", "name")

        def classic_elb() -> str | None:
            lb = elb.describe_load_balancers(LoadBalancerNames=[elb_name])["LoadBalancerDescriptions"][0]
            if lb.get("Scheme") != "internet-facing" or lb.get("SecurityGroups") != [lb_sg]:
                return f"scheme {lb.get('Scheme')} / security groups {lb.get('SecurityGroups')}, want internet-facing / [{lb_sg}]"
            listeners = [(d["Listener"]["Protocol"].upper(), d["Listener"]["LoadBalancerPort"], d["Listener"]["InstancePort"]) for d in lb["ListenerDescriptions"]]
            if listeners != [("TCP", 80, 80)]:
                return f"listeners {listeners}, want TCP 80 -> 80"
            backends = {b["InstancePort"]: b.get("PolicyNames", []) for b in lb.get("BackendServerDescriptions", [])}
            if not backends.get(80):
                return f"no policy on instance port 80 (backend descriptions {backends})"
            policies = elb.describe_load_balancer_policies(LoadBalancerName=elb_name, PolicyNames=backends[80])["PolicyDescriptions"]
            proxy = [
                p
                for p in policies
                if p["PolicyTypeName"] == "ProxyProtocolPolicyType"
                and any(a["AttributeName"] == "ProxyProtocol" and a["AttributeValue"].lower() == "true" for a in p["PolicyAttributeDescriptions"])
            ]
            if not proxy:
                return f"instance port 80 policies {policies}: none enables ProxyProtocol"
            draining = elb.describe_load_balancer_attributes(LoadBalancerName=elb_name)["LoadBalancerAttributes"]["ConnectionDraining"]
            if draining != {"Enabled": True, "Timeout": 60}:
                return f"connection draining {draining}, want enabled, 60 s"
            return proxy_group_registration([], [elb_name])

        c.check("classic ELB: internet-facing, its own security group, TCP 80 -> 80, ProxyProtocol on instance port 80, draining 60 s; proxy group registers there (ELB health)", classic_elb)

        def lb_alias() -> tuple[str, str]:
            lb = elb.describe_load_balancers(LoadBalancerNames=[elb_name])["LoadBalancerDescriptions"][0]
            return lb["DNSName"], lb["CanonicalHostedZoneNameID"]

    lb_kind = "classic ELB" if classic else "NLB"

    # --- Route 53
    def record() -> str | None:
        want = record_name.rstrip(".") + "."
        found = [
            r
            for r in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
            if r["Name"] == want and r["Type"] == "A"
        ]
        if len(found) != 1:
            return f"{len(found)} A records named {want} in {zone_id}"
        alias = found[0].get("AliasTarget") or {}
        dns_name, lb_zone = lb_alias()
        if alias.get("DNSName", "").rstrip(".").lower() != dns_name.rstrip(".").lower():
            return f"alias to {alias.get('DNSName')}, want the {lb_kind} {dns_name}"
        if alias.get("HostedZoneId") != lb_zone or alias.get("EvaluateTargetHealth") is not True:
            return f"alias zone {alias.get('HostedZoneId')} / evaluate {alias.get('EvaluateTargetHealth')}, want {lb_zone} / true"
        return None

    c.check(f"Route 53: A alias {record_name} -> the {lb_kind} (its zone, target health evaluated)", record)

    # --- the web app's warm pool (backend_warm_pool), when set
    warm = res["aws_autoscaling_group.web"].get("warm_pool") or []
    if warm:

        def warm_pool() -> str | None:
            answer = asg.describe_warm_pool(AutoScalingGroupName=backend)
            conf = answer.get("WarmPoolConfiguration") or {}
            want = warm[0]
            got = (conf.get("MinSize"), conf.get("PoolState"), (conf.get("InstanceReusePolicy") or {}).get("ReuseOnScaleIn"))
            expected = (want["min_size"], want["pool_state"], want["instance_reuse_policy"][0]["reuse_on_scale_in"])
            if got != expected:
                return f"warm pool (min size, state, reuse) {got}, want {expected}"
            return expect(len(answer.get("Instances", [])) >= want["min_size"], f"{len(answer.get('Instances', []))} instances in the pool, want >= {want['min_size']}")

        c.check(f"warm pool of {backend}: min size, pool state, reuse on scale-in as configured, filled", warm_pool)

    # --- the web app on Spot (backend_spot_instance_types), when set
    mixed = res["aws_autoscaling_group.web"].get("mixed_instances_policy") or []
    if mixed:

        def spot() -> str | None:
            group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[backend])["AutoScalingGroups"][0]
            policy = group.get("MixedInstancesPolicy") or {}
            overrides = [o.get("InstanceType") for o in policy.get("LaunchTemplate", {}).get("Overrides", [])]
            want = [o["instance_type"] for o in mixed[0]["launch_template"][0]["override"]]
            if overrides != want:
                return f"instance types {overrides}, want {want}"
            distribution = policy.get("InstancesDistribution") or {}
            on_demand = (distribution.get("OnDemandBaseCapacity"), distribution.get("OnDemandPercentageAboveBaseCapacity"))
            if on_demand != (0, 0) or distribution.get("SpotAllocationStrategy") != "price-capacity-optimized":
                return f"distribution {distribution}, want all Spot, price-capacity-optimized"
            if group.get("CapacityRebalance") is not True:
                return "capacity rebalancing is off"
            rebalance = lam.get_function(FunctionName=function)["Configuration"]["Environment"]["Variables"].get("REBALANCE")
            want_rebalance = res["module.reactor.aws_lambda_function.this"]["environment"][0]["variables"]["REBALANCE"]
            return expect(rebalance == want_rebalance, f"REBALANCE {rebalance}, want {want_rebalance}")

        c.check(f"Spot on {backend}: mixed instances policy (the types, all Spot, price-capacity-optimized), capacity rebalancing, the reactor's REBALANCE", spot)

    # --- IAM
    def reactor_role() -> str | None:
        role = iam.get_role(RoleName=reactor)["Role"]
        trust = role["AssumeRolePolicyDocument"]
        principals = [s.get("Principal", {}).get("Service") for s in trust["Statement"]]
        if principals != ["lambda.amazonaws.com"]:
            return f"trust {principals}, want lambda.amazonaws.com"
        names = iam.list_role_policies(RoleName=reactor)["PolicyNames"]
        attached = iam.list_attached_role_policies(RoleName=reactor)["AttachedPolicies"]
        if names != ["reactor"] or attached:
            return f"inline {names}, attached {[a['PolicyArn'] for a in attached]}, want inline 'reactor' only"
        doc = iam.get_role_policy(RoleName=reactor, PolicyName="reactor")["PolicyDocument"]
        sids = {s["Sid"]: s for s in doc["Statement"]}
        want = {"Logs", "LifecycleActions", "Discovery", "SendCommandDocument", "SendCommandProxies", "MarkInterrupted", "Inbox", "Reminders", "Ledger", "LedgerOpen"}
        if set(sids) != want:
            return f"statements {sorted(sids)}, want {sorted(want)}"
        actions = {a for s in doc["Statement"] for a in as_list(s["Action"])}
        command_reads = actions & {"ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands"}
        if command_reads:
            return f"the role still reads command results: {sorted(command_reads)}"
        lifecycle_resources = sids["LifecycleActions"]["Resource"]
        lifecycle_resources = lifecycle_resources if isinstance(lifecycle_resources, list) else [lifecycle_resources]
        wanted = {f"autoScalingGroupName/{backend}", f"autoScalingGroupName/{proxy_group}"}
        if {r.rsplit(":", 1)[-1] for r in lifecycle_resources} != wanted:
            return f"LifecycleActions on {lifecycle_resources}, want {backend} and the proxy group {proxy_group} only"
        if not str(sids["SendCommandDocument"]["Resource"]).endswith(f":document/{document}"):
            return f"SendCommand on {sids['SendCommandDocument']['Resource']}, want the document {document}"
        if as_list(sids["Inbox"]["Resource"]) != [inbox_arn] or sorted(as_list(sids["Inbox"]["Action"])) != ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]:
            return f"Inbox {sids['Inbox']}, want receive/delete/visibility/attributes on {inbox_arn}"
        table_arn = ddb.describe_table(TableName=ledger)["Table"]["TableArn"]
        if as_list(sids["Ledger"]["Resource"]) != [table_arn]:
            return f"Ledger on {sids['Ledger']['Resource']}, want the table {table_arn}"
        if sorted(as_list(sids["Ledger"]["Action"])) != ["dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]:
            return f"Ledger actions {sids['Ledger']['Action']}"
        if as_list(sids["LedgerOpen"]["Resource"]) != [f"{table_arn}/index/open"] or as_list(sids["LedgerOpen"]["Action"]) != ["dynamodb:Query"]:
            return f"LedgerOpen {sids['LedgerOpen']}, want dynamodb:Query on {table_arn}/index/open"
        if as_list(sids["Reminders"]["Resource"]) != [inbox_arn] or as_list(sids["Reminders"]["Action"]) != ["sqs:SendMessage"]:
            return f"Reminders {sids['Reminders']}, want sqs:SendMessage on {inbox_arn} only"
        senders = [s["Sid"] for s in doc["Statement"] if s["Sid"] != "Reminders" and any(a.startswith("sqs:Send") for a in as_list(s["Action"]))]
        return expect(not senders, f"statements {senders} may send to a queue")

    c.check(f"IAM role {reactor}: trusted by Lambda, one inline policy (lifecycle actions on {backend} and {proxy_group} only, SendCommand on the document, the inbox and its reminders, the ledger and its index; no command reads)", reactor_role)

    role_name = attr("module.proxy_fleet.aws_iam_role.instance", "name")
    agent_key = attr("module.proxy_fleet.aws_s3_object.agent", "key")
    bucket = attr("module.proxy_fleet.aws_s3_bucket.artifacts", "id")

    def proxy_role() -> str | None:
        role = iam.get_role(RoleName=role_name)["Role"]
        principals = [s.get("Principal", {}).get("Service") for s in role["AssumeRolePolicyDocument"]["Statement"]]
        if principals != ["ec2.amazonaws.com"]:
            return f"trust {principals}, want ec2.amazonaws.com"
        attached = [a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
        if attached != ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]:
            return f"attached {attached}, want AmazonSSMManagedInstanceCore"
        doc = iam.get_role_policy(RoleName=role_name, PolicyName="haproxy-asg-proxy")["PolicyDocument"]
        sids = {s["Sid"]: s for s in doc["Statement"]}
        if sids.get("AgentBinary", {}).get("Resource") != f"arn:aws:s3:::{bucket}/{agent_key}":
            return f"AgentBinary on {sids.get('AgentBinary', {}).get('Resource')}, want the agent object"
        if sids.get("DenyParameterStore", {}).get("Effect") != "Deny":
            return "no DenyParameterStore statement"
        reports = sids.get("Reports", {})
        if as_list(reports.get("Action")) != ["sqs:SendMessage"] or as_list(reports.get("Resource")) != [inbox_arn]:
            return f"Reports {reports}, want sqs:SendMessage on the inbox {inbox_arn}"
        sqs_actions = {a for s in doc["Statement"] if s.get("Effect") == "Allow" for a in as_list(s["Action"]) if a.startswith("sqs:")}
        if sqs_actions != {"sqs:SendMessage"}:
            return f"SQS actions {sorted(sqs_actions)}, want sqs:SendMessage only"
        profile_arn = attr("module.proxy_fleet.aws_iam_instance_profile.this", "arn")
        profile = iam.get_instance_profile(InstanceProfileName=profile_arn.split("/")[-1])["InstanceProfile"]
        roles = [r["RoleName"] for r in profile["Roles"]]
        return expect(roles == [role_name], f"instance profile roles {roles}, want [{role_name}]")

    c.check(f"IAM role {role_name}: trusted by EC2, SSM core attached, the agent object readable, reports to the inbox only, Parameter Store denied, in the instance profile", proxy_role)

    # --- the agent binary and the proxies' launch template
    def agent_object() -> str | None:
        with open(agent_file, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if agent_key != f"agent/{digest}/agent":
            return f"key {agent_key}, want agent/{digest}/agent"
        body = s3.get_object(Bucket=bucket, Key=agent_key)["Body"].read()
        if body != data:
            return "the object differs from the stand-in agent file"
        lt_id = attr("module.proxy_fleet.aws_launch_template.this", "id")
        ec2 = client("ec2")
        version = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id, Versions=["$Latest"])["LaunchTemplateVersions"][0]
        user_data = base64.b64decode(version["LaunchTemplateData"].get("UserData", "")).decode()
        if agent_key not in user_data or digest not in user_data:
            return "the proxies' user data does not name the uploaded agent object and its SHA-256"
        if f'[report]\nqueue_url = "{inbox_url}"\n' not in user_data:
            return f"the proxies' agent.toml does not report to the inbox {inbox_url}"
        if "http://169.254.169.254/latest/meta-data/instance-id" not in user_data or 'host = "%s"' not in user_data:
            return "the proxies' user data does not write the instance id (IMDSv2) as host"
        if "http://169.254.169.254/latest/meta-data/placement/availability-zone" not in user_data or 'zone = "%s"' not in user_data:
            return "the proxies' user data does not write the Availability Zone (IMDSv2) as zone"
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[proxy_group])["AutoScalingGroups"][0]
        return expect(group["LaunchTemplate"]["LaunchTemplateId"] == lt_id, f"proxy group launches {group.get('LaunchTemplate')}, want {lt_id}")

    c.check("agent binary: uploaded content-addressed (agent/<sha256>/agent), named with its SHA-256 in the proxies' user data, which reports to the inbox as its instance id and writes its zone", agent_object)

    def instances() -> str | None:
        out = []
        for name, want in ((proxy_group, 2), (backend, 2)):
            group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
            in_service = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
            if len(in_service) != want:
                out.append(f"{name}: {len(in_service)} InService, want {want}")
        return "; ".join(out) or None

    c.check(f"groups launched: 2 proxies in {proxy_group}, 2 web instances in {backend}, InService", instances)

    print(f"    {c.passed} wiring checks passed, {len(c.failures)} failed")
    return c.failures


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    command, args = argv[1], argv[2:]
    if command == "zone-create":
        zone_create(args[0])
        return 0
    if command == "zone-delete":
        zone_delete(args[0])
        return 0
    if command == "inventory":
        inv = inventory()
        with open(args[0], "w") as f:
            json.dump(inv, f, indent=1, sort_keys=True)
        print(f"    inventory: {len(inv)} resource types, {sum(len(v) for v in inv.values())} resources")
        return 0
    if command == "wiring":
        failures = wiring(*args)
    elif command == "leftovers":
        failures = leftovers(args[0])
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
