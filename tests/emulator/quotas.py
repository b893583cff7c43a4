"""Per-API request quotas as token buckets, answered with each service's throttling error.

AWS throttles API requests per account and Region with token buckets: a bucket holds up to
``burst`` tokens, refills at ``rate`` tokens per second, and each request takes one; an empty
bucket answers the service's throttling error. moto never throttles. Off by default: rules
come from ``POST /moto-ext/quotas`` or ``server.py --quotas``.

Rule keys (``"service:Pattern[?unfiltered][#bucket]"``):

* ``ec2:DescribeInstances`` an action, ``ec2:Describe*`` every action with that prefix,
  ``ec2:*`` every other action of the service. Each action matching such a rule has a bucket
  of its own (EC2: "Limits are applied to individual API actions"); a request uses the most
  specific rule (exact, then the longest prefix, then ``*``).
* ``?unfiltered``: the rule for requests that give neither a filter nor pagination (EC2's
  "unfiltered and unpaginated non-mutating actions" bucket); such requests fall back to the
  plain rule when there is none.
* ``#name``: a bucket shared by every request that matches any key of the service with the
  same ``#name`` (Auto Scaling's one bucket for the whole API, Route 53's account-level
  bucket), taken in addition to the per-action bucket.

Values: ``{"burst": N > 0, "rate": N >= 0}`` plus optional ``code``, ``status``, ``message``
(default: what the service answers, :data:`THROTTLE_ERRORS`).

Cost per request: nothing while no rule is set; otherwise one dict lookup (the buckets of a
(region, service, action, variant) are resolved once and memoized) and a bucket update under
a small lock of its own.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .faults import FORM_KEY, REGION_KEY

# The error each service answers when a request is throttled: (code, HTTP status, message).
THROTTLE_ERRORS: dict[str, tuple[str, int, str]] = {
    # EC2 API reference, error codes: RequestLimitExceeded; EC2 answers it with 503.
    "ec2": ("RequestLimitExceeded", 503, "Request limit exceeded."),
    # Auto Scaling (query protocol): "Rate Exceeded" errors (Knowledge Center), code Throttling.
    "autoscaling": ("Throttling", 400, "Rate exceeded"),
    # Route 53: "HTTP 400 error (Bad request) ... Code ... Throttling ... Message ... Rate exceeded".
    "route53": ("Throttling", 400, "Rate exceeded"),
    "ssm": ("ThrottlingException", 400, "Rate exceeded"),
    "events": ("ThrottlingException", 400, "Rate exceeded"),
    # SQS API reference: RequestThrottled ("The request was denied due to request throttling").
    "sqs": ("RequestThrottled", 400, "Request is throttled."),
    # DynamoDB control plane: ThrottlingException; the data plane: see DYNAMODB_DATA_ERROR.
    "dynamodb": ("ThrottlingException", 400, "Rate of requests exceeds the allowed throughput."),
}
DEFAULT_QUERY_ERROR = ("Throttling", 400, "Rate exceeded")
DEFAULT_JSON_ERROR = ("ThrottlingException", 400, "Rate exceeded")
# An on-demand table over the per-table account quota: RequestLimitExceeded ("Throughput
# exceeds the current throughput quota for your account", DynamoDB API reference).
DYNAMODB_DATA_ERROR = (
    "RequestLimitExceeded",
    400,
    "Throughput exceeds the current throughput quota for your account. Please contact AWS "
    "Support at https://aws.amazon.com/support request a quota increase.",
)
DYNAMODB_DATA_PLANE = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "ExecuteStatement",
    "BatchExecuteStatement", "ExecuteTransaction",
}  # fmt: skip
# DynamoDB's control plane ("Control plane" in HowItWorks.API.html): the actions the
# aws-default profile puts in the control plane's shared bucket.
DYNAMODB_CONTROL_PLANE = [
    "CreateTable", "DescribeTable", "ListTables", "UpdateTable", "DeleteTable",
    "DescribeTimeToLive", "UpdateTimeToLive", "DescribeContinuousBackups", "UpdateContinuousBackups",
    "CreateBackup", "DescribeBackup", "ListBackups", "DeleteBackup", "RestoreTableFromBackup",
    "RestoreTableToPointInTime", "TagResource", "UntagResource", "ListTagsOfResource",
    "DescribeLimits", "DescribeEndpoints", "CreateGlobalTable", "UpdateGlobalTable",
    "DescribeGlobalTable", "ListGlobalTables", "DescribeKinesisStreamingDestination",
    "EnableKinesisStreamingDestination", "DisableKinesisStreamingDestination",
    "DescribeContributorInsights", "UpdateContributorInsights", "ListContributorInsights",
    "DescribeTableReplicaAutoScaling", "UpdateTableReplicaAutoScaling", "ExportTableToPointInTime",
    "DescribeExport", "ListExports", "ImportTable", "DescribeImport", "ListImports",
    "PutResourcePolicy", "GetResourcePolicy", "DeleteResourcePolicy",
]  # fmt: skip
# EC2: "a specific subset of non-mutating API actions that, when requested without
# specifying either pagination or a filter, use tokens from a smaller token bucket".
EC2_UNFILTERED = {
    "DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces",
    "DescribeSecurityGroups", "DescribeSnapshots", "DescribeSpotInstanceRequests", "DescribeVolumes",
}  # fmt: skip


class Bucket:
    __slots__ = ("burst", "rate", "tokens", "last", "key")

    def __init__(self, burst: float, rate: float, key: str) -> None:
        self.burst, self.rate, self.key = burst, rate, key
        self.tokens = burst
        self.last = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now


_lock = threading.Lock()
_rules: dict[str, dict[str, Any]] = {}  # key -> normalized rule
_startup: dict[str, dict[str, Any]] = {}  # what --quotas set: reset restores it
_buckets: dict[tuple[str, ...], Bucket] = {}
_memo: dict[tuple[str, str, str, str], tuple[tuple[Bucket, dict[str, Any]], ...]] = {}


# --------------------------------------------------------------------------- rules


def _parse_key(key: str) -> tuple[str, str, str, str]:
    """(service, pattern, variant, shared bucket name)."""
    if not isinstance(key, str) or ":" not in key:
        raise ValueError(f"quota key {key!r}: expected \"service:Action\" (or a prefix*, or *)")
    service, rest = key.split(":", 1)
    rest, _, shared = rest.partition("#")
    pattern, _, variant = rest.partition("?")
    if not service or not pattern or ("*" in pattern and not pattern.endswith("*")) or pattern.count("*") > 1:
        raise ValueError(f"quota key {key!r}: expected \"service:Action\", \"service:Prefix*\" or \"service:*\"")
    if variant not in ("", "unfiltered"):
        raise ValueError(f"quota key {key!r}: the only variant is ?unfiltered")
    return service.lower(), pattern, variant, shared


def _normalize(key: str, value: Any) -> dict[str, Any]:
    service, pattern, variant, shared = _parse_key(key)
    if not isinstance(value, dict):
        raise ValueError(f"quota {key}: expected {{\"burst\": N, \"rate\": N}}")
    burst, rate = value.get("burst"), value.get("rate")
    if isinstance(burst, bool) or not isinstance(burst, (int, float)) or burst <= 0:
        raise ValueError(f"quota {key}: burst must be a number > 0")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
        raise ValueError(f"quota {key}: rate must be a number >= 0")
    unknown = set(value) - {"burst", "rate", "code", "status", "message", "source"}
    if unknown:
        raise ValueError(f"quota {key}: unknown field(s) {sorted(unknown)}")
    rule: dict[str, Any] = {"burst": burst, "rate": rate}
    if "code" in value:
        if not isinstance(value["code"], str) or not value["code"]:
            raise ValueError(f"quota {key}: code must be a non-empty string")
        rule["code"] = value["code"]
    if "status" in value:
        if not isinstance(value["status"], int) or not 400 <= value["status"] <= 599:
            raise ValueError(f"quota {key}: status must be a 4xx or 5xx HTTP status")
        rule["status"] = value["status"]
    if "message" in value:
        rule["message"] = str(value["message"])
    if "source" in value:
        rule["source"] = str(value["source"])
    rule["_parsed"] = (service, pattern, variant, shared)
    return rule


def _check_shared(rules: dict[str, dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], tuple[str, float, float]] = {}
    for key, rule in rules.items():
        service, _, _, shared = rule["_parsed"]
        if not shared:
            continue
        first = seen.setdefault((service, shared), (key, rule["burst"], rule["rate"]))
        if (first[1], first[2]) != (rule["burst"], rule["rate"]):
            raise ValueError(f"quota {key}: bucket #{shared} is {first[0]}'s, with another burst/rate")


def _install(rules: dict[str, dict[str, Any]]) -> None:
    _check_shared(rules)
    with _lock:
        _rules.clear()
        _rules.update(rules)
        _buckets.clear()
        _memo.clear()


def configure(body: Any) -> dict[str, Any]:
    """``POST /moto-ext/quotas``: merge rules (null removes one); ``"profile"`` first
    replaces every rule with a named profile. Buckets start full again."""
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object of quota rules")
    body = dict(body)
    rules = {k: dict(v) for k, v in _rules.items()}
    if "profile" in body:
        name = body.pop("profile")
        if name not in PROFILES:
            raise ValueError(f"unknown quota profile {name!r} (known: {', '.join(sorted(PROFILES))})")
        rules = {k: _normalize(k, v) for k, v in PROFILES[name]().items()}
    for key, value in body.items():
        if value is None:
            rules.pop(key, None)
        else:
            rules[key] = _normalize(key, value)
    _install(rules)
    return listing()


def clear() -> None:
    _install({})


def reset() -> None:
    """``POST /moto-ext/reset``: back to what the server started with (``--quotas``)."""
    _install({k: dict(v) for k, v in _startup.items()})


def set_startup(spec: str) -> None:
    """``server.py --quotas``: a profile name or a JSON file of rules, kept across resets."""
    if spec in PROFILES:
        configure({"profile": spec})
    else:
        try:
            with open(spec, encoding="utf-8") as f:
                body = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--quotas {spec}: not a profile ({', '.join(PROFILES)}) nor a JSON file: {exc}") from None
        configure(body)
    _startup.clear()
    _startup.update({k: dict(v) for k, v in _rules.items()})


def listing() -> dict[str, Any]:
    """``GET /moto-ext/quotas``: the rules, and the tokens left in each bucket used so far."""
    now = time.monotonic()
    with _lock:
        rules = {k: {f: v for f, v in r.items() if not f.startswith("_")} for k, r in sorted(_rules.items())}
        tokens = {}
        for bucket in _buckets.values():
            bucket.refill(now)
            tokens[bucket.key] = round(bucket.tokens, 3)
    return {"rules": rules, "tokens": dict(sorted(tokens.items()))}


# --------------------------------------------------------------------------- the check


def _match(pattern: str, action: str) -> int:
    """How specific a match is (-1: none): exact beats any prefix, longer prefixes beat shorter."""
    if pattern == action:
        return 1_000_000
    if pattern.endswith("*") and action.startswith(pattern[:-1]):
        return len(pattern) - 1
    return -1


def _resolve(region: str, service: str, action: str, variant: str) -> tuple[tuple[Bucket, dict[str, Any]], ...]:
    """The buckets a request draws from (under _lock)."""
    best: tuple[int, str, dict[str, Any]] | None = None
    shared: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, rule in _rules.items():
        r_service, pattern, r_variant, r_shared = rule["_parsed"]
        if r_service != service:
            continue
        score = _match(pattern, action)
        if score < 0:
            continue
        if r_shared:
            shared.setdefault(r_shared, (key, rule))
            continue
        if r_variant and r_variant != variant:
            continue
        score = score * 2 + (1 if r_variant else 0)  # the variant's own rule beats the plain one
        if best is None or score > best[0]:
            best = (score, key, rule)
    out: list[tuple[Bucket, dict[str, Any]]] = []
    if best is not None:
        _, key, rule = best
        out.append((_bucket((region, service, key, action), rule, f"{region} {service}:{action}" + (f"?{variant}" if rule["_parsed"][2] else "")), rule))
    for name, (key, rule) in sorted(shared.items()):
        out.append((_bucket((region, service, "#" + name), rule, f"{region} {service}#{name}"), rule))
    return tuple(out)


def _bucket(ident: tuple[str, ...], rule: dict[str, Any], label: str) -> Bucket:
    bucket = _buckets.get(ident)
    if bucket is None:
        bucket = _buckets[ident] = Bucket(float(rule["burst"]), float(rule["rate"]), label)
    return bucket


def _unfiltered(environ: dict[str, Any]) -> bool:
    params = environ.get(FORM_KEY) or {}
    return not any(k.startswith("Filter.") or k in ("MaxResults", "NextToken") for k in params)


def take(environ: dict[str, Any], service: str, action: str) -> dict[str, Any] | None:
    """None if the request may go on (its tokens taken), else the throttling rule that
    answers it: ``{"code", "status", "message", "quota"}``."""
    if not _rules:
        return None
    region = environ.get(REGION_KEY, "")
    variant = "unfiltered" if service == "ec2" and action in EC2_UNFILTERED and _unfiltered(environ) else ""
    memo_key = (region, service, action, variant)
    with _lock:
        buckets = _memo.get(memo_key)
        if buckets is None:
            buckets = _memo[memo_key] = _resolve(region, service, action, variant)
        if not buckets:
            return None
        now = time.monotonic()
        for bucket, rule in buckets:
            bucket.refill(now)
            if bucket.tokens < 1.0:
                return _error(environ, service, action, rule, bucket)
        for bucket, _ in buckets:
            bucket.tokens -= 1.0
    return None


def _error(environ: dict[str, Any], service: str, action: str, rule: dict[str, Any], bucket: Bucket) -> dict[str, Any]:
    if service == "dynamodb" and action in DYNAMODB_DATA_PLANE:
        code, status, message = DYNAMODB_DATA_ERROR
    elif service in THROTTLE_ERRORS:
        code, status, message = THROTTLE_ERRORS[service]
    elif environ.get("HTTP_X_AMZ_TARGET"):
        code, status, message = DEFAULT_JSON_ERROR
    else:
        code, status, message = DEFAULT_QUERY_ERROR
    return {
        "code": rule.get("code", code),
        "status": rule.get("status", status),
        "message": rule.get("message", message),
        "quota": bucket.key,
    }


# --------------------------------------------------------------------------- profiles

# Request throttling for the Amazon EC2 API (docs.aws.amazon.com/ec2/latest/devguide/
# ec2-api-throttling.html), "Request token bucket sizes and refill rates": the
# "Uncategorized actions" table (action: bucket maximum capacity, refill rate per second).
EC2_UNCATEGORIZED: dict[str, tuple[float, float]] = {
    "AcceptVpcEndpointConnections": (10, 1), "AdvertiseByoipCidr": (1, 0.1),
    "AssignIpv6Addresses": (100, 5), "AssignPrivateIpAddresses": (100, 5),
    "AssignPrivateNatGatewayAddress": (10, 1), "AssociateCapacityReservationBillingOwner": (1, 0.5),
    "AssociateEnclaveCertificateIamRole": (10, 1), "AssociateIamInstanceProfile": (100, 5),
    "AssociateNatGatewayAddress": (10, 1), "AttachVerifiedAccessTrustProvider": (10, 2),
    "AuthorizeClientVpnIngress": (5, 2), "CancelDeclarativePoliciesReport": (1, 1),
    "CopyImage": (100, 1), "CreateClientVpnRoute": (5, 2), "CreateCoipCidr": (5, 1),
    "CreateCoipPool": (5, 1), "CreateDefaultSubnet": (1, 1), "CreateDefaultVpc": (1, 1),
    "CreateLaunchTemplateVersion": (100, 5), "CreateNatGateway": (10, 1),
    "CreateNetworkInterface": (100, 5), "CreateRestoreImageTask": (50, 0.1),
    "CreateSnapshot": (100, 5), "CreateSnapshots": (100, 5), "CreateSpotDatafeedSubscription": (50, 3),
    "CreateStoreImageTask": (50, 0.1), "CreateSubnetCidrReservation": (5, 1), "CreateTags": (100, 10),
    "CreateVerifiedAccessEndpoint": (20, 4), "CreateVerifiedAccessGroup": (10, 2),
    "CreateVerifiedAccessInstance": (10, 2), "CreateVerifiedAccessTrustProvider": (10, 2),
    "CreateVolume": (100, 5), "CreateVpcEndpoint": (4, 0.3),
    "CreateVpcEndpointServiceConfiguration": (10, 1), "DeleteClientVpnRoute": (5, 2),
    "DeleteCoipCidr": (5, 1), "DeleteCoipPool": (5, 1), "DeleteCoipPoolPermission": (5, 1),
    "DeleteNatGateway": (10, 1), "DeleteNetworkInterface": (100, 5), "DeleteSnapshot": (100, 5),
    "DeleteSpotDatafeedSubscription": (50, 3), "DeleteSubnetCidrReservation": (5, 1),
    "DeleteQueuedReservedInstances": (5, 5), "DeleteTags": (100, 10),
    "DeleteVerifiedAccessEndpoint": (20, 4), "DeleteVerifiedAccessGroup": (10, 2),
    "DeleteVerifiedAccessInstance": (10, 2), "DeleteVerifiedAccessTrustProvider": (10, 2),
    "DeleteVolume": (100, 5), "DeleteVpcEndpoints": (4, 0.3),
    "DeleteVpcEndpointServiceConfigurations": (10, 1), "DeprovisionByoipCidr": (1, 0.1),
    "DeregisterImage": (100, 5), "DescribeAggregateIdFormat": (10, 10), "DescribeByoipCidrs": (1, 0.5),
    "DescribeCapacityBlockExtensionOfferings": (10, 0.15), "DescribeCapacityBlockOfferings": (10, 0.15),
    "DescribeDeclarativePoliciesReports": (5, 5), "DescribeHostReservations": (5, 2),
    "DescribeHostReservationOfferings": (5, 2), "DescribeIdentityIdFormat": (10, 10),
    "DescribeIdFormat": (10, 10), "DescribeInstanceTopology": (1, 1), "DescribeMovingAddresses": (1, 1),
    "DescribePrincipalIdFormat": (10, 10), "DescribeReservedInstancesOfferings": (10, 10),
    "DescribeSecurityGroupReferences": (20, 5), "DescribeSpotDatafeedSubscription": (100, 13),
    "DescribeSpotFleetInstances": (100, 5), "DescribeSpotFleetRequestHistory": (100, 5),
    "DescribeSpotFleetRequests": (50, 3), "DescribeStaleSecurityGroups": (20, 5),
    "DescribeStoreImageTasks": (50, 0.5), "DescribeVerifiedAccessInstanceLoggingConfigurations": (10, 2),
    "DetachVerifiedAccessTrustProvider": (10, 2), "DisableFastLaunch": (5, 2),
    "DisableImageBlockPublicAccess": (1, 0.1), "DisableSnapshotBlockPublicAccess": (1, 0.1),
    "DisassociateCapacityReservationBillingOwner": (1, 0.5),
    "DisassociateEnclaveCertificateIamRole": (10, 1), "DisassociateIamInstanceProfile": (100, 5),
    "DisassociateNatGatewayAddress": (10, 1), "EnableFastLaunch": (5, 2),
    "EnableImageBlockPublicAccess": (1, 0.1), "EnableSnapshotBlockPublicAccess": (1, 0.1),
    "GetAssociatedEnclaveCertificateIamRoles": (10, 1), "GetDeclarativePoliciesReportSummary": (5, 5),
    "GetHostReservationPurchasePreview": (5, 2), "ModifyImageAttribute": (100, 5),
    "ModifyInstanceMetadataDefaults": (2, 2), "ModifyInstanceMetadataOptions": (100, 5),
    "ModifyLaunchTemplate": (100, 5), "ModifyNetworkInterfaceAttribute": (100, 5),
    "ModifySnapshotAttribute": (100, 5), "ModifyVerifiedAccessEndpoint": (20, 4),
    "ModifyVerifiedAccessEndpointPolicy": (20, 4), "ModifyVerifiedAccessGroup": (10, 2),
    "ModifyVerifiedAccessGroupPolicy": (20, 4), "ModifyVerifiedAccessInstance": (10, 2),
    "ModifyVerifiedAccessInstanceLoggingConfiguration": (10, 2),
    "ModifyVerifiedAccessTrustProvider": (10, 2), "ModifyVpcEndpoint": (4, 0.3),
    "ModifyVpcEndpointServiceConfiguration": (10, 1), "MoveAddressToVpc": (1, 1),
    "ProvisionByoipCidr": (1, 0.1), "PurchaseCapacityBlock": (10, 0.15),
    "PurchaseCapacityBlockExtension": (10, 0.15), "PurchaseHostReservation": (5, 2),
    "PurchaseReservedInstancesOffering": (5, 5), "RejectVpcEndpointConnections": (10, 1),
    "RestoreAddressToClassic": (1, 1), "RevokeClientVpnIngress": (5, 2), "RunInstances": (5, 2),
    "StartDeclarativePoliciesReport": (1, 1), "StartInstances": (5, 2), "TerminateInstances": (100, 5),
    "UnassignPrivateIpAddresses": (100, 5), "UnassignPrivateNatGatewayAddress": (10, 1),
    "WithdrawByoipCidr": (1, 0.1),
}  # fmt: skip
EC2_RESOURCE_INTENSIVE = [
    "AcceptVpcPeeringConnection", "AuthorizeSecurityGroupIngress", "CancelSpotInstanceRequests",
    "CreateKeyPair", "CreateVpcPeeringConnection", "DeleteVpcPeeringConnection",
    "RejectVpcPeeringConnection", "RevokeSecurityGroupIngress", "RequestSpotInstances",
]  # fmt: skip
# Throttling for Amazon Route 53 API requests (Route53/latest/DeveloperGuide/
# throttling-api-requests.html): the rows of the per-action table that could be read.
ROUTE53_ACTIONS: dict[str, tuple[float, float]] = {
    "AssociateVPCWithHostedZone": (20, 5), "ChangeCidrCollection": (40, 5),
    "CreateCidrCollection": (40, 5), "CreateHealthCheck": (50, 0.5), "CreateHostedZone": (40, 2),
    "CreateReusableDelegationSet": (40, 2), "CreateTrafficPolicyInstance": (1, 1),
    "DeleteCidrCollection": (40, 5), "DeleteHealthCheck": (15, 3), "DeleteHostedZone": (40, 5),
    "DeleteReusableDelegationSet": (40, 5), "DeleteTrafficPolicyInstance": (1, 1),
    "DisassociateVPCFromHostedZone": (10, 5), "GetHealthCheckLastFailureReason": (4, 1),
    "GetHealthCheckStatus": (4, 1),
}  # fmt: skip

EC2_DOC = "EC2 API request throttling (ec2/latest/devguide/ec2-api-throttling.html)"
R53_DOC = "Route 53 API request throttling (Route53/latest/DeveloperGuide/throttling-api-requests.html)"


def _aws_default() -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}

    def rule(key: str, burst: float, rate: float, source: str) -> None:
        rules[key] = {"burst": burst, "rate": rate, "source": source}

    # EC2 (documented), per action and Region.
    rule("ec2:*", 50, 5, f"{EC2_DOC}: mutating actions")
    for prefix in ("Describe", "List", "Search", "Get"):
        rule(f"ec2:{prefix}*", 100, 20, f"{EC2_DOC}: non-mutating actions")
    for action in sorted(EC2_UNFILTERED):
        rule(f"ec2:{action}?unfiltered", 50, 10, f"{EC2_DOC}: unfiltered and unpaginated non-mutating actions")
    for action in EC2_RESOURCE_INTENSIVE:
        rule(f"ec2:{action}", 50, 5, f"{EC2_DOC}: resource-intensive actions")
    for action, (burst, rate) in EC2_UNCATEGORIZED.items():
        rule(f"ec2:{action}", burst, rate, f"{EC2_DOC}: uncategorized actions")
    # Auto Scaling: one bucket shared by the whole API (Knowledge Center, "all Amazon EC2
    # Auto Scaling API calls have a single, shared API limit"); its size is not published.
    rule("autoscaling:*#api", 40, 10, "not published: the emulator's conservative figure (one bucket for all of Auto Scaling)")
    # SSM: per action, not published.
    rule("ssm:*", 40, 10, "not published: the emulator's conservative figure, per action")
    # DynamoDB (documented): the control plane's 2,500 requests per second; on-demand tables
    # 40,000 read and 40,000 write request units per second per table (modelled per action).
    dynamodb_control = "DynamoDB control plane throttle, 2,500 requests/s (amazondynamodb/latest/developerguide/bp-control-plane.html)"
    for action in DYNAMODB_CONTROL_PLANE:
        rule(f"dynamodb:{action}#control-plane", 2500, 2500, dynamodb_control)
    for action in sorted(DYNAMODB_DATA_PLANE):
        rule(
            f"dynamodb:{action}",
            40000,
            40000,
            "DynamoDB on-demand per-table quota, 40,000 request units/s (ServiceQuotas.html); one request = one unit, per action",
        )
    # Route 53 (documented): the account-level bucket and each action's own.
    rule("route53:*#account", 50, 10, f"{R53_DOC}: all actions combined (account level)")
    rule("route53:*", 50, 10, f"{R53_DOC}: any action not listed (per action)")
    for action, (burst, rate) in ROUTE53_ACTIONS.items():
        rule(f"route53:{action}", burst, rate, f"{R53_DOC}: per action")
    # SQS standard queues: "a nearly unlimited number of API calls per second, per API
    # action" (no bucket); tagging: "30 TPS per AWS account" (quotas-queues.html).
    for action in ("TagQueue", "UntagQueue", "ListQueueTags"):
        rule(f"sqs:{action}#tagging", 30, 30, "SQS standard queue quotas: tagging actions 30 TPS per account (quotas-queues.html)")
    return rules


PROFILES = {"aws-default": _aws_default}
