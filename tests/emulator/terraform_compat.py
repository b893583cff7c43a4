"""What the Terraform AWS provider (5.100) needs of moto 5.2.5 to apply and destroy
``terraform/examples/complete`` (``scripts/check-terraform-apply``): where moto answers
differently than AWS in a way that broke the apply or the destroy, made the plan right
after the apply differ from the configuration, or hid wiring the check reads. Installed by
``control.build_app`` after :mod:`lifecycle` (it wraps the hook responses that module
installs).

* **Deny statements with conditions.** moto evaluates resource policies (an S3 bucket
  policy on every object request, ``DeleteObjects`` included) with
  ``IAMPolicyStatement.is_action_permitted``, which takes a condition as holding when it
  cannot evaluate it: operators other than ``StringEquals`` are ignored, and keys the
  request context lacks are skipped (moto supplies none for bucket policies). A ``Deny``
  statement with a condition therefore always denies. The proxy fleet's artefact bucket
  has the usual ``Deny s3:* if aws:SecureTransport is false`` statement, so every object
  request was refused with 403 (``PutObject`` once the policy exists, ``HeadObject`` on
  refresh, ``DeleteObjects`` on destroy). AWS: a statement applies only when its
  conditions hold, and a condition on a key absent from the request does not hold. Here a
  ``Deny`` statement with a ``Condition`` applies only when moto can show it holds: every
  operator is one moto evaluates and every key is in the context moto supplied; otherwise
  it does not apply (``NEUTRAL``). ``Allow`` statements keep moto's (lenient) reading.
* **Lifecycle hooks.** moto gives every hook a made-up ``RoleARN``
  (``arn:aws:iam::1234567890:role/my-auto-scaling-role``) and ``NotificationTargetARN``
  (``arn:aws:sqs:us-east-1:123456789012:my-queue``), so ``DescribeLifecycleHooks`` showed
  targets nobody configured (and the provider planned to remove them on every plan).
  Here a hook has the ``RoleARN`` / ``NotificationTargetARN`` it was put with
  (``PutLifecycleHook``, ``CreateAutoScalingGroup``'s ``LifecycleHookSpecificationList``),
  or none. (Notifications to such targets are still not sent: EventBridge only.)
* **Lambda dead-letter queue and logging.** moto drops ``DeadLetterConfig`` and
  ``LoggingConfig`` of ``CreateFunction`` / ``UpdateFunctionConfiguration``;
  ``GetFunction`` answered neither, so the reactor's dead-letter queue was invisible.
  Here both are kept and returned; without ``LoggingConfig`` the answer is AWS's default
  (``LogFormat`` ``Text``, ``LogGroup`` ``/aws/lambda/<name>``).
* **Security group rules that reference a group.** ``DescribeSecurityGroupRules`` answered
  no ``Description`` for a rule whose source is a security group (moto reads it from the
  CIDR part only). Here the group part's description is returned too.
* **Launch template tags.** ``CreateLaunchTemplate``'s own ``TagSpecifications`` (resource
  type ``launch-template``: tags of the template) were also copied into the first
  version's ``LaunchTemplateData.TagSpecifications``, where AWS never has (or accepts)
  that resource type; the provider then saw a version differing from its configuration.
  Here they tag the template only.
* **NAT gateway deletion.** ``DeleteNatGateway`` left the gateway's network interface in
  place, its Elastic IP still associated with it. AWS deletes the interface with the
  gateway and the address is free again. Here both happen at once.
* **Network Load Balancers.** Without ``Scheme`` (the provider sends none for an
  internet-facing balancer) moto answered no ``Scheme`` at all; AWS's default is
  ``internet-facing``. And every balancer's ARN was
  ``...:loadbalancer/app/<name>/<id>``; AWS's network (and gateway) balancers are
  ``loadbalancer/net/...`` (``gwy/``), and their listeners ``listener/net/...``. Here both
  are as AWS has them.
* **Classic ELB hosted zone.** ``DescribeLoadBalancers`` (``elb``) answered no
  ``CanonicalHostedZoneNameID``, so an alias record to a classic ELB could not be made
  (``load_balancer_type = "elb"``). Here it is a fixed made-up id, ``Z3DZXE0EXAMPLE``, as
  moto's ELBv2 answers ``Z2P70J7EXAMPLE`` (AWS's ids are per region). And
  ``ModifyLoadBalancerAttributes`` answered a connection draining timeout of 300 s whatever
  was set (the request's ``Timeout`` was kept under another key than moto's), and reset it
  to 300 s when a later request gave ``Enabled`` alone, as the provider's second call does.
  Here the timeout set is kept until another one is set (300 s before any).
- a queue's ``RedrivePolicy`` is answered compact, as AWS keeps it (moto re-serialised it
  with spaces, and the provider, which compares it as a string, then planned an in-place
  change after every apply).
"""

