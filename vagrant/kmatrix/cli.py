"""vagrant/kernel-matrix: boot each known kernel under qemu, run the kernel
test tier inside it, print the table, write vagrant/out/matrix.{json,md}."""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from kmatrix import initramfs, kernels, qemu, results
from kmatrix.errors import MatrixError

REPO = Path(__file__).resolve().parents[2]
GUEST_RUN = REPO / "vagrant" / "guest" / "run"
DEFAULT_CACHE = Path(os.environ.get("SESSREC_MATRIX_CACHE", "/var/cache/sessrec-matrix"))
DEFAULT_OUT = REPO / "vagrant" / "out"
KERNELS_DOC = REPO / "docs" / "KERNELS.md"
HOST_PACKAGES = ("qemu-system-x86", "busybox-static")
BOOT_TIMEOUT = 300.0  # s to reach the root file system; TCG here: 12-15 s

# The smoke subset (--quick): one recording of each kind of event, the
# session's life and the ring, chosen from the full tier's timings under TCG;
# and the kernel features the header records (one recording: which fallbacks
# the kernel needed, recorder/kfeatures.py).
QUICK = (
    "tests/kernel/test_session.py",
    "tests/kernel/test_open.py",
    "tests/kernel/test_connect.py",
    "tests/kernel/test_kfeatures.py",
)
# The whole tier but the benchmark's smoke test: it times workloads (minutes
# natively, far longer under TCG) and proves nothing about the kernel.
FULL = ("tests/kernel", "--deselect", "tests/kernel/test_bench_quick.py::test_bench_quick")
# Left out under TCG, each with why (the table's notes repeat it): load
# tests whose premise, a recorder that keeps up with the load within the
# test's deadlines, does not hold on a CPU emulated 20-50 times slower.
# They prove nothing about the kernel that the rest of the tier does not.
TCG_LEFT_OUT = {
    "tests/kernel/test_ring.py::test_no_loss_across_many_wraps":
        "400,000 opens paced at 100,000/s, none may be lost: under TCG the recorder "
        "cannot drain that pace (it ran for over 10 minutes here)",
    "tests/kernel/test_daemon_scale.py::test_a_thousand_sessions":
        "1,000 sessions started on one daemon, each request answered within 60 s: "
        "under TCG one was not (the test had run 20 minutes by then)",
    "tests/kernel/test_daemon_scale.py::test_a_flooding_session_costs_the_others_nothing":
        "3,000,000 opens flooding one session within 300 s while 19 paced ones "
        "lose nothing: seconds natively, and under TCG the daemon drains at a "
        "fraction of the pace",
}

# The tier's deadlines for a daemon to compile and answer (tests/kernel/
# daemonctl.py), scaled under TCG: 120 s to be ready was too short here
# while other guests ran (the first compile took 135 s), and every daemon
# test failed. The tests' asserts stay the same.
TCG_TIMEOUT_FACTOR = 5

# systemd as PID 1 with only the job's unit and what basic.target needs;
# fstab=0: the host's fstab names its own disks, which the guest lacks.
SYSTEMD_APPEND = (f"sessrec.init=/lib/systemd/systemd sessrec.run={GUEST_RUN} "
                  "systemd.unit=sessrec-matrix.service fstab=0 systemd.show_status=0")

