"""build/lambda.zip: reproducible layout, and the real build with wheels for Linux arm64 (needs pip's network)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def python312() -> str:
    """The Lambda runtime's Python, as the build finds it (the CI machine has it through pyenv)."""
    try:
        return package.lambda_python()
    except package.PackageError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_the_documented_command_builds_a_zip_for_lambda_on_arm64(tmp_path: Path, python312: str) -> None:
    from aurora_restore.simulate.localdb import make_certificates

    _, _, ca = make_certificates(tmp_path / "ca")
    bundle = tmp_path / "global-bundle.pem"
    shutil.copy(ca, bundle)
    # GIVEN nothing but the checkout; WHEN the documented command builds the zip
    output = tmp_path / "lambda.zip"
    subprocess.run(
        [sys.executable, "-m", "infra.package", "-o", str(output), "--ca-bundle", str(bundle)],
        cwd=ROOT,
        check=True,
        timeout=600,
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
        # AND the CA bundle, where DbCaBundle=/var/task/certs/global-bundle.pem finds it
        assert archive.read("certs/global-bundle.pem") == bundle.read_bytes()
        # AND every module's bytecode for Python 3.12, where 3.12 looks for it
        modules = [n for n in names if n.endswith(".py")]
        missing = [n for n in modules if cache_of(n) not in names]
        assert modules and missing == []
        assert not [n for n in names if n.endswith(".pyc") and ".cpython-312." not in n]


def test_the_build_refuses_without_a_ca_bundle_naming_where_to_get_it(tmp_path: Path) -> None:
    def build(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infra.package", "-o", str(tmp_path / "lambda.zip"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    # WHEN the zip is built without saying anything about the bundle
    result = build()
    # THEN it is refused before any download, saying where the bundle comes from and the way out
    assert result.returncode == 2
    assert "--ca-bundle PEM is required" in result.stderr
    assert package.RDS_BUNDLE_URL in result.stderr
    assert "--no-ca-bundle" in result.stderr and "DbTlsVerify=false" in result.stderr
    # AND a bundle path that is not there is named
    result = build("--ca-bundle", str(tmp_path / "global-bundle.pem"))
    assert result.returncode == 2
    assert f"--ca-bundle {tmp_path / 'global-bundle.pem'}: no such file" in result.stderr
    assert not (tmp_path / "lambda.zip").exists()


def test_without_the_runtimes_python_the_build_refuses_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(package, "_python_version", lambda python: "3.11")
    with pytest.raises(package.PackageError) as caught:
        package.lambda_python()
    message = str(caught.value)
    assert "must be compiled by Python 3.12" in message and "python3.12" in message
    assert "--python" in message and "--no-compile" in message
    with pytest.raises(package.PackageError, match=r"--python /usr/bin/python3 is Python 3.11"):
        package.lambda_python("/usr/bin/python3")


def cache_of(module: str) -> str:
    """Where Python 3.12 looks for a module's bytecode, as a zip entry name."""
    folder, _, name = module.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.cpython-312.pyc".lstrip("/")


def test_the_shipped_bytecode_is_what_python312_imports_nothing_is_compiled(
    tmp_path: Path, python312: str
) -> None:
    # GIVEN the project and a pure-Python dependency the handler imports, compiled as the build does
    import structlog

    staging = tmp_path / "staging"
    package.copy_project(staging)
    shutil.copytree(
        Path(structlog.__file__).parent, staging / "structlog", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert package.compile_bytecode(staging, python312) > 50
    zipped = package.write_zip(staging, tmp_path / "lambda.zip", bytecode=True)
    task = tmp_path / "task"
    with zipfile.ZipFile(zipped) as archive:
        names = set(archive.namelist())
        archive.extractall(task)
    # AND every source in the unpacked tree made uncompilable: only the shipped .pyc can load
    for source in task.rglob("*.py"):
        source.write_text("this is not Python (\n")
    before = sorted(p.relative_to(task).as_posix() for p in task.rglob("*"))

    # WHEN Python 3.12 imports the handler and loads every step, as a cold start does
    probe = (
        "import json, sys\n"
        "import dispatcher.handler\n"
        "from dispatcher.registry import load_builtin_steps\n"
        "load_builtin_steps()\n"
        f"task = {str(task)!r}\n"
        "mods = {n: (m.__file__, m.__cached__) for n, m in list(sys.modules.items())"
        " if (getattr(m, '__file__', None) or '').startswith(task)}\n"
        "print(json.dumps({'version': list(sys.version_info[:2]), 'modules': mods}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(task), PYTHONNOUSERSITE="1", AWS_XRAY_SDK_ENABLED="false")
    result = subprocess.run(
        [python312, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )

    # THEN it worked from the bytecode alone (a compiled source would have been a SyntaxError)
    assert result.returncode == 0, result.stderr[-2000:]
    seen: dict[str, Any] = json.loads(result.stdout)
    assert seen["version"] == [3, 12]
    modules = seen["modules"]
    assert {"dispatcher.handler", "steps.setup_db_users", "structlog"} <= set(modules)
    for _name, (_file, cached) in modules.items():
        assert Path(cached).relative_to(task).as_posix() in names
    # AND nothing was written next to the code (/var/task is read-only on Lambda)
    assert sorted(p.relative_to(task).as_posix() for p in task.rglob("*")) == before
    # AND the code names its files where Lambda puts them, whatever directory built it
    pyc = (staging / "dispatcher" / "__pycache__" / "handler.cpython-312.pyc").read_bytes()
    assert b"/var/task/dispatcher/handler.py" in pyc and str(staging).encode() not in pyc


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


def test_only_the_runtimes_bytecode_ships(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    package.copy_project(staging)
    cache = staging / "dispatcher" / "__pycache__"
    cache.mkdir()
    (cache / "handler.cpython-312.pyc").write_bytes(b"312")
    (cache / "handler.cpython-311.pyc").write_bytes(b"311")
    with zipfile.ZipFile(package.write_zip(staging, tmp_path / "with.zip", bytecode=True)) as archive:
        pycs = [n for n in archive.namelist() if n.endswith(".pyc")]
    assert pycs == ["dispatcher/__pycache__/handler.cpython-312.pyc"]


def test_a_ca_bundle_ships_under_certs_and_a_non_pem_file_is_refused(tmp_path: Path) -> None:
    from aurora_restore.simulate.localdb import make_certificates

    _, _, ca = make_certificates(tmp_path / "ca")
    bundle = tmp_path / "global-bundle.pem"
    shutil.copy(ca, bundle)
    shipped = package.add_ca_bundle(bundle, tmp_path / "staging")
    assert shipped == tmp_path / "staging" / "certs" / "global-bundle.pem"
    assert shipped.read_text() == bundle.read_text()

    not_pem = tmp_path / "index.html"
    not_pem.write_text("<html>Access denied</html>")
    with pytest.raises(package.PackageError, match="holds no PEM certificate"):
        package.add_ca_bundle(not_pem, tmp_path / "staging")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(package.PackageError, match="holds no usable PEM certificate"):
        package.add_ca_bundle(broken, tmp_path / "staging")
    assert sorted(p.name for p in (tmp_path / "staging" / "certs").iterdir()) == ["global-bundle.pem"]