from __future__ import annotations

from typing import Any


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _deny_conditions()
    _lifecycle_hook_targets()
    _lambda_config()
    _security_group_rule_description()
    _launch_template_tags()
    _nat_gateway_network_interface()
    _load_balancer_scheme_and_arn()
    _classic_load_balancer_zone()
    _compact_redrive_policy()


def _deny_conditions() -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    original = IAMPolicyStatement.is_action_permitted

    def is_action_permitted(
        self: Any,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        condition = self._statement.get("Condition")
        if condition and self._statement.get("Effect") == "Deny":
            if not _holds(condition, incoming_condition_values):
                return PermissionResult.NEUTRAL
        return original(self, action, resource, principal, incoming_condition_values)

    IAMPolicyStatement.is_action_permitted = is_action_permitted  # type: ignore[method-assign]


def _holds(condition: dict[str, Any], context: dict[str, str] | None) -> bool:
    """Whether moto can show that a statement's Condition block holds in this context."""
    from moto.iam.policy_conditions import CONDITION_OPERATIONS

    if not isinstance(condition, dict):
        return False
    for operator, pairs in condition.items():
        check = CONDITION_OPERATIONS.get(operator)
        if check is None or not isinstance(pairs, dict):
            return False
        for key, expected in pairs.items():
            if not context or key not in context or not check(expected, context[key]):
                return False
    return True


def _lifecycle_hook_targets() -> None:
    from moto.autoscaling import models as asm
    from moto.autoscaling import responses as asr

    original_init = asm.LifecycleHook.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.role_arn = None
        self.notification_target_arn = None

    asm.LifecycleHook.__init__ = __init__  # type: ignore[method-assign]

    def keep(backend: Any, group: str, name: str, role: str | None, target: str | None) -> None:
        hook = backend.lifecycle_hooks.get(f"{group}_{name}")
        if hook is not None:
            hook.role_arn = role or None
            hook.notification_target_arn = target or None

    put = asr.AutoScalingResponse.put_lifecycle_hook

    def put_lifecycle_hook(self: Any) -> Any:
        result = put(self)
        keep(
            self.autoscaling_backend,
            self._get_param("AutoScalingGroupName"),
            self._get_param("LifecycleHookName"),
            self._get_param("RoleARN"),
            self._get_param("NotificationTargetARN"),
        )
        return result

    create = asr.AutoScalingResponse.create_auto_scaling_group

    def create_auto_scaling_group(self: Any) -> Any:
        result = create(self)
        group = self._get_param("AutoScalingGroupName")
        for spec in self._get_param("LifecycleHookSpecificationList", []) or []:
            keep(
                self.autoscaling_backend,
                group,
                spec.get("LifecycleHookName"),
                spec.get("RoleARN"),
                spec.get("NotificationTargetARN"),
            )
        return result

    asr.AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook  # type: ignore[method-assign]
    asr.AutoScalingResponse.create_auto_scaling_group = create_auto_scaling_group  # type: ignore[method-assign]


def _lambda_config() -> None:
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def __init__(self: Any, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.dead_letter_config = spec.get("DeadLetterConfig") or None
        self.logging_config = spec.get("LoggingConfig") or None

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original_get(self, *args, **kwargs)
        dead_letter = getattr(self, "dead_letter_config", None)
        if dead_letter and dead_letter.get("TargetArn"):
            config["DeadLetterConfig"] = {"TargetArn": dead_letter["TargetArn"]}
        logging = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{self.function_name}"}
        logging.update({k: v for k, v in (getattr(self, "logging_config", None) or {}).items() if v})
        config["LoggingConfig"] = logging
        return config

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "DeadLetterConfig" in config_updates:
            self.dead_letter_config = config_updates["DeadLetterConfig"] or None
        if "LoggingConfig" in config_updates:
            self.logging_config = config_updates["LoggingConfig"] or None
        return original_update(self, config_updates)

    LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]


def _security_group_rule_description() -> None:
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self: Any) -> str | None:
        return self.ip_range.get("Description") or self.source_group.get("Description")

    SecurityGroupRule.description = property(description)  # type: ignore[assignment,method-assign]