EPILOG = """examples:
  sudo vagrant/kernel-matrix --list
  sudo vagrant/kernel-matrix                     # every kernel, the whole kernel tier
  sudo vagrant/kernel-matrix --kernel debian12 --quick
  sudo vagrant/kernel-matrix --lock /tmp/sessrec-suite.lock --docs
exit status: 0 every kernel booted and passed, 1 a test failed on a kernel that
booted, 3 a kernel could not be fetched or booted (infrastructure failure).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kernel-matrix", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Boot distribution kernels under qemu (KVM when it works, else TCG) "
                    "on the host's own root file system, run sessrec's kernel test tier "
                    "in each and print a table of the results.")
    p.add_argument("--list", action="store_true", help="show the known kernels and exit")
    p.add_argument("--kernel", action="append", metavar="NAME",
                   help="run this kernel only (repeatable; default: all)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke subset of the kernel tier instead of all of it")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="the whole tier's K-th of N parts (its test files, balanced by "
                        "their number of tests), so that N guests can share it")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM if a probe boots under it, else TCG (default)")
    p.add_argument("--systemd", action="store_true",
                   help="boot systemd as PID 1 and run the job as a unit (default: the "
                        "job is PID 1)")
    p.add_argument("--timeout", type=float, default=2700.0,
                   help="seconds one guest may take in all (default: 2700)")
    p.add_argument("--stall-retries", type=_retries, default=1, metavar="N",
                   help="boot a kernel again, up to N times, when its tests failed or "
                        "timed out and its console shows the host starved the guest "
                        "(RCU stall, soft lockup); the table says so (default: 1)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"downloaded kernels and initramfs images (default: {DEFAULT_CACHE})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="results: matrix.json, matrix.md, one directory per kernel")
    p.add_argument("--lock", type=Path, metavar="FILE",
                   help="hold an exclusive flock on FILE while a guest runs")
    p.add_argument("--docs", action="store_true",
                   help="also write the table into docs/KERNELS.md")
    p.add_argument("--docs-from", type=Path, metavar="JSON",
                   help="write the docs' table from a matrix.json, booting nothing")
    return p


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"not K/N with 1 <= K <= N: {text!r}")
    return int(k), int(n)


def _retries(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a count of 0 or more: {text!r}")
    return int(text)


def shard_files(tier: Path, k: int, n: int) -> list[str]:
    """The test files of the k-th of n shards: greedily balanced by their
    number of test functions (each is a recording, or more, under TCG)."""
    files = sorted(tier.glob("test_*.py"))
    weight = {f: max(1, f.read_text().count("\ndef test_")) for f in files}
    shards: list[list[Path]] = [[] for _ in range(n)]
    for f in sorted(files, key=lambda f: (-weight[f], f.name)):
        min(shards, key=lambda sh: sum(weight[x] for x in sh)).append(f)
    return [str(f.relative_to(REPO)) for f in sorted(shards[k - 1])]


def main(argv: Sequence[str] | None = None, stdout: IO[str] = sys.stdout) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for k in kernels.KERNELS:
            suite = f" [{k.suite}]" if k.suite else ""
            print(f"{k.name:20} {k.meta}{suite}: {k.about}", file=stdout)
        return 0
    if args.docs_from:
        try:
            saved, saved_meta = load_json(args.docs_from)
            write_docs(saved, saved_meta)
        except (OSError, ValueError, KeyError, TypeError, MatrixError) as e:
            print(f"kernel-matrix: error: {args.docs_from}: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        chosen = [kernels.by_name(n) for n in args.kernel] if args.kernel else list(
            kernels.KERNELS)
        if os.geteuid() != 0:
            raise MatrixError("run as root: it downloads packages and runs the kernel tier")
        ensure_host_packages()
    except MatrixError as e:
        print(f"kernel-matrix: error: {e}", file=sys.stderr)
        return 2
    meta = run_meta(args)
    done: list[results.KernelResult] = []
    machine: qemu.Machine | None = None
    for k in chosen:
        r, machine = run_one(k, args, machine, stdout)
        done.append(r)
        write_outputs(done, meta, args.out)
    table = results.text_table(done)
    print(f"\n{table}", file=stdout)
    if machine is not None:
        print(f"accelerator: {machine.accel} ({machine.why})", file=stdout)
    print(f"results: {args.out / 'matrix.json'}, {args.out / 'matrix.md'}", file=stdout)
    if args.docs:
        write_docs(done, meta)
    return results.exit_status(done)


def run_one(k: kernels.Kernel, args: argparse.Namespace, machine: qemu.Machine | None,
            stdout: IO[str]) -> tuple[results.KernelResult, qemu.Machine | None]:
    r = results.KernelResult(kernel=k.name)
    start = time.monotonic()
    out = args.out / k.name
    try:
        print(f"kernel-matrix: {k.name}: fetching {k.meta}", file=stdout, flush=True)
        fetched = kernels.fetch(k, args.cache)
        r.release, r.packages = fetched.release, list(fetched.packages)
        initrd = cached_initramfs(fetched)
        if machine is None:
            machine = qemu.choose(fetched.vmlinuz, initrd, fetched.tree,
                                  args.out / "kvm-probe", args.accel)
        r.accel = machine.accel
        if not args.quick and machine.accel == "tcg":
            r.left_out = dict(TCG_LEFT_OUT)
        tests = QUICK if args.quick else FULL + tuple(
            a for t in r.left_out for a in ("--deselect", t))
        if args.shard and not args.quick:
            tests = (*shard_files(REPO / FULL[0], *args.shard), *tests[1:])
        factor = TCG_TIMEOUT_FACTOR if machine.accel == "tcg" else 1
        job = (f"PROJECT={REPO}\nTESTS=\"{' '.join(tests)}\"\nTIMEOUT={int(args.timeout - 120)}\n"
               f"SESSREC_TEST_TIMEOUT_FACTOR={factor}\n")
        sockets = args.cache / "virtiofsd" / k.name
        cmd = qemu.command(fetched.vmlinuz, initrd, fetched.tree, out, machine,
                           SYSTEMD_APPEND if args.systemd else f"sessrec.init={GUEST_RUN}",
                           k.fs, sockets)
        for old in args.out.glob(f"{k.name}.stalled-*"):  # an earlier run's
            shutil.rmtree(old, ignore_errors=True)
        base, retried = r, ""  # what every boot starts from; the stalled boots so far
        for attempt in range(args.stall_retries + 1):
            r = replace(base, retried=retried)
            boot_guest(k, fetched, machine, r, out, cmd, job, sockets, args, stdout)
            stall = results.guest_stall(out) if r.boot == results.BOOT_OK and not r.ok else None
            if stall is None or attempt == args.stall_retries:
                break
            # The host starved the guest: its run says nothing of the code. Kept
            # apart, and said in the table.
            kept = out.with_name(f"{k.name}.stalled-{attempt + 1}")
            shutil.rmtree(kept, ignore_errors=True)
            out.rename(kept)
            why = r.problem or f"{r.failed} failed"
            retried += (f"{'; ' if retried else ''}its guest stalled ({stall}): "
                        f"{r.passed} passed, {why}; console in {kept.name}/")
            print(f"kernel-matrix: {k.name}: the guest stalled ({stall}); booting it again",
                  file=stdout, flush=True)
    except MatrixError as e:
        r.boot, r.problem = results.BOOT_INFRA, str(e)
    r.seconds = time.monotonic() - start
    print(f"kernel-matrix: {k.name}: {'ok' if r.ok else 'FAILED'} "
          f"({r.passed} passed, {r.failed} failed, {r.skipped} skipped"
          f"{', ' + r.problem if r.problem else ''})", file=stdout, flush=True)
    return r, machine


def boot_guest(k: kernels.Kernel, fetched: kernels.Fetched, machine: qemu.Machine,
               r: results.KernelResult, out: Path, cmd: list[str], job: str, sockets: Path,
               args: argparse.Namespace, stdout: IO[str]) -> None:
    """One boot of the guest, its test run, and its results into r."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "job").write_text(job)
    print(f"kernel-matrix: {k.name}: booting {fetched.release} under {machine.accel}"
          f" (shares over {k.fs})", file=stdout, flush=True)
    with lock(args.lock), (qemu.virtiofsd(fetched.tree, out, sockets)
                           if k.fs == "virtiofs" else nullcontext()):
        run = qemu.run(cmd, out, BOOT_TIMEOUT, args.timeout)
    if not run.booted:
        r.boot, r.problem = results.BOOT_INFRA, run.problem
        return
    r.boot_seconds = run.boot_seconds
    results.collect(r, out)
    if run.timed_out:
        r.problem = f"timed out after {args.timeout:.0f} s"


