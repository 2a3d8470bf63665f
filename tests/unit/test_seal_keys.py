"""The seal keys (sessrec/seal.py): keygen, the node chain on disk, restarts."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from sessrec import seal
from sessrec.cli import ExitStatus, main


def keygen(tmp_path: Path) -> tuple[Path, seal.VerifyKey]:
    path = tmp_path / "etc" / "seal.key"
    return path, seal.create_seal_key(str(path))


def test_keygen_writes_only_the_evolving_state_mode_0600(tmp_path: Path) -> None:
    path, vk = keygen(tmp_path)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = path.read_bytes()
    assert len(data) == seal.STATE_LEN
    assert vk.seed.hex().encode() not in data  # the seed stays with the auditor
    assert vk.node.encode() in data
    assert seal.seal_key_status(str(path)) == seal.SealKeyStatus(vk.node, 0)


def test_each_file_takes_the_next_epoch_and_its_key_from_the_seed(tmp_path: Path) -> None:
    path, vk = keygen(tmp_path)
    for epoch in range(3):
        before = path.read_bytes()
        s = seal.start_file(str(path))
        assert (s.node_id, s.epoch) == (vk.node_id, epoch)
        assert bytes(s._key) == vk.file_key(epoch)
        # The state on disk moved on: its old key is gone, overwritten in place.
        after = path.read_bytes()
        assert len(after) == seal.STATE_LEN and after != before
        old_key = before.split(b"key=")[1][:64]
        assert old_key not in after
    assert seal.seal_key_status(str(path)).next_epoch == 3


def test_a_restart_continues_the_chain_and_never_reuses_a_key(tmp_path: Path) -> None:
    """A new process (a recorder or daemon restarted) reads the state the last
    one left: its file keys are new ones, never an earlier epoch's."""
    path, vk = keygen(tmp_path)
    keys = [bytes(seal.start_file(str(path))._key) for _ in range(5)]
    assert len(set(keys)) == 5
    assert keys == [vk.file_key(e) for e in range(5)]


def test_the_node_chain_crosses_a_block(tmp_path: Path) -> None:
    vk = seal.VerifyKey.generate()
    state = seal._State.first(vk)
    state.epoch = seal.BLOCK - 2
    state.key[:] = vk.node_key(seal.BLOCK - 2)
    top = vk.seed
    top = seal._h(seal._TOP, top)
    state.top[:] = top
    for epoch in (seal.BLOCK - 1, seal.BLOCK, seal.BLOCK + 1):
        state.advance()
        assert state.epoch == epoch
        assert bytes(state.key) == vk.node_key(epoch)


def test_the_state_cannot_lead_back_to_an_earlier_epoch(tmp_path: Path) -> None:
    """What root finds on the host at epoch e is N(e) and T(h+1): hashing them
    forward never meets an earlier epoch's key (checked for a few steps)."""
    path, vk = keygen(tmp_path)
    for _ in range(4):
        seal.start_file(str(path))
    state = seal._parse_state(path.read_bytes(), str(path))
    earlier = {vk.node_key(e) for e in range(4)}
    key = bytes(state.key)
    for _ in range(50):
        assert key not in earlier
        key = seal._h(seal._NEXT, key)


def test_keygen_refuses_to_replace_a_key_without_force(tmp_path: Path) -> None:
    path, _ = keygen(tmp_path)
    with pytest.raises(seal.SealKeyError, match="already exists; --force"):
        seal.create_seal_key(str(path))
    seal.create_seal_key(str(path), force=True)


@pytest.mark.parametrize("damage", [
    lambda b: b[:-5],                                # cut
    lambda b: b.replace(b"epoch=0", b"epoch=1", 1),  # edited
    lambda b: b"garbage\n",
    lambda b: b"",
])
def test_a_damaged_state_is_refused(tmp_path: Path, damage: object) -> None:
    path, _ = keygen(tmp_path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(seal.SealKeyError, match="seal key"):
        seal.start_file(str(path))


def test_a_state_readable_by_others_is_refused(tmp_path: Path) -> None:
    path, _ = keygen(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(seal.SealKeyError, match="mode 0600"):
        seal.start_file(str(path))


def test_verify_key_parsing(tmp_path: Path) -> None:
    vk = seal.VerifyKey.generate()
    assert seal.VerifyKey.load(str(vk)) == vk
    f = tmp_path / "k"
    f.write_text(f"# a comment\n\n{vk}\n")
    assert seal.VerifyKey.load(str(f)) == vk
    assert vk.seed.hex() not in repr(vk)
    for bad in ("sessrec-verify-1:zz", str(vk)[:-1], str(vk) + "0"):
        with pytest.raises(seal.SealKeyError, match="not a sessrec verification key"):
            seal.VerifyKey.load(bad)
    with pytest.raises(seal.SealKeyError, match=r"cannot read key .*No such file"):
        seal.VerifyKey.load(str(tmp_path / "missing"))
    f.write_bytes(b"\xff\xfe" * 3000)
    with pytest.raises(seal.SealKeyError, match="not a sessrec verification key"):
        seal.VerifyKey.load(str(f))


def test_keygen_command(tmp_path: Path) -> None:
    key = tmp_path / "seal.key"
    out, err = io.StringIO(), io.StringIO()
    assert main(["keygen", "--seal-key", str(key)], out, err) == ExitStatus.OK
    vk = seal.VerifyKey.parse(out.getvalue())
    assert "keep it off this host" in out.getvalue().lower()
    assert seal.seal_key_status(str(key)).node == vk.node
    out, err = io.StringIO(), io.StringIO()
    assert main(["keygen", "--seal-key", str(key)], out, err) == 1
    assert "already exists" in err.getvalue() and "Traceback" not in err.getvalue()
    out = io.StringIO()
    assert main(["keygen", "--seal-key", str(key), "--status"], out, err) == ExitStatus.OK
    assert f"node {vk.node}" in out.getvalue() and "the next is #0" in out.getvalue()
    vfile = tmp_path / "auditor.key"
    out = io.StringIO()
    assert main(["keygen", "--seal-key", str(key), "--force", "--verify-key", str(vfile)],
                out, err) == ExitStatus.OK
    assert stat.S_IMODE(vfile.stat().st_mode) == 0o600
    assert seal.VerifyKey.load(str(vfile)).node == seal.seal_key_status(str(key)).node
