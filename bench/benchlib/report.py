"""Summaries of the samples, the targets of issue 5, and the three outputs:
the text table (Markdown, readable in a terminal), bench/out/results.json, and
the generated part of docs/PERFORMANCE.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.common import DASH, median
from benchlib.configs import Sample

TIMES = "\u00d7"  # the multiplication sign of "10x smaller"
BEGIN = "<!-- bench/run:begin -->"
END = "<!-- bench/run:end -->"
HEADING = "## Recording benchmarks (bench/run)"
RECORDERS = ("sessrec", "auditd")
CONFIG_TITLES = {
    "unrecorded": "unrecorded",
    "floor": "floor (programs loaded, no session)",
    "sessrec": "sessrec record (no daemon)",
    "race": "sessrec record --race-check (no daemon)",
    "daemon": "sessrec record through `sessrec daemon`",
    "bpftrace": "bpftrace peer (bench/peers/session.bt)",
    "auditd": "auditd (syscall rules, -F sessionid=)",
}


@dataclass
class Cell:
    workload: str
    config: str
    kind: str
    exact: bool
    samples: list[Sample] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [s.wall_s for s in self.samples]

    def summary(self, base: Cell | None) -> dict[str, Any]:
        walls = self.walls()
        out: dict[str, Any] = {
            "runs": len(walls),
            "wall_s_median": median(walls),
            "wall_s_min": min(walls),
            "wall_s_max": max(walls),
            "ratio": median(walls) / median(base.walls()) if base and base.samples else None,
            "workload_cpu_s_median": median([s.workload_cpu_s for s in self.samples]),
            "cpu_ratio": median([s.workload_cpu_s for s in self.samples])
            / median([s.workload_cpu_s for s in base.samples]) if base and base.samples
            else None,
            "kind": self.kind,
            "true": [s.true.get(self.kind) for s in self.samples],
        }
        cpu = [s.recorder_cpu_s for s in self.samples if s.recorder_cpu_s is not None]
        out["recorder_cpu_s_median"] = median(cpu) if cpu else None
        if all(s.recorded is not None for s in self.samples):
            rec = [int((s.recorded or {}).get(self.kind, 0)) for s in self.samples]
            true = [int(s.true.get(self.kind, 0)) for s in self.samples]
            out["recorded"] = rec
            out["complete"] = all(r >= t for r, t in zip(rec, true, strict=True))
            out["exact"] = all(r == t for r, t in zip(rec, true, strict=True)) if self.exact \
                else None
            out["events"] = [s.events for s in self.samples]
            out["lost"] = [s.lost for s in self.samples]
            per_event = [s.bytes / s.events for s in self.samples if s.bytes and s.events]
            out["bytes_per_event_median"] = median(per_event) if per_event else None
            out["bytes_median"] = median([float(s.bytes or 0) for s in self.samples])
        if self.config == "auditd":
            out["backlog_max"] = max(int(s.extra.get("backlog_max", 0)) for s in self.samples)
            out["backlog_limit"] = self.samples[-1].extra.get("backlog_limit")
        return out


def _n(x: float | int | None, digits: int = 0) -> str:
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def _spread(s: dict[str, Any]) -> str:
    return f"{s['wall_s_median']:.3f} ({s['wall_s_min']:.3f}{DASH}{s['wall_s_max']:.3f})"


def _events(s: dict[str, Any], exact: bool) -> str:
    if "recorded" not in s:
        return "—"
    rec, true = s["recorded"], s["true"]
    worst = min(range(len(rec)), key=lambda i: rec[i] - (true[i] or 0))
    sign = "" if exact else "≥ "
    mark = "" if s["complete"] else " **missing**"
    return f"{rec[worst]:,} / {sign}{true[worst]:,} {s['kind']}{mark}"


def _lost(s: dict[str, Any], config: str) -> str:
    if "lost" not in s:
        return "—"
    lost = max(int(x or 0) for x in s["lost"])
    text = f"{lost:,}"
    if config == "auditd":
        text += f" (backlog max {s['backlog_max']:,} of {s['backlog_limit']:,})"
    return text


def targets(summaries: dict[tuple[str, str], dict[str, Any]],
            rate: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 5's targets, each with what this run measured."""
    out: list[dict[str, Any]] = []

    def ratio(workload: str, config: str) -> float | None:
        cell = summaries.get((workload, config))
        return cell["ratio"] if cell else None

    for workload, limit, name in (("open", 1.3, "open storm ratio"),
                                  ("build", 1.05, "build ratio"),
                                  ("admin", 1.05, "admin session ratio")):
        r = ratio(workload, "sessrec")
        if r is None:
            continue
        a = ratio(workload, "auditd")
        note = f"auditd {a:.2f}" if a is not None else ""
        out.append({"target": name, "value": f"≤ {limit}", "measured": f"{r:.2f}",
                    "met": r <= limit, "note": note})
    d = ratio("open", "daemon")
    if d is not None:
        b = ratio("open", "bpftrace")
        out.append({"target": "open storm through the daemon (issue 8)", "value": "≤ 1.1",
                    "measured": f"{d:.2f}", "met": d <= 1.1,
                    "note": f"bpftrace peer {b:.2f}" if b is not None else ""})
    factors = []
    for (workload, config), s in summaries.items():
        if config != "sessrec" or not s.get("bytes_per_event_median"):
            continue
        audit = summaries.get((workload, "auditd"))
        if audit and audit.get("bytes_per_event_median"):
            factors.append((audit["bytes_per_event_median"] / s["bytes_per_event_median"],
                            workload))
    if factors:
        low, where = min(factors)
        each = ", ".join(f"{w} {f:.0f}{TIMES}" for f, w in sorted(factors, reverse=True))
        out.append({"target": "bytes per event vs auditd's log",
                    "value": f"≥ 10{TIMES} smaller",
                    "measured": f"{low:.1f}{TIMES} smaller (lowest: {where})", "met": low >= 10,
                    "note": each})
    single = [r for r in rate if r["copies"] == 1 and r["config"] == "sessrec"
              and r.get("paced") is None]
    if single:
        lost = max(r["lost"] for r in single)
        out.append({"target": "events lost at the highest single-core generator rate",
                    "value": "0", "measured": f"{lost:,} at {single[0]['rate']:,.0f} events/s",
                    "met": lost == 0, "note": ""})
    return out


