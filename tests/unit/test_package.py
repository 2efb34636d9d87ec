"""The Lambda zip's ingredients and its reproducible layout (the real build: tests/functional)."""

from __future__ import annotations

from infra import package
from infra.build_template import LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME


def test_runtime_requirements_leave_out_what_lambda_provides() -> None:
    requirements = package.runtime_requirements()
    names = {package._name(r) for r in requirements}
    assert "boto3" not in names and "botocore" not in names
    assert {"asyncpg", "structlog", "aws-xray-sdk"} <= names


def test_the_zip_is_built_for_the_functions_runtime_and_architecture() -> None:
    assert LAMBDA_RUNTIME == "python" + package.PYTHON_VERSION
    assert LAMBDA_ARCHITECTURE == "arm64"
    assert all(platform.endswith("_aarch64") for platform in package.PLATFORMS)
    assert "--only-binary=:all:" in package._platform_options()
