"""The workloads. Each is deterministic and reports what it did, so the true
number of events of its main kind is known without recording it:

open     open_storm.c: N open+close of one file (opens: at least N; the loader adds a few)
exec     exec_storm.c: N /bin/true, 8 at a time (execs: N + the driver, exactly)
connect  connect_storm.c: N TCP connects to the loopback listener, half v4, half v6
build    ~200 generated C files compiled by `make -j2` (execs: from the Makefile)
admin    admin_session.sh: ls, ps, grep -r /etc, find /usr, tar, python3 -c, curl
"""

from __future__ import annotations

import random
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.common import PATH, WORKLOADS, BenchError, build, parse_counts


@dataclass
class Services:
    """What runs outside every session for the whole bench."""

    port: int  # the loopback listener, v4 and v6


@dataclass
class Prepared:
    """A workload ready to run: argv for `timed`, and how to read its counts."""

    argv: list[str]
    cwd: Path
    # Reads the workload's stdout: the true count of events per type of what
    # the workload itself did (its own exec included).
    truth: Callable[[str], dict[str, int]]
    kind: str                        # the event type the true count is about
    exact: bool                      # recorded must equal it (else: at least it)
    reset: Callable[[], None] | None = None  # before each run, outside the timing
    copies: int = 1                  # run this many in parallel (the rate ladder)
    env: dict[str, str] = field(default_factory=lambda: {"PATH": PATH, "LC_ALL": "C"})


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    full: int     # size of a full run
    quick: int    # size under --quick

    def describe(self, size: int) -> str:
        return self.title.format(n=size)


WORKLOADS_BY_NAME: dict[str, Workload] = {w.name: w for w in (
    Workload("open", "open storm: {n:,} open+close", 1_000_000, 100_000),
    Workload("exec", "exec storm: {n:,} /bin/true, 8 at a time", 20_000, 1_000),
    Workload("connect", "connect storm: {n:,} TCP connects, v4+v6", 50_000, 4_000),
    Workload("build", "build: {n} C files, make -j2", 200, 24),
    Workload("admin", "admin session: ls, ps, grep -r, find, tar, python3, curl", 1, 1),
)}


def _open(size: int, tmp: Path, services: Services) -> Prepared:
    exe = build("open_storm")
    return Prepared(
        argv=[str(exe), str(size)], cwd=tmp,
        truth=lambda out: {"open": parse_counts(out)["opens"]},
        kind="open", exact=False,
    )


def _exec(size: int, tmp: Path, services: Services) -> Prepared:
    exe = build("exec_storm")
    return Prepared(
        argv=[str(exe), str(size), "8", "/bin/true"], cwd=tmp,
        truth=lambda out: {"exec": parse_counts(out)["execs"] + 1,
                           "fork": parse_counts(out)["forks"]},
        kind="exec", exact=True,
    )


def _connect(size: int, tmp: Path, services: Services) -> Prepared:
    exe = build("connect_storm")

    def truth(out: str) -> dict[str, int]:
        c = parse_counts(out)
        if c["ok"] != c["connects"]:
            raise BenchError(f"connect storm: only {c['ok']} of {c['connects']} connects worked")
        return {"connect": c["connects"]}

    return Prepared(argv=[str(exe), str(size), str(services.port)], cwd=tmp, truth=truth,
                    kind="connect", exact=True)


def _admin(size: int, tmp: Path, services: Services) -> Prepared:
    scratch = tmp / "admin"
    scratch.mkdir(exist_ok=True)
    return Prepared(
        argv=["/bin/bash", str(WORKLOADS / "admin_session.sh"), str(scratch), str(services.port)],
        cwd=scratch,
        truth=lambda out: {"exec": parse_counts(out)["execs"]},
        kind="exec", exact=True,
    )


# The generated project: every file includes a shared header and defines a few
# functions with loops and switches, so each compile takes tens of ms.
_HEADER = """\
#ifndef GEN_H
#define GEN_H
#include <stddef.h>
#include <stdint.h>
struct item { uint32_t key; int32_t value; const char *name; };
uint64_t mix(uint64_t x);
{decls}
#endif
"""