def markdown(meta: dict[str, Any], cells: list[Cell], summaries: dict[tuple[str, str],
             dict[str, Any]], rate: list[dict[str, Any]], tgts: list[dict[str, Any]],
             prof: str | None = None) -> str:
    lines = [
        f"Generated by `{meta['command']}` on {meta['date']} at commit "
        f"{meta.get('commit') or 'unknown'} ({meta['host']}, kernel "
        f"{meta['kernel']}, {meta['cpus']} CPUs): {meta['rounds']} interleaved round(s). "
        f"Medians, ratios and the min{DASH}max spread all come from this one run; the machine "
        "is shared and noisy, so compare ratios, not absolute times across runs.",
        "",
    ]
    if meta.get("notes"):
        lines += [f"- {n}" for n in meta["notes"]] + [""]
    if tgts:
        lines += ["**Targets** (shown, not asserted)", "",
                  "| target | value | measured | met | |", "| --- | --- | --- | --- | --- |"]
        for t in tgts:
            met = "yes" if t["met"] else "**no**"
            lines.append(f"| {t['target']} | {t['value']} | {t['measured']} | {met} | "
                         f"{t['note']} |")
        lines.append("")
    lines += [] if not cells else [
        "**Per workload and configuration.** Wall time of the workload alone (from `timed`, "
        "after the configuration is ready); ratio to unrecorded; events of the workload's main "
        "kind recorded against the true count (the worst round); the workload's own CPU time "
        "(user and system: the BPF programs run in it), median, and its ratio to unrecorded, "
        "steadier than wall time on a shared machine; events lost as the recorder "
        "reports them (sessrec: its kernel counters; auditd: the kernel's `lost` counter delta "
        "and the highest backlog seen); bytes on disk per event (sessrec: the compressed session "
        "file; auditd: log bytes written, per SYSCALL record of the session); the recorder's CPU "
        "time during the run (sessrec: the recorder process after start-up; floor: the idle "
        "recorder; auditd: auditd plus the kauditd kernel thread).",
        "",
        f"| workload | configuration | wall s, median (min{DASH}max) | ratio | workload CPU s "
        "(ratio) | events recorded / true | lost | bytes/event | recorder CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    titles = meta["workloads"]
    for c in cells:
        s = summaries[(c.workload, c.config)]
        ratio = f"{s['ratio']:.2f}" if s["ratio"] is not None else "—"
        if c.config in ("sessrec", "race", "daemon"):
            ratio = f"**{ratio}**"
        lines.append(
            f"| {titles[c.workload]} | {CONFIG_TITLES[c.config]} | {_spread(s)} | {ratio} | "
            f"{s['workload_cpu_s_median']:.3f} ({_n(s['cpu_ratio'], 2)}) | "
            f"{_events(s, c.exact)} | {_lost(s, c.config)} | "
            f"{_n(s.get('bytes_per_event_median'), 1)} | {_n(s['recorder_cpu_s_median'], 2)} |")
    if rate:
        lines += [
            "",
            "**Highest event rate with zero loss.** Open storms in one session: first 1, 2 "
            "and 4 in parallel at full speed, then one storm paced at fractions of its "
            "unrecorded speed for a few seconds each. The rate is recorded open events per "
            "second of the storm's wall time; unrecorded runs show the generators' own speed.",
            "",
            "| generator | opens | unrecorded wall s | recorded wall s | recorded events/s | "
            "lost |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        rows: dict[tuple[int, int | None], dict[str, dict[str, Any]]] = {}
        for row in rate:
            rows.setdefault((row["copies"], row.get("paced")), {})[row["config"]] = row
        for (k, paced), by_config in rows.items():
            u, r = by_config.get("unrecorded"), by_config.get("sessrec")
            gen = f"{k} storm(s), full speed" if paced is None else f"1 storm paced at {paced:,}/s"
            lines.append(
                f"| {gen} | {_n(r['true'] if r else None)} | {_n(u['wall_s'] if u else None, 3)} "
                f"| {_n(r['wall_s'] if r else None, 3)} | {_n(r['rate'] if r else None)} | "
                f"{_n(r['lost'] if r else None)} |")
        best = [r for r in rate if r["config"] == "sessrec" and r["lost"] == 0]
        if best:
            top = max(best, key=lambda r: r["rate"])
            gen = (f"{top['copies']} storm(s) at full speed" if top.get("paced") is None
                   else f"one storm paced at {top['paced']:,}/s")
            lines += ["", f"Highest rate recorded with nothing lost: **{top['rate']:,.0f} "
                      f"events/s** ({gen})."]
        else:
            lines += ["", "**No rate in the ladder was recorded without loss.**"]
    if prof:
        lines += ["", "**Profile of the recorder under the open storm** (the `sessrec record` "
                  "process from the gate to its exit; collapsed stacks in "
                  "bench/out/profile-open.txt).", "", prof.rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, body: str) -> None:
    """Replaces the generated part of docs/PERFORMANCE.md, between the markers
    under HEADING, and nothing else in the file."""
    block = f"{BEGIN}\n{body}{END}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: block, text,
                      count=1, flags=re.S)
    elif HEADING in text:
        text = text.replace(HEADING, f"{HEADING}\n\n{block}", 1)
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    path.write_text(text)
