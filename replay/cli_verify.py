"""`sessrec verify`."""

from __future__ import annotations

import argparse

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "verify",
        help="check that session files were not altered since they were sealed",
        description="Check the seals of session files with the node's verification key "
        "(from `sessrec keygen`): report a file intact up to its last seal, or the first "
        "chunk altered, chunks removed or reordered, and a truncated end with the time "
        "of the last good seal. Files recorded without a seal key, or checked without "
        "--key, get their checksums checked only. With several files of one node, the "
        "node's session files missing between them are listed.",
        example_lines=(
            "sessrec verify --key auditor/node1.key /var/lib/sessrec/*.srec",
            "sessrec verify --key sessrec-verify-1:NODE:SEED build.srec",
            "sessrec verify build.srec             # checksums only",
        ),
        notes="exit status: 0 intact and complete, 5 tampered or damaged, 6 truncated (intact\n"
        "up to the last seal), 7 unsealed, 8 sealed but no --key, 9 another node's key;\n"
        "with several files, the worst. docs/SECURITY.md says what a seal proves.",
        func=run,
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--key", metavar="KEY",
                   help="the verification key, or a file holding it (keep it off the host)")


_STATUS = {
    "INTACT": ExitStatus.OK,
    "TRUNCATED": ExitStatus.TRUNCATED,
    "UNSEALED": ExitStatus.UNSEALED,
    "UNVERIFIED": ExitStatus.UNVERIFIED,
    "WRONG_KEY": ExitStatus.WRONG_KEY,
    "TAMPERED": ExitStatus.TAMPERED,
}


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.text import printable
    from replay.verify import epoch_gaps, verify_file
    from sessrec.seal import VerifyKey

    key = VerifyKey.load(args.key) if args.key else None
    reports = []
    for path in args.files:
        report = verify_file(path, key)
        reports.append(report)
        for line in report.lines():
            print(printable(line), file=io.stdout)  # file names: any bytes
    if len(reports) > 1:
        for line in epoch_gaps(reports):
            print(printable(line), file=io.stdout)  # file names: any bytes
    worst = max(r.verdict for r in reports)
    return _STATUS[worst.name]