_FUNC = """
static int cmp_{i}_{j}(const struct item *a, const struct item *b)
{{
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	return (a->value > b->value) - (a->value < b->value);
}}

int64_t work_{i}_{j}(struct item *v, size_t n, int mode)
{{
	int64_t acc = {seed};
	for (size_t k = 1; k < n; k++) {{
		struct item t = v[k];
		size_t m = k;
		while (m > 0 && cmp_{i}_{j}(&v[m - 1], &t) > 0) {{
			v[m] = v[m - 1];
			m--;
		}}
		v[m] = t;
	}}
	for (size_t k = 0; k < n; k++) {{
		switch ((v[k].key + mode) % {mod}) {{
		case 0: acc += v[k].value * {a}; break;
		case 1: acc ^= (int64_t)mix(v[k].key) << {sh}; break;
		case 2: acc -= v[k].value / {b}; break;
		case 3: acc = acc * {c} + k; break;
		default: acc += (int64_t)mix(acc) >> {sh};
		}}
	}}
	return acc;
}}
"""


def generate_project(root: Path, files: int, funcs: int = 6) -> None:
    """A deterministic C project of `files` sources, a Makefile and a header."""
    rnd = random.Random(20240501)
    root.mkdir(parents=True, exist_ok=True)
    decls = []
    for i in range(files):
        body = ['#include "gen.h"\n']
        for j in range(funcs):
            decls.append(f"int64_t work_{i}_{j}(struct item *v, size_t n, int mode);")
            body.append(_FUNC.format(i=i, j=j, seed=rnd.randrange(1 << 30), mod=rnd.randint(5, 9),
                                     a=rnd.randint(2, 99), b=rnd.randint(2, 99),
                                     c=rnd.randint(2, 99), sh=rnd.randint(1, 30)))
        (root / f"f{i:03d}.c").write_text("".join(body))
    (root / "mix.c").write_text('#include "gen.h"\nuint64_t mix(uint64_t x)\n{\n'
                                "\tx ^= x >> 33;\n\tx *= 0xff51afd7ed558ccdULL;\n"
                                "\treturn x ^ (x >> 33);\n}\n")
    (root / "gen.h").write_text(_HEADER.replace("{decls}", "\n".join(decls)))
    # Plain recipes without shell syntax: make execs them directly, no shell.
    (root / "Makefile").write_text(
        "CC = /usr/bin/gcc\nCFLAGS = -O2 -Wall\n"
        "SRCS = $(sort $(wildcard *.c))\nOBJS = $(SRCS:.c=.o)\n\n"
        "libgen.a: $(OBJS)\n\t/usr/bin/ar rcs $@ $(OBJS)\n\n"
        "%.o: %.c gen.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
        "clean:\n\t/bin/rm -f $(OBJS) libgen.a\n"
    )


def build_exec_count(root: Path, env: dict[str, str]) -> int:
    """The execs that `make` in root will do, without running the build:
    make itself, each recipe command (`make -n`), and for each gcc command the
    programs the driver runs (`gcc -###` lists them without running them)."""
    lines = subprocess.run(["/usr/bin/make", "-n", "-C", str(root), "--no-print-directory"],
                           capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    count = 1
    for line in lines:
        argv = shlex.split(line)
        if not argv:
            continue
        count += 1
        if argv[0].endswith("gcc"):
            plan = subprocess.run([*argv, "-###"], capture_output=True, text=True, check=True,
                                  cwd=root, env=env).stderr
            # One line per program it would run, each starting with a space.
            count += sum(1 for p in plan.splitlines() if re.match(r"^ \S", p))
    return count


def _build(size: int, tmp: Path, services: Services) -> Prepared:
    root = tmp / "build"
    if root.exists():
        shutil.rmtree(root)
    generate_project(root, size)
    env = {"PATH": PATH, "LC_ALL": "C"}
    subprocess.run(["/usr/bin/make", "-s", "-C", str(root), "clean"], check=True, env=env)
    execs = build_exec_count(root, env)

    def reset() -> None:
        subprocess.run(["/usr/bin/make", "-s", "-C", str(root), "clean"], check=True, env=env)

    def truth(out: str) -> dict[str, int]:
        if not (root / "libgen.a").exists():
            raise BenchError("build: libgen.a was not built")
        return {"exec": execs}

    return Prepared(argv=["/usr/bin/make", "-s", "-j2", "-C", str(root)], cwd=root, truth=truth,
                    kind="exec", exact=True, reset=reset, env=env)


PREPARE: dict[str, Callable[[int, Path, Services], Prepared]] = {
    "open": _open, "exec": _exec, "connect": _connect, "build": _build, "admin": _admin,
}
