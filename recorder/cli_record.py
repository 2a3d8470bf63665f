"""`sessrec record`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import UsageError


def register(sub: Any) -> None:
    r = add_command(
        sub, "record",
        help="run a command as a recorded session (root)",
        description="Run CMD in a new session cgroup and record every exec, fork, exit, "
        "open, connect and chdir of it and of every process it starts, until the last "
        "of them has exited. Exits with CMD's exit status (127 if CMD is not found).",
        example_lines=(
            "sudo sessrec record -o build.srec -- make -j2",
            "sudo sessrec record --no-wait -- ./start-daemon.sh   # stop when it exits",
            "sudo sessrec record --ebpf                           # print the BPF program",
            "sudo sessrec record --seal-key /etc/sessrec/seal.key -o s.srec -- bash",
        ),
        notes="Ctrl-C goes to the command as usual. Once the command has exited and the\n"
        "recorder waits for processes it left behind, Ctrl-C stops the wait.",
        func=run,
    )
    r.add_argument("-o", "--output", metavar="FILE",
                   help="session file to write (default: session-<time>.srec)")
    r.add_argument("-f", "--force", action="store_true", help="overwrite FILE if it exists")
    r.add_argument("--no-wait", dest="wait_leftovers", action="store_false",
                   help="stop when the command exits, not when its last process does")
    r.add_argument("--wait-timeout", type=_positive_float, metavar="SECONDS",
                   help="stop waiting for leftover processes after SECONDS")
    r.add_argument("--ring-pages", type=_ring_pages, metavar="N",
                   help="ring buffer size in 4 KiB pages, a power of two (default 8192: "
                   "32 MiB; a smaller ring is a little faster, and loses events in bursts); "
                   "implies --no-daemon, whose ring is its config's")
    r.add_argument("--seal-key", metavar="FILE",
                   help="seal the file with this node seal key (`sessrec keygen`); default: "
                   "/etc/sessrec/seal.key when it exists. Implies --no-daemon (the daemon "
                   "seals with the default key)")
    r.add_argument("--no-seal", action="store_true",
                   help="do not seal the file, even when the node has a seal key")
    r.add_argument("--race-check", action="store_true",
                   help="also read each open's path when the call begins, and flag the event "
                   "TAMPERED when the caller rewrote it while the kernel used it (the TOCTOU "
                   "race; `path` is the kernel's either way). Costs every open on the host "
                   "while recording (docs/PERFORMANCE.md). Implies --no-daemon unless the "
                   "daemon's config sets race_check")
    r.add_argument("-C", "--cwd", metavar="DIR", help="run the command in DIR")
    r.add_argument("--no-daemon", action="store_true",
                   help="load the programs here even when `sessrec daemon` runs (by default "
                   "a running daemon records the session: it starts in milliseconds, not "
                   "seconds; the file is the same)")
    r.add_argument("--control-socket", metavar="PATH",
                   help="the daemon's control socket (default: the config's)")
    r.add_argument("--ebpf", action="store_true", help="print the BPF program source and exit")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return v


def _ring_pages(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 1 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{v} is not a power of two")
    return v


def run(args: argparse.Namespace, io: Streams) -> int:
    if args.ebpf:
        from recorder.loader import program_text

        io.stdout.write(program_text())
        return ExitStatus.OK
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("sessrec record: no command given "
                         "(usage: sessrec record [-o FILE] -- CMD [ARGS...])")
    from recorder import record as rec
    from sessrec.seal import seal_key_path

    if args.no_seal and args.seal_key:
        raise UsageError("sessrec record: --seal-key and --no-seal contradict each other")
    output = args.output or time.strftime("session-%Y%m%dT%H%M%S.srec")
    opts = rec.RecordOptions(command=cmd, output=output, force=args.force,
                             wait_leftovers=args.wait_leftovers,
                             wait_timeout=args.wait_timeout, cwd=args.cwd,
                             seal_key=None if args.no_seal else seal_key_path(args.seal_key),
                             race_check=args.race_check)
    if args.ring_pages:
        opts.ring_pages = args.ring_pages
    conn = None
    # The daemon seals with the node's default key, or not at all.
    if not (args.no_daemon or args.ring_pages or args.seal_key is not None):
        from recorder.cli_daemon import default_socket
        from sessrec import control

        try:
            conn = control.Connection(args.control_socket or default_socket())
        except control.DaemonNotRunning:
            conn = None
        if conn is not None and args.race_check and not conn.request("status").get("race_check"):
            conn.close()  # its programs do not check races: load ours
            conn = None
    if conn is not None:
        with conn:
            status = rec.record_via_daemon(opts, conn, stderr=io.stderr)
    else:
        status = rec.record(opts, stderr=io.stderr)
    print(f"sessrec: session written to {output}", file=io.stderr)
    return status
