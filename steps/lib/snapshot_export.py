"""The stack's settings for exporting the archived snapshot to S3.

The snapshot check refuses incomplete settings before anything changes, and the archive step
checks them again before starting the export (a stack updated in between must not start an
export that RDS would refuse hours into the refresh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.errors import ValidationError
from dispatcher.settings import PREFIX

if TYPE_CHECKING:
    from dispatcher.settings import Settings


def check_export_settings(settings: Settings) -> None:
    """An export bucket without its role or key would only fail after the restore: refuse now."""
    if not settings.export_bucket:
        return
    for name, value in (
        ("EXPORT_ROLE_ARN", settings.export_role_arn),
        ("EXPORT_KMS_KEY_ID", settings.export_kms_key_id),
    ):
        if not value:
            raise ValidationError(
                PREFIX + name,
                value,
                f"is required when {PREFIX}EXPORT_BUCKET is set ({settings.export_bucket}); "
                "set both ExportRoleArn and ExportKmsKeyId on the stack, or clear ExportBucket",
            )
