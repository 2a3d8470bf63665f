"""`sessrec daemon` and `sessrec status`."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from sessrec import config, control
from sessrec.cli import ExitStatus, Streams, add_command


def default_socket() -> str:
    """The control socket clients use: $SESSREC_CONTROL_SOCKET, else the
    default config file's control_socket, else the built-in default."""
    env = os.environ.get("SESSREC_CONTROL_SOCKET")
    if env:
        return env
    try:
        return config.load().control_socket
    except config.ConfigError:
        return control.DEFAULT_SOCKET


def register(sub: Any) -> None:
    d = add_command(
        sub, "daemon",
        help="serve every session of this machine: load the programs once (root)",
        description="Load the BPF programs once and record every session started through "
        "the control socket (docs/CONTROL.md), each into its own file, until stopped. "
        "Runs in the foreground (systemd's Type=notify: it sends READY=1 when it serves). "
        "SIGTERM stops it and leaves the sessions running: the next daemon continues "
        "their files, and states the gap.",
        example_lines=(
            "sudo sessrec daemon",
            "sudo sessrec daemon --config ./sessrec.toml --log-format json",
            "sudo sessrec status",
        ),
        func=run_daemon,
    )
    d.add_argument("--config", metavar="FILE",
                   help=f"configuration file (default {config.DEFAULT_PATH}, if it exists)")
    d.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines on stderr as text (default) or JSON")
    s = add_command(
        sub, "status",
        help="show what the daemon is doing",
        description="Ask the running daemon for its status: programs loaded, sessions "
        "active, events per second, losses. Exits 3 when no daemon runs.",
        example_lines=("sudo sessrec status", "sudo sessrec status --json | jq .sessions_active"),
        func=run_status,
    )
    s.add_argument("--json", action="store_true", help="print the status as one JSON object")
    s.add_argument("--socket", metavar="PATH", help="the control socket (default: the config's)")


def run_daemon(args: argparse.Namespace, io: Streams) -> int:
    from recorder.daemon import Daemon
    from recorder.daemonlog import Log

    cfg = config.load(args.config)
    return Daemon(cfg, Log(args.log_format, io.stderr)).run()


def run_status(args: argparse.Namespace, io: Streams) -> int:
    path = args.socket or default_socket()
    reply = control.request("status", socket_path=path)
    sessions = control.request("list", socket_path=path)["sessions"]
    reply.pop("ok", None)
    reply.pop("v", None)
    if args.json:
        io.stdout.write(json.dumps({**reply, "sessions": sessions}, indent=2) + "\n")
        return ExitStatus.OK
    out = io.stdout
    print(f"sessrec daemon {reply['version']}, pid {reply['pid']}, up {reply['uptime_s']:.0f} s "
          f"(since {reply['started_at']})", file=out)
    print(f"config:     {reply['config'] or '(defaults)'}", file=out)
    print(f"programs:   {len(reply['programs'])} tracepoints ({', '.join(reply['events'])}); "
          f"a {reply['ring_size'] >> 10} KiB ring per session", file=out)
    print(f"sessions:   {reply['sessions_active']} active, {reply['sessions_total']} since start",
          file=out)
    print(f"events:     {reply['events_total']} ({reply['events_per_second']}/s over 10 s)",
          file=out)
    print(f"lost:       {reply['lost_total']} in the ring, {reply['dropped_total']} not written",
          file=out)
    print(f"output:     {reply['output_dir']}", file=out)
    for sess in sessions:
        print(f"  {sess['session']}  {sess['kind']:<6} {sess['user']:<12} pid {sess['pid']:<7} "
              f"{sess['state']:<6} {sess['events']} events  {sess['file']}", file=out)
    return ExitStatus.OK