def _launch_template_tags() -> None:
    from moto.ec2.responses.launch_templates import LaunchTemplates

    original = LaunchTemplates.create_launch_template

    def create_launch_template(self: Any) -> Any:
        result = original(self)
        template = self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName"))
        for version in template.versions:
            specs = version.data.get("TagSpecifications")
            if specs:
                kept = [spec for spec in specs if spec.get("ResourceType") != "launch-template"]
                if kept:
                    version.data["TagSpecifications"] = kept
                else:
                    del version.data["TagSpecifications"]
        return result

    LaunchTemplates.create_launch_template = create_launch_template  # type: ignore[method-assign]


def _nat_gateway_network_interface() -> None:
    from moto.ec2.models.nat_gateways import NatGatewayBackend

    original = NatGatewayBackend.delete_nat_gateway

    def delete_nat_gateway(self: Any, nat_gateway_id: str) -> Any:
        nat = original(self, nat_gateway_id)
        eni = getattr(nat, "_eni", None)
        if eni is not None and eni.id in self.enis:
            for address in list(self.addresses):
                if address.eni is eni and address.association_id:
                    self.disassociate_address(association_id=address.association_id)
            self.enis.pop(eni.id, None)
        return nat

    NatGatewayBackend.delete_nat_gateway = delete_nat_gateway  # type: ignore[method-assign]


def _load_balancer_scheme_and_arn() -> None:
    from moto.elbv2.models import ELBv2Backend

    original = ELBv2Backend.create_load_balancer
    prefixes = {"network": "net", "gateway": "gwy"}

    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "scheme" in kwargs and not kwargs["scheme"]:
            kwargs["scheme"] = "internet-facing"
        balancer = original(self, *args, **kwargs)
        prefix = prefixes.get(balancer.type)
        if prefix and ":loadbalancer/app/" in balancer.arn:
            old = balancer.arn
            new = old.replace(":loadbalancer/app/", f":loadbalancer/{prefix}/", 1)
            tags = self.tagging_service.list_tags_for_resource(old).get("Tags", [])
            self.tagging_service.delete_all_tags_for_resource(old)
            self.load_balancers[new] = self.load_balancers.pop(old)
            balancer.arn = new
            if tags:
                self.tagging_service.tag_resource(new, tags)
        return balancer

    ELBv2Backend.create_load_balancer = create_load_balancer  # type: ignore[method-assign]


def _classic_load_balancer_zone() -> None:
    from moto.elb.models import ELBBackend, LoadBalancer

    LoadBalancer.canonical_hosted_zone_name_id = property(lambda self: "Z3DZXE0EXAMPLE")  # type: ignore[attr-defined]

    original = ELBBackend.modify_load_balancer_attributes

    def modify_load_balancer_attributes(self: Any, load_balancer_name: str, *args: Any, **kwargs: Any) -> Any:
        draining = kwargs.get("connection_draining")
        if draining:
            # moto's own keys are "enabled", "timeout"; the request's "Enabled", "Timeout".
            given = {key[:1].lower() + key[1:]: value for key, value in draining.items()}
            current = self.get_load_balancer(load_balancer_name).attributes.get("connection_draining") or {}
            given.setdefault("timeout", current.get("timeout", 300))
            kwargs["connection_draining"] = given
        return original(self, load_balancer_name, *args, **kwargs)

    ELBBackend.modify_load_balancer_attributes = modify_load_balancer_attributes  # type: ignore[method-assign]


def _compact_redrive_policy() -> None:
    import json

    from moto.sqs.models import Queue

    original = Queue.attributes

    def attributes(self: Any) -> dict[str, Any]:
        result = original.fget(self)  # type: ignore[union-attr]
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
        return result

    Queue.attributes = property(attributes)  # type: ignore[method-assign,assignment]
