"""Bad input to `sessrec record` fails early, with one clear line and the
right exit status, and before the command runs."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from krec import NOBODY, SESSREC, info, run_cli

pytestmark = pytest.mark.kernel

SH = "/bin/sh"


def one_error_line(stderr: str) -> None:
    assert stderr.startswith("sessrec: error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def test_not_root(tmp_path: Path) -> None:
    out = Path(f"/tmp/sessrec-nobody-{uuid.uuid4()}.srec")  # writable by nobody
    marker = Path(f"/tmp/sessrec-nobody-{uuid.uuid4()}.ran")
    try:
        r = subprocess.run([*NOBODY, SESSREC, "record", "-o", str(out), "--",
                            SH, "-c", f"echo > {marker}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 4
        one_error_line(r.stderr)
        assert "root" in r.stderr
        assert not marker.exists()
        assert not out.exists()
    finally:
        out.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)


@pytest.mark.parametrize("where", ["/proc/nope/x.srec", "{tmp}/no-such-dir/x.srec", "{tmp}"])
def test_unwritable_output_fails_before_the_command(tmp_path: Path, where: str) -> None:
    out = where.format(tmp=tmp_path)
    marker = tmp_path / "ran"
    status, _, err = run_cli("record", "-o", out, "--", SH, "-c", f"echo > {marker}")

    assert status == 1
    one_error_line(err)
    assert f"cannot write {out}" in err
    assert not marker.exists()


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "existing.srec"
    out.write_bytes(b"precious")
    marker = tmp_path / "ran"
    cmd = [SH, "-c", f"echo > {marker}"]

    status, _, err = run_cli("record", "-o", out, "--", *cmd)
    assert status == 2
    one_error_line(err)
    assert "--force" in err
    assert out.read_bytes() == b"precious"
    assert not marker.exists()

    status, _, err = run_cli("record", "--force", "-o", out, "--", *cmd)
    assert status == 0, err
    assert marker.exists()
    assert info(out)["command"] == cmd
    assert info(out)["complete"] is True


def test_record_without_command_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "x.srec"
    for argv in (["record", "-o", str(out)], ["record", "-o", str(out), "--"]):
        status, _, err = run_cli(*argv)
        assert status == 2
        one_error_line(err)
        assert "no command" in err
    assert not out.exists()


def test_missing_cwd_fails_before_the_command(tmp_path: Path) -> None:
    out = tmp_path / "x.srec"
    missing = tmp_path / "no-such-dir"
    marker = tmp_path / "ran"
    status, _, err = run_cli("record", "-o", out, "-C", missing, "--",
                             SH, "-c", f"echo > {marker}")

    assert status == 1  # not 127: the command exists
    one_error_line(err)
    assert str(missing) in err
    assert not marker.exists()
    assert not out.exists()
