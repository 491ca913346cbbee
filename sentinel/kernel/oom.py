"""Assemble kernel OOM kill records from kernel log lines, one line at a time.

An OOM report is a run of kernel lines: ``X invoked oom-killer`` (the invoker, its
allocation), the CPU line (the invoker's pid), ``Mem-Info`` or the memcg usage lines, the
task table, the ``oom-kill:constraint=...`` summary (4.19+), the legacy ``Task in ...
killed as a result of limit of ...`` line (before 4.19), and the kill itself:
``[Out of memory|Memory cgroup out of memory][ (oom_kill_allocating_task)]: Killed process
N (comm) ...``. Any part may be missing: rate limiting drops the header and the table,
``grep`` keeps a few lines, kernels before 4.x print ``Kill process ... or sacrifice
child`` first. :class:`OomParser` keeps one open report per host and emits a
:class:`~sentinel.model.KillRecord` when its kill line arrives, or, for a report whose
only kill evidence is the ``oom-kill:`` summary, when the next report starts or the
caller calls :meth:`OomParser.flush`.

Pure: strings in, records out; no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from sentinel.kernel.lines import LineDecoder, LogLine
from sentinel.kernel.memcg import identify
from sentinel.record import KillRecord

_INVOKED = re.compile(r"(?P<comm>.*?) invoked oom-killer: (?P<args>.*)")
_INVOKED_BARE = re.compile(r"oom-killer: (?P<args>gfp_mask=.*)")
"""2.6 kernels before 2.6.16 named no invoker: ``oom-killer: gfp_mask=0xd0``."""
_ARG_SPLIT = re.compile(r",\s*")
_CPU = re.compile(
    r"(?:CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: |Pid: (?P<old_pid>\d+), comm: )"
    r"(?P<comm>.*?)(?: (?:Not tainted|Tainted:)|$)"
)
_KILLED = re.compile(
    r"(?:(?P<prefix>Out of [Mm]emory|Memory cgroup out of memory)"
    r"(?P<alloc> \(oom_kill_allocating_task\))?: )?"
    r"Killed process (?P<pid>\d+)(?P<uid_first>, UID \d+,)? \((?P<comm>.*)\)(?=[ ,.]|$)"
    r"(?P<rest>.*)"
)
_KILL_STEP1 = re.compile(
    r"(?P<prefix>Out of memory|Memory cgroup out of memory)"
    r"(?: \(oom_kill_allocating_task\))?: [Kk]ill process (?P<pid>\d+) \((?P<comm>.*)\)"
    r" score -?\d+ or (?:sacrifice|a) child"
)
_OOM_KILL = re.compile(r"oom-kill:(?P<args>.*)")
_OOM_KILL_KEYS = re.compile(
    r"(?:^|,)(constraint|nodemask|cpuset|mems_allowed|oom_memcg|task_memcg|task|pid|uid)="
)
_TASK_IN = re.compile(r"Task in (?P<task>.+) killed as a result of limit of (?P<oom>.+)")
_OPENS_REPORT = re.compile(
    r"Tasks state|\[\s*pid\s*\]|Mem-Info:|(?:memory|memory\+swap|kmem|swap): usage \d"
)
_NO_KILLABLE = "Out of memory and no killable processes"
_TABLE_HEADER = re.compile(r"\[\s*pid\s*\]\s+(?P<cols>uid\s.*)")
_TABLE_ROW = re.compile(r"\[\s*(?P<pid>\d+)\]\s+(?P<rest>-?\d.*)")
_MEMCG_USAGE = re.compile(
    r"(?P<what>memory|memory\+swap|swap|kmem): usage (?P<usage>\d+)kB, limit (?P<limit>\d+)kB,"
    r" failcnt (?P<failcnt>\d+)"
)
_COUNTER = re.compile(r"([a-z_]+(?:\([a-z]+\))?):(\d+)(?:kB)?\b")
_COUNTER_LINE = re.compile(
    r"\s*(?:active_anon|inactive_anon|isolated_anon|active_file|inactive_file|isolated_file"
    r"|unevictable|dirty|writeback|unstable|slab_reclaimable|slab_unreclaimable|mapped"
    r"|shmem|pagetables|sec_pagetables|bounce|kernel_misc_reclaimable|free|free_pcp"
    r"|free_cma):"
)
_PAGES_LINE = re.compile(
    r"(?P<n>\d+) (?P<what>pages RAM|pages HighMem/MovableOnly|pages reserved"
    r"|pages cma reserved|pages hwpoisoned|total pagecache pages|pages in swap cache)$"
)
_SWAP_LINE = re.compile(r"(?P<what>Free swap|Total swap)\s*=\s*(?P<n>\d+)kB")
_KILLED_FIELDS = {
    "total_vm_kb": re.compile(r"(?:total-vm|vsz):(\d+)kB"),
    "anon_rss_kb": re.compile(r"anon-rss:(\d+)kB"),
    "file_rss_kb": re.compile(r"file-rss:(\d+)kB"),
    "shmem_rss_kb": re.compile(r"shmem-rss:(\d+)kB"),
    "uid": re.compile(r"UID[: ](\d+)"),
    "pgtables_kb": re.compile(r"pgtables:(\d+)kB"),
    "oom_score_adj": re.compile(r"oom_score_adj:(-?\d+)"),
}
# Task-table columns by kernel era, for a table whose header line was not kept.
_GUESSED_COLUMNS = {
    7: ("uid", "tgid", "total_vm", "rss", "pgtables_bytes", "swapents", "oom_score_adj"),
    8: ("uid", "tgid", "total_vm", "rss", "nr_ptes", "nr_pmds", "swapents", "oom_score_adj"),
    10: (
        "uid",
        "tgid",
        "total_vm",
        "rss",
        "rss_anon",
        "rss_file",
        "rss_shmem",
        "pgtables_bytes",
        "swapents",
        "oom_score_adj",
    ),
}
_PAGE = 4096
_INT = re.compile(r"-?\d+")
_KILLED_END = re.compile(r"(?:kB|\)|\.|oom_score_adj:-?\d+)$")
_SUMMARY_END = re.compile(r"(?:^|,)uid=-?\d+$")
_KILLED_TAIL = re.compile(r"[-\w:,. ]+")
_INVOKED_TAIL = re.compile(r"[-\w:,.=()| ]+")
_SUMMARY_TAIL = re.compile(r"\S+")
_OWN_LINE = re.compile(r"CPU: |Pid: |oom_reaper|Out of |Memory cgroup|Killed |Mem-Info|Tasks ")
"""Starts of lines that stand on their own, never the rest of a wrapped one."""


def _cut(text: str) -> re.Pattern[str] | None:
    """How the rest of ``text`` looks if it is a marker line cut by a wrap, else None.

    Serial consoles and terminals wrap long lines at their width, and mail clients at
    about 72 columns; the rest comes on the next line without any prefix. A kill line
    ends with ``kB``, ``oom_score_adj:N``, the comm's ``)`` or 2.6's ``.``; an ``invoked``
    line with ``key=value``; an ``oom-kill:`` summary with ``uid=N``.
    """
    if "ill" not in text:  # Killed, killer, oom-kill: most report lines are none of them
        return None
    m = _KILLED.search(text)
    if m:
        rest = m["rest"].rstrip()
        return _KILLED_TAIL if rest and not _KILLED_END.search(rest) else None
    m = _INVOKED.match(text) or _INVOKED_BARE.match(text)
    if m:
        args = m["args"].rstrip()
        last = args.rpartition(",")[2]
        if args.endswith((",", "=", "(", "|")) or args.count("(") > args.count(")"):
            return _INVOKED_TAIL
        return _INVOKED_TAIL if "=" not in last else None
    m = _OOM_KILL.match(text)
    if m and not _SUMMARY_END.search(m["args"].rstrip()):
        return _SUMMARY_TAIL
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None else None


@dataclass(slots=True)
class _Report:
    """The open OOM report of one host: context gathered until its kill line."""

    invoker: str | None = None
    invoker_pid: int | None = None
    invoker_oom_score_adj: int | None = None
    gfp_mask: str | None = None
    order: int | None = None
    cpu_line_wanted: bool = False
    columns: tuple[str, ...] | None = None
    tasks: list[dict[str, int | str]] = field(default_factory=list)
    mem_info: dict[str, int] = field(default_factory=dict)
    mem_info_open: bool = False
    global_hint: bool | None = None
    """Weak evidence for global: Mem-Info (host) or memcg usage lines (cgroup)."""
    step1_global: bool | None = None
    legacy_task_memcg: str | None = None
    legacy_oom_memcg: str | None = None
    summary: dict[str, str] | None = None
    summary_line: LogLine | None = None


class OomParser:
    """Streaming parser: feed raw lines (any supported format), collect kill records.

    ``feed`` returns the records that the line completed; ``flush`` returns the records
    still waiting for lines that may never come (call it at end of input, or when a
    live stream has been idle for a moment). Reports never mix hosts.
    """

    def __init__(self, *, year: int | None = None) -> None:
        self._decoder = LineDecoder(year=year)
        self._reports: dict[str | None, _Report] = {}
        self._other_dump: set[str | None] = set()
        """Hosts printing a memory dump that is not an OOM report (allocation failure)."""
        self.last_line_related = False
        """Whether the last fed line belonged to an OOM report (for fast scanners)."""
        self._held: tuple[LogLine, re.Pattern[str]] | None = None
        """A marker line that looks cut by a wrap, kept until the next line tells."""

    @property
    def busy(self) -> bool:
        """True while some host has an open report that more lines may complete."""
        return bool(self._reports) or self._held is not None

    @property
    def wants_body(self) -> bool:
        """True while some open report may still take body lines (CPU, counters, table
        rows): one not yet at its ``oom-kill:`` summary, or a held line. Past its summary a
        report takes marker lines only, as an idle parser does."""
        return self._held is not None or any(r.summary is None for r in self._reports.values())

    @property
    def holding(self) -> bool:
        """True while a line that looks wrapped waits for the next line, its possible rest."""
        return self._held is not None

    def feed(self, raw: str) -> list[KillRecord]:
        out: list[KillRecord] = []
        related = False
        for line in self._decoder.decode(raw):
            if line.kernel:
                related = self._wrapped(line, out) or related
        self.last_line_related = related
        return out

    def _wrapped(self, line: LogLine, out: list[KillRecord]) -> bool:
        """One line, joined to a held one when it is that line's rest."""
        related = False
        if self._held is not None:
            held, tail = self._held
            self._held = None
            text = line.text.strip()
            if (
                line.host == held.host
                and line.kernel_timestamp is None
                and line.time is None
                and line.log_time is None
                and line.seq is None
                and tail.fullmatch(text)
                and not _OWN_LINE.match(text)
            ):
                line = replace(held, text=held.text.rstrip() + text)
            else:
                related = self._line(held, out)
        cut = _cut(line.text.strip())
        if cut is not None:
            self._held = (line, cut)
            return True
        return self._line(line, out) or related

    def feed_many(self, lines: Iterable[str]) -> Iterator[KillRecord]:
        for raw in lines:
            yield from self.feed(raw)

    def flush(self) -> list[KillRecord]:
        out: list[KillRecord] = []
        if self._held is not None:
            held = self._held[0]
            self._held = None
            self._line(held, out)
        for host, report in list(self._reports.items()):
            record = self._summary_record(report, host)
            if record is not None:
                out.append(record)
        self._reports.clear()
        return out

    # -- one message line -------------------------------------------------------------

    def _line(self, line: LogLine, out: list[KillRecord]) -> bool:
        text = line.text
        host = line.host
        report = self._reports.get(host)
        if "oom" in text or "ill" in text:  # oom-killer, oom-kill:, Kill(ed), killed as, killable
            handled = self._marker_line(line, report, out)
            if handled:
                self._other_dump.discard(host)
                return True
            report = self._reports.get(host)
        if "allocation failure" in text or "Show Memory" in text:
            # A page allocation failure or SysRq-m prints Mem-Info too: not an OOM report.
            self._other_dump.add(host)
            if report is not None and report.invoker is None and report.summary is None:
                del self._reports[host]
            return True
        if report is not None and report.summary is not None:
            return False  # the kernel prints oom-kill: after the table: only the kill line is left
        stripped = text.strip()
        if report is None:
            if host in self._other_dump or not _OPENS_REPORT.match(stripped):
                return False
            report = self._open(host, None)
        if report.cpu_line_wanted and stripped.startswith(("CPU: ", "Pid: ")):
            report.cpu_line_wanted = False
            m = _CPU.match(stripped)
            if m:
                report.invoker_pid = int(m["pid"] or m["old_pid"])
            return True
        if stripped.startswith("["):
            return self._table_line(stripped, report)
        if stripped == "Mem-Info:":
            report.mem_info_open = True
            report.global_hint = True
            return True
        if report.mem_info_open and _COUNTER_LINE.match(stripped):
            for key, value in _COUNTER.findall(stripped):
                report.mem_info.setdefault(key, int(value))
            return True
        m = _PAGES_LINE.match(stripped)
        if m:
            key = m["what"].replace("/", "_").replace(" ", "_").lower()
            report.mem_info[key] = int(m["n"])
            return True
        m = _SWAP_LINE.match(stripped)
        if m:
            report.mem_info[m["what"].replace(" ", "_").lower() + "_kb"] = int(m["n"])
            return True
        m = _MEMCG_USAGE.match(stripped)
        if m:
            what = m["what"].replace("+", "_")
            report.mem_info[f"{what}_usage_kb"] = int(m["usage"])
            report.mem_info[f"{what}_limit_kb"] = int(m["limit"])
            report.mem_info[f"{what}_failcnt"] = int(m["failcnt"])
            report.global_hint = False
            return True
        return False

    def _marker_line(self, line: LogLine, report: _Report | None, out: list[KillRecord]) -> bool:
        text = line.text.strip()
        host = line.host
        m = _KILLED.search(text)
        if m:
            out.extend(self._killed(line, m, report))
            return True
        m = _INVOKED.match(text) or _INVOKED_BARE.match(text)
        if m:
            if report is not None:
                record = self._summary_record(report, host)
                if record is not None:
                    out.append(record)
            self._reports[host] = self._invoked(m)
            return True
        m = _OOM_KILL.match(text)
        if m:
            report = self._open(host, report)
            if report.summary is not None:
                record = self._summary_record(report, host)
                if record is not None:
                    out.append(record)
                report.summary = None
            report.summary = _parse_summary(m["args"])
            report.summary_line = line
            return True
        m = _KILL_STEP1.match(text)
        if m:
            report = self._open(host, report)
            report.step1_global = m["prefix"] == "Out of memory"
            return True
        m = _TASK_IN.match(text)
        if m:
            report = self._open(host, report)
            report.legacy_task_memcg = m["task"].strip()
            report.legacy_oom_memcg = m["oom"].strip()
            return True
        if text.startswith(_NO_KILLABLE):
            self._reports.pop(host, None)
            return True
        return text.startswith("oom_reaper:")

    def _open(self, host: str | None, report: _Report | None) -> _Report:
        if report is None:
            report = self._reports[host] = _Report()
        return report

    @staticmethod
    def _invoked(m: re.Match[str]) -> _Report:
        comm = m.groupdict().get("comm")
        report = _Report(invoker=comm.strip() if comm else None, cpu_line_wanted=bool(comm))
        for part in _ARG_SPLIT.split(m["args"].strip()):
            key, _, value = part.partition("=")
            value = value.strip()
            if key == "gfp_mask":
                report.gfp_mask = value
            elif key == "order" and _INT.fullmatch(value):
                report.order = int(value)
            elif key == "oom_score_adj" and _INT.fullmatch(value):
                report.invoker_oom_score_adj = int(value)
        return report

    def _table_line(self, text: str, report: _Report) -> bool:
        m = _TABLE_HEADER.match(text)
        if m:
            cols = m["cols"].split()
            report.columns = tuple(cols[:-1]) if cols and cols[-1] == "name" else tuple(cols)
            report.mem_info_open = False
            return True
        m = _TABLE_ROW.match(text)
        if not m:
            return False
        row = _parse_row(int(m["pid"]), m["rest"], report.columns)
        if row is None:
            return False
        report.mem_info_open = False
        report.tasks.append(row)
        return True

    # -- building records -------------------------------------------------------------

    def _killed(self, line: LogLine, m: re.Match[str], report: _Report | None) -> list[KillRecord]:
        out: list[KillRecord] = []
        pid = int(m["pid"])
        if report is None:
            report = _Report()
        summary = report.summary
        if summary is not None and _int_or_none(summary.get("pid")) not in (None, pid):
            record = self._summary_record(report, line.host)  # a different victim
            if record is not None:
                out.append(record)
            summary = None
        values: dict[str, int] = {}
        rest = (m["uid_first"] or "") + m["rest"]
        for key, rx in _KILLED_FIELDS.items():
            found = rx.search(rest)
            if found:
                values[key] = int(found.group(1))
        glob: bool | None = None
        if m["prefix"]:
            glob = m["prefix"] != "Memory cgroup out of memory" or bool(m["alloc"])
        out.append(
            self._record(
                report,
                pid=pid,
                comm=m["comm"],
                kill_line=line,
                summary=summary,
                values=values,
                glob=glob,
            )
        )
        self._reports.pop(line.host, None)
        return out

    def _summary_record(self, report: _Report, host: str | None) -> KillRecord | None:
        summary = report.summary
        if summary is None or report.summary_line is None:
            return None
        pid = _int_or_none(summary.get("pid"))
        if pid is None:
            return None
        report.summary = None
        return self._record(
            report,
            pid=pid,
            comm=summary.get("task"),
            kill_line=report.summary_line,
            summary=summary,
            values={},
            glob=None,
        )

    @staticmethod
    def _record(
        report: _Report,
        *,
        pid: int,
        comm: str | None,
        kill_line: LogLine,
        summary: dict[str, str] | None,
        values: dict[str, int],
        glob: bool | None,
    ) -> KillRecord:
        row = next((t for t in report.tasks if t.get("pid") == pid), None)
        uid = values.get("uid")
        adj = values.get("oom_score_adj")
        constraint = oom_memcg = task_memcg = None
        if summary is not None:
            constraint = summary.get("constraint")
            oom_memcg = summary.get("oom_memcg")
            task_memcg = summary.get("task_memcg")
            if uid is None:
                uid = _int_or_none(summary.get("uid"))
            if glob is None:
                if "global_oom" in summary:
                    glob = True
                elif oom_memcg is not None:
                    glob = False
        if task_memcg is None:
            task_memcg = report.legacy_task_memcg
        if oom_memcg is None:
            oom_memcg = report.legacy_oom_memcg
        if glob is None and report.legacy_oom_memcg is not None:
            glob = False
        if glob is None:
            glob = report.step1_global
        if glob is None:
            glob = report.global_hint
        if row is not None:
            if uid is None and isinstance(row.get("uid"), int):
                uid = int(row["uid"])
            if adj is None and isinstance(row.get("oom_score_adj"), int):
                adj = int(row["oom_score_adj"])
        ident = identify(task_memcg)
        return KillRecord(
            pid=pid,
            comm=comm,
            total_vm_kb=values.get("total_vm_kb"),
            anon_rss_kb=values.get("anon_rss_kb"),
            file_rss_kb=values.get("file_rss_kb"),
            shmem_rss_kb=values.get("shmem_rss_kb"),
            uid=uid,
            pgtables_kb=values.get("pgtables_kb"),
            oom_score_adj=adj,
            constraint=constraint,
            global_=glob,
            oom_memcg=oom_memcg,
            task_memcg=task_memcg,
            invoker=report.invoker,
            invoker_pid=report.invoker_pid,
            invoker_oom_score_adj=report.invoker_oom_score_adj,
            gfp_mask=report.gfp_mask,
            order=report.order,
            kernel_timestamp=kill_line.kernel_timestamp,
            time=kill_line.time,
            log_time=kill_line.log_time,
            host=kill_line.host,
            kmsg_seq=kill_line.seq,
            tasks=tuple(report.tasks),
            mem_info=dict(report.mem_info),
            runtime=ident.runtime,
            container_id=ident.container_id,
            pod_uid=ident.pod_uid,
            qos_class=ident.qos_class,
            systemd_unit=ident.systemd_unit,
        )


