"""Reading the restored cluster's master password back from its secret (RDS's or the stack's).

setup_db_users resets the password and keeps it in a secret; the checks connect with it afterwards.
The password is returned to the caller and never logged, recorded or put in an output.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dispatcher.aws import error_code
from refresh.errors import DatabaseSetupFailed
from refresh.request import request_of

if TYPE_CHECKING:
    from dispatcher.context import StepContext


def read_master_password(ctx: StepContext, secret_arn: str) -> str:
    """The master password from its secret (RDS's or the stack's)."""
    request = request_of(ctx)
    sm = ctx.aws("secretsmanager", request.target_region)
    try:
        value = sm.get_secret_value(SecretId=secret_arn)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise DatabaseSetupFailed(
                f"the master user secret {secret_arn} has no current value yet; the step will wait for it "
                "when retried",
                secret_arn=secret_arn,
            ) from None
        raise
    try:
        password = json.loads(value.get("SecretString") or "")["password"]
    except (ValueError, KeyError, TypeError):
        raise DatabaseSetupFailed(
            f"the master user secret {secret_arn} does not hold a JSON object with a 'password' field",
            secret_arn=secret_arn,
        ) from None
    return str(password)