def cached_initramfs(fetched: kernels.Fetched) -> Path:
    initrd = fetched.tree.parent / "initramfs.gz"
    stamp = fetched.tree.parent / "initramfs.fingerprint"
    fs = fetched.kernel.fs
    fp = initramfs.fingerprint(fetched.modules_dir, fs)
    if not (initrd.exists() and stamp.exists() and stamp.read_text() == fp):
        initramfs.build(fetched.modules_dir, initrd, fs)
        stamp.write_text(fp)
    return initrd


def lock(path: Path | None) -> AbstractContextManager[Any]:
    if path is None:
        return nullcontext()
    return _Flock(path)


class _Flock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def ensure_host_packages() -> None:
    """qemu and busybox-static, from Debian, when missing."""
    missing = [p for p in HOST_PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True,
        check=False).stdout.endswith("ok installed") is False]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise MatrixError(f"{' '.join(cmd)} failed: {p.stderr.strip()[-300:]}")


def run_meta(args: argparse.Namespace) -> dict[str, Any]:
    def git(*a: str) -> str:
        p = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,
                           check=False)
        return p.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "host_kernel": os.uname().release,
            "subset": "quick" if args.quick else (
                f"full, shard {args.shard[0]}/{args.shard[1]}" if args.shard else "full"),
            "init": "systemd" if args.systemd else "the job as PID 1"}


