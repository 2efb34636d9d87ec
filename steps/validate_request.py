"""validate_request: the first state; turns the execution input into the validated ``$.request``."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from dispatcher.errors import ValidationError
from dispatcher.registry import Step, register
from refresh.request import RestoreRequest, peek_operation_id
from refresh.safety import describe_cluster
from refresh.users_spec import check_secret_prefix
from steps.lib.pg_connect import check_ca_bundle
from steps.lib.restoring import check_new_target_placement

if TYPE_CHECKING:
    from dispatcher.context import StepContext
    from dispatcher.settings import Settings


@register("validate_request", state_name="ValidateRequest")
class ValidateRequest(Step):
    """Validate the request (wrapped as {"body": ...} or unwrapped) and record it on the state item."""

    aws_actions = (
        "rds:DescribeDBClusters",
        "rds:DescribeDBSubnetGroups",
    )
    pipeline_role = "first"
    reads = ("$",)
    result_key = "request"
    output_doc = (
        "the validated request (`RestoreRequest.to_dict()`), `operation_id` always set; refuses a "
        "`target_region` other than the stack's own and a new target (one DescribeDBClusters) with no "
        "subnet group or security groups in the request or the stack"
    )
    produces_request = True
    request_model = RestoreRequest
    outputs = tuple(f.name for f in fields(RestoreRequest))
    mutating = False

    def operation_id(self, event: dict[str, Any]) -> str | None:
        """The request's own id when it has a valid one, else one derived from the execution."""
        return peek_operation_id(event.get("input"), event.get("execution_id"))

    def run(self, ctx: StepContext) -> dict[str, Any]:
        """Return the validated request with every default filled in."""
        request = RestoreRequest.from_event(ctx.event.get("input"), execution_id=ctx.execution_id)
        # The stack's secrets prefix is a setting, not part of the request: checked here, still first.
        check_secret_prefix(request.users, ctx.settings.secrets_prefix)
        check_served_region(request, ctx.settings)
        # A DbCaBundle path the zip does not hold would otherwise surface in setup_db_users, hours
        # in; an empty one with verification on is refused by the template's rule at deploy time.
        if ctx.settings.db_tls_verify and ctx.settings.db_ca_bundle:
            check_ca_bundle(ctx.settings.db_ca_bundle)
        # A new target needs a subnet group and security groups from somewhere (one read call).
        if describe_cluster(ctx.aws("rds", request.target_region), request.target_cluster_id) is None:
            check_new_target_placement(request, ctx.settings, request.target_region)
        data = request.to_dict()
        ctx.store.record_request(request.operation_id, data)
        return data

    def recorded_output(self, output: dict[str, Any]) -> dict[str, Any]:
        """The request is on the state item already (``request``): not a second copy of it."""
        return {"recorded_as": "request", "summary": self.summarize(output)}

    def summarize(self, output: dict[str, Any]) -> str:
        """One line an operator recognises."""
        return (
            f"{output['snapshot_id']} ({output['source_region']}) -> {output['target_cluster_id']} "
            f"({output['target_region']}), strategy {output['strategy']}"
        )


def check_served_region(request: RestoreRequest, settings: Settings) -> None:
    """Refuse a target region other than the stack's own.

    A stack serves one region: its KMS key, its VPC and its endpoints are there, and its role may
    restore and replace only there (``aws:RequestedRegion``), so IAM would refuse any other region
    hours later, after the copy. Outside Lambda with no ``AWS_REGION`` the stack region is unknown
    and this check has nothing to compare with.
    """
    if settings.stack_region and request.target_region != settings.stack_region:
        raise ValidationError(
            "target_region",
            request.target_region,
            f"is not served by this stack; allowed: {settings.stack_region} (the stack's own region). "
            f"Deploy a stack in {request.target_region} to refresh clusters there",
        )
