"""The daemon's configuration file: schema, defaults, and errors that name
the file, the line and the key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sessrec import config
from sessrec.cli import main


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "sessrec.toml"
    p.write_text(text)
    return str(p)


def test_defaults_when_the_default_file_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "none.toml"))
    cfg = config.load()
    assert cfg == config.Config()
    assert cfg.output_dir == "/var/lib/sessrec/sessions"
    assert cfg.control_socket == "/run/sessrec/control.sock"
    assert cfg.linger == 600.0 and cfg.enrolment == "pam" and cfg.cgroup_root == "sessrec"
    assert cfg.race_check is False


def test_every_key(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, """
enabled = false
output_dir = "/srv/rec"
control_socket = "/run/x/c.sock"
events = ["network", "command"]
ring_size = "4MiB"
cgroup_root = "rec"
race_check = true
linger = "30s"
enrolment = "logind"
logind_root = "test.slice/user.slice"

[users]
include = ["alice", 1001]
exclude = ["root", 0]

[retention]
max_age = "90d"
max_total_size = "20GiB"
"""))
    assert cfg.enabled is False
    assert cfg.output_dir == "/srv/rec" and cfg.control_socket == "/run/x/c.sock"
    assert cfg.events == ("command", "network")
    assert cfg.ring_size == 4 << 20
    assert cfg.cgroup_root == "rec" and cfg.linger == 30.0 and cfg.enrolment == "logind"
    assert cfg.race_check is True
    assert cfg.logind_root == "test.slice/user.slice"
    assert cfg.users_include == ("alice", 1001) and cfg.users_exclude == ("root", 0)
    assert cfg.retention_max_age == 90 * 86400
    assert cfg.retention_max_total_size == 20 << 30


def test_users_exclude_wins() -> None:
    cfg = config.Config(users_include=("alice", 0), users_exclude=("root",))
    assert cfg.records_user("alice", 1000)
    assert not cfg.records_user("root", 0)          # included by uid, excluded by name
    assert not cfg.records_user("bob", 1001)        # not included
    assert config.Config().records_user("bob", 1001)  # empty include: everyone
    assert not config.Config(users_exclude=(1001,)).records_user(None, 1001)


@pytest.mark.parametrize(("text", "line", "message"), [
    ('enabled = true\nbogus = 1\n', 2, "unknown key 'bogus'"),
    ('enabled = "yes"\n', 1, "key 'enabled': should be true or false, not a string"),
    ('\n\nring_size = "3MiB"\n', 3, "key 'ring_size': 3145728 bytes is not a power of two"),
    ('ring_size = "4 parsecs"\n', 1, "key 'ring_size': '4 parsecs' is not a size"),
    ('output_dir = "relative/dir"\n', 1, "key 'output_dir': 'relative/dir' is not an absolute"),
    ('events = ["command", "gpu"]\n', 1, "key 'events': unknown kind 'gpu'"),
    ('events = ["disk"]\n', 1, "key 'events': must include \"command\""),
    ('linger = "soon"\n', 1, "key 'linger': 'soon' is not a duration"),
    ('enrolment = "ssh"\n', 1, "key 'enrolment': should be one of 'pam', 'logind'"),
    ('cgroup_root = "a/b"\n', 1, "key 'cgroup_root': 'a/b' is not a cgroup name"),
    ('race_check = 1\n', 1, "key 'race_check': should be true or false, not an integer"),
    ('logind_root = "/user.slice"\n', 1, "key 'logind_root': '' is not a cgroup name"),
    ('logind_root = "a/../b"\n', 1, "key 'logind_root': '..' is not a cgroup name"),
    ('[users]\ninclude = ["alice"]\nexclude = [1.5]\n', 3,
     "key 'users.exclude': 1.5 is not a user name, uid or %group"),
    ('[users]\nincluded = ["alice"]\n', 2, "unknown key 'users.included'"),
    ('[retention]\nmax_age = 90\nmax_total_size = "lots"\n', 3,
     "key 'retention.max_total_size'"),
    ('x = 1\n[extra]\ny = 2\n', 1, "unknown key 'x'"),
    ('enabled = true\n[extra]\ny = 2\n', 2, "unknown key 'extra'"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int,
                                       message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert message in str(e.value)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "enabled = true\nring_size = \n")
    with pytest.raises(config.ConfigError, match=rf"^{path}: .*line 2"):
        config.load(path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load(str(tmp_path / "nope.toml"))


def test_config_check_prints_the_effective_config(tmp_path: Path) -> None:
    path = write(tmp_path, 'ring_size = "4MiB"\n[users]\nexclude = ["root"]\n')
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "check", path], stdout=out, stderr=err) == 0
    text = out.getvalue()
    assert 'ring_size = "4MiB"' in text and 'exclude = ["root"]' in text
    assert 'output_dir = "/var/lib/sessrec/sessions"' in text
    assert "# max_age is not set" in text
    # What it prints is itself a valid configuration with the same meaning.
    again = config.parse(text, "printed")
    assert again == config.load(path)


def test_config_check_error_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "linger = -5\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "check", path], stdout=out, stderr=err) == 2
    assert err.getvalue() == (f"sessrec: error: {path}:1: key 'linger': "
                              "should not be negative\n")
    assert out.getvalue() == ""


def test_users_by_group() -> None:
    """"%group" matches the group's members (here: root, whose primary group
    is root); an unknown group or user matches nothing."""
    assert not config.Config(users_exclude=("%root",)).records_user("root", 0)
    assert not config.Config(users_exclude=("%root",)).records_user(None, 0)
    assert config.Config(users_exclude=("%no-such-group-xq",)).records_user("root", 0)
    assert not config.Config(users_include=("%no-such-group-xq",)).records_user("root", 0)
    assert config.Config(users_include=("%root",)).records_user("root", 0)
    assert not config.Config(users_include=("%root",)).records_user("no-such-user-xq", None)
    cfg = config.parse('[users]\nexclude = ["%adm", "alice"]\n', "t.toml")
    assert cfg.users_exclude == ("%adm", "alice")