def _int_or_none(text: str | None) -> int | None:
    if text is None or not _INT.fullmatch(text):
        return None
    return int(text)


def _parse_summary(args: str) -> dict[str, str]:
    """``constraint=...,nodemask=...,...,global_oom,task_memcg=...,task=...,pid=N,uid=N``.

    Values may hold commas (``mems_allowed=0,2``; a comm may too), so each value runs to
    the next known key rather than to the next comma.
    """
    out: dict[str, str] = {}
    matches = list(_OOM_KILL_KEYS.finditer(args))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(args)
        value = args[m.end() : end]
        if value.endswith(",global_oom"):
            value = value[: -len(",global_oom")]
            out["global_oom"] = ""
        out[m.group(1)] = value
    if ",global_oom," in f",{args},":
        out["global_oom"] = ""
    return out


def _parse_row(pid: int, rest: str, columns: tuple[str, ...] | None) -> dict[str, int | str] | None:
    """One task-table row: the numeric columns by header name, then the comm."""
    tokens = rest.split()
    numbers: list[int] = []
    for tok in tokens:  # _INT.fullmatch(tok), in str methods: \d is a decimal digit
        if not (tok.isdecimal() or (tok[:1] == "-" and tok[1:].isdecimal())):
            break
        numbers.append(int(tok))
    if columns is not None:
        names = columns
        n = len(names)
        if len(numbers) < n:
            return None
        parts = rest.split(None, n)
        name = parts[n] if len(parts) > n else ""
        row: dict[str, int | str] = {"pid": pid}
        row.update(zip(names, numbers[:n], strict=True))
        row["name"] = name
        return row
    guessed = _GUESSED_COLUMNS.get(len(numbers))
    if guessed is None and len(numbers) > 1:
        # The last token may be an all-digit comm: try one fewer number.
        guessed = _GUESSED_COLUMNS.get(len(numbers) - 1)
        if guessed is not None:
            numbers = numbers[:-1]
    if guessed is None:
        return None
    if len(numbers) == 7 and (numbers[4] % _PAGE != 0 or numbers[4] == 0):
        guessed = ("uid", "tgid", "total_vm", "rss", "nr_ptes", "swapents", "oom_score_adj")
    n = len(guessed)
    parts = rest.split(None, n)
    row = {"pid": pid}
    row.update(zip(guessed, numbers, strict=True))
    row["name"] = parts[n] if len(parts) > n else ""
    return row


def parse_lines(lines: Iterable[str], *, year: int | None = None) -> Iterator[KillRecord]:
    """All kill records in ``lines`` (any mix of the supported formats), in log order."""
    parser = OomParser(year=year)
    yield from parser.feed_many(lines)
    yield from parser.flush()