def write_outputs(done: list[results.KernelResult], meta: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(results.to_json(done, meta))
    (out / "matrix.md").write_text(markdown(done, meta))


def markdown(done: list[results.KernelResult], meta: dict[str, Any]) -> str:
    lines = [f"Run of {meta['date']} at commit {meta['commit']} "
             f"(host kernel {meta['host_kernel']}, {meta['subset']} kernel tier, "
             f"init: {meta['init']}).", "",
             results.markdown_table(done), ""]
    for r in done:
        if r.boot_seconds is not None or r.probe_seconds is not None:
            lines.append(f"- {r.kernel}: root file system up {r.boot_seconds or 0:.0f} s "
                         f"after boot; first BCC compile and load (`sessrec record -- "
                         f"/bin/true`) {r.probe_seconds or 0:.0f} s; headers {r.headers}.")
        for test, why in r.left_out.items():
            lines.append(f"- {r.kernel}: left out under {r.accel.upper()}: "
                         f"`{results.short_id(test)}`: {why}.")
        if r.unit.startswith("ok "):
            lines.append(f"- {r.kernel}: systemd/sessrec.service under systemd as PID 1: "
                         f"started, recorded a session through the daemon and stopped in "
                         f"{r.unit.split()[1]} s.")
    return "\n".join(lines) + "\n"


def load_json(path: Path) -> tuple[list[results.KernelResult], dict[str, Any]]:
    data = json.loads(path.read_text())
    done = [results.KernelResult(**k) for k in data.pop("kernels")]
    return done, data


BEGIN = "<!-- kernel-matrix: begin -->"
END = "<!-- kernel-matrix: end -->"


HISTORY_BEGIN = "<!-- kernel-matrix: history begin -->"
HISTORY_END = "<!-- kernel-matrix: history end -->"
HISTORY_COLUMNS = ("date", "commit", "tier", "init", *results.COLUMNS)


def write_docs(done: list[results.KernelResult], meta: dict[str, Any]) -> None:
    """Replaces the table between the markers of docs/KERNELS.md, and adds
    the run's rows to the table of completed runs when the file has one."""
    text = KERNELS_DOC.read_text()
    if BEGIN not in text or END not in text:
        raise MatrixError(f"{KERNELS_DOC} lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    text = f"{head}{BEGIN}\n{markdown(done, meta)}{END}{tail}"
    if HISTORY_BEGIN in text and HISTORY_END in text:
        head, rest = text.split(HISTORY_BEGIN, 1)
        table, tail = rest.split(HISTORY_END, 1)
        lines = [ln for ln in table.splitlines() if ln.startswith("|")][2:]
        for row in results.rows(done):
            line = results.markdown_line(
                [meta["date"], meta["commit"], meta["subset"], meta["init"], *row])
            if line not in lines:
                lines.append(line)
        lines.sort()  # by date, the first column
        table = "\n".join([results.markdown_line(list(HISTORY_COLUMNS)),
                           results.markdown_line(["---"] * len(HISTORY_COLUMNS)), *lines])
        text = f"{head}{HISTORY_BEGIN}\n{table}\n{HISTORY_END}{tail}"
    KERNELS_DOC.write_text(text)
