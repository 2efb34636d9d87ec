"""build/lambda.zip: reproducible layout, and the real build with wheels for Linux arm64 (needs pip's network)."""

from __future__ import annotations

import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import package

ROOT = Path(__file__).resolve().parents[2]
#: ELF e_machine of 64-bit ARM.
EM_AARCH64 = 183


def elf_machine(data: bytes) -> int:
    """The e_machine field of an ELF header (little endian, offset 18)."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    machine: int = struct.unpack_from("<H", data, 18)[0]
    return machine


@pytest.mark.slow
def test_the_documented_command_builds_a_zip_for_lambda_on_arm64(tmp_path: Path) -> None:
    # GIVEN nothing but the checkout; WHEN the documented command builds the zip
    output = tmp_path / "lambda.zip"
    subprocess.run(
        [sys.executable, "-m", "infra.package", "-o", str(output)], cwd=ROOT, check=True, timeout=600
    )

    # THEN it holds the code and asyncpg's aarch64 build, and not the runtime's own boto3
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
        top = {n.split("/")[0] for n in names}
        assert {"dispatcher", "steps", "asyncpg", "structlog", "aws_xray_sdk"} <= top
        assert not {"boto3", "botocore", "s3transfer"} & top
        assert "dispatcher/handler.py" in names
        shared = [n for n in names if n.startswith("asyncpg/") and n.endswith(".so")]
        assert shared and all("cpython-312-aarch64-linux-gnu" in n for n in shared)
        assert {elf_machine(archive.read(n)) for n in shared} == {EM_AARCH64}


def test_the_zip_is_reproducible_and_carries_no_caches(tmp_path: Path) -> None:
    # GIVEN the project's code copied twice into staging directories
    first, second = tmp_path / "a", tmp_path / "b"
    for staging in (first, second):
        package.copy_project(staging)
        (staging / "dispatcher" / "__pycache__").mkdir(exist_ok=True)
        (staging / "dispatcher" / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"stale")
        (staging / "lib.so").write_bytes(b"\x7fELF")

    # WHEN each is zipped
    one = package.write_zip(first, tmp_path / "one.zip")
    two = package.write_zip(second, tmp_path / "two.zip")

    # THEN the zips are byte for byte the same, sorted, without caches, .so files executable
    assert one.read_bytes() == two.read_bytes()
    with zipfile.ZipFile(one) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert "dispatcher/handler.py" in names and "steps/validate_request.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert (archive.getinfo("lib.so").external_attr >> 16) & 0o777 == 0o755
        assert (archive.getinfo("dispatcher/handler.py").external_attr >> 16) & 0o777 == 0o644


def test_a_ca_bundle_ships_under_certs_and_a_non_pem_file_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    shipped = package.add_ca_bundle(bundle, tmp_path / "staging")
    assert shipped == tmp_path / "staging" / "certs" / "global-bundle.pem"
    assert shipped.read_text() == bundle.read_text()

    not_pem = tmp_path / "index.html"
    not_pem.write_text("<html>Access denied</html>")
    with pytest.raises(SystemExit, match="holds no PEM certificate"):
        package.add_ca_bundle(not_pem, tmp_path / "staging")
    assert not (tmp_path / "staging" / "certs" / "index.html").exists()
