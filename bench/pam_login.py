"""What the PAM hook adds to a login: `ssh host true` through a private
OpenSSH server (tests/kernel/sshd.py) without the sessrec line, and with
`session required pam_exec.so sessrec pam` and a running daemon,
interleaved. Root; leaves nothing behind.

    sudo .venv/bin/python bench/pam_login.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests" / "kernel"))

import sshd  # noqa: E402
from test_pam_e2e import make_daemon  # noqa: E402
from test_pam_sshd import hook_line  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sessrec-pam-bench-"))
    daemon = make_daemon(base / "d")
    times: dict[str, list[float]] = {"without": [], "with": []}
    with sshd.private_sshd(["a"], "# no sessrec line") as srv:
        try:
            daemon.start()
            user = srv.users[0]
            for _ in range(args.rounds):
                for mode in ("without", "with"):
                    srv.write_pam(hook_line("required", daemon.config) if mode == "with"
                                  else "# no sessrec line")
                    t0 = time.perf_counter()
                    r = srv.ssh(user, "true")
                    times[mode].append(time.perf_counter() - t0)
                    assert r.returncode == 0, r.stderr
        finally:
            daemon.stop()
            import shutil
            shutil.rmtree(base, ignore_errors=True)
    for mode, ts in times.items():
        print(f"ssh host true, {mode} the hook: median {statistics.median(ts) * 1000:.0f} ms, "
              f"min {min(ts) * 1000:.0f} ms, max {max(ts) * 1000:.0f} ms ({len(ts)} logins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
