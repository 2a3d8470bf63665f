"""`sessrec keygen`."""

from __future__ import annotations

import argparse
import os
from typing import Any

from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import UsageError


def register(sub: Any) -> None:
    from sessrec.seal import DEFAULT_SEAL_KEY

    p = add_command(
        sub, "keygen",
        help="create this node's seal key (root)",
        description="Create the node's seal key, with which `sessrec record` (and the "
        f"daemon) seal every session file: the key state at {DEFAULT_SEAL_KEY} (mode "
        "0600), which moves forward with each session file and cannot be moved back. "
        "Prints the verification key once: keep it off this host, with the auditor. It "
        "verifies every file this node seals, and could forge them, so keep it secret.",
        example_lines=(
            "sudo sessrec keygen > /media/auditor/$(hostname).key",
            "sudo sessrec keygen --verify-key /root/node.key   # then move it off the host",
            "sudo sessrec keygen --status",
        ),
        notes="Without the verification key nobody can check the seals; it is not stored on\n"
        "this host. --force replaces the node's key: files sealed afterwards need the new\n"
        "verification key, files sealed before still need the old one.",
        func=run,
    )
    p.add_argument("--seal-key", metavar="FILE", default=DEFAULT_SEAL_KEY,
                   help=f"where to write the seal key state (default {DEFAULT_SEAL_KEY})")
    p.add_argument("--verify-key", metavar="FILE",
                   help="write the verification key to FILE (mode 0600) instead of "
                   "printing it; then move FILE off the host")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing seal key")
    p.add_argument("--status", action="store_true",
                   help="print the node id and the number of the next session file, and exit")


def run(args: argparse.Namespace, io: Streams) -> int:
    from sessrec import seal

    if args.status:
        st = seal.seal_key_status(args.seal_key)
        print(f"{args.seal_key}: node {st.node}; session files #0 to #{st.next_epoch - 1} "
              f"sealed so far; the next is #{st.next_epoch}", file=io.stdout)
        return ExitStatus.OK
    if args.verify_key and os.path.lexists(args.verify_key) and not args.force:
        raise UsageError(f"{args.verify_key} already exists; use --force to overwrite it")
    vk = seal.create_seal_key(args.seal_key, force=args.force)
    text = (f"# sessrec verification key of node {vk.node} ({os.uname().nodename})\n"
            "# Keep it off this host and secret: it verifies and could forge this node's "
            "seals.\n"
            f"{vk}\n")
    if args.verify_key:
        try:
            seal.write_private(args.verify_key, text.encode(), force=args.force)
        except seal.SealKeyError:
            io.stdout.write(text)  # the only copy: never lose it
            raise
        io.warn(f"verification key written to {args.verify_key}: move it off this host")
    else:
        io.stdout.write(text)
    print(f"sessrec: seal key written to {args.seal_key} (node {vk.node})", file=io.stderr)
    return ExitStatus.OK
