"""Slack messages from notifications: Block Kit and a plain-text fallback. Pure, no I/O.

:func:`render` turns one notification (the neutral payload the outbox keeps, see
:mod:`sentinel.notifiers`) into ``{"text": ..., "blocks": [...]}``; :func:`render_storm`
turns several kills into one grouped message. Every message goes through :func:`fit`, which
enforces Slack's limits whatever the input: at most 50 blocks, 3000 characters per section
or context text, 10 fields of 2000 per section, 150 per header, and a non-empty fallback
``text`` (at most 3000 here; Slack's own cap is 40,000).

Text that sentinel did not write (names, images, hosts, commands, kernel lines, cgroup
paths, rule names, reasons, action outcomes) enters a message only through :func:`inert`,
in every field: it cannot mention anyone, link, or format, and it still reads the same.

The words say what happened the way a person would: "the host ran out of memory; the
container was at 1.47 GiB of its 2 GiB limit", or "it reached its own 512 MiB limit".

Optional keys a notification may carry besides the basic ones (the daemon adds them):

- ``memory``: ``usage_bytes`` and ``limit_bytes`` (the last sample before the event),
  ``history`` (usage in bytes, oldest first, evenly spaced) and ``history_span_s``,
  ``host_total_bytes``;
- ``top_tasks``: the kill record's biggest processes, ``[{pid, name, rss_bytes}]``;
- ``forecast``: ``{at, eta_seconds, constraint, rate_bytes_per_s}``, sentinel's forecast
  for the target before the event (``at``: when it was made);
- ``actions``: ``[{action, outcome}]``, what sentinel did about it;
- ``after``: ``{running, usage_bytes}``, the target after a restart;
- ``probe``: the allocation probe's report (a ``snapshot`` action), summarized by
  :func:`sentinel.actions.snapshot.summarize`: ``sites`` (``file``, ``line``, ``code``,
  ``growth_bytes``, ``growth_per_hour_bytes``, ``steady``), ``steady``, ``pid``, ``at``,
  ``baseline_at``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_TEXT = 3000
PAGE_BYTES = 4096
"""Task-table ``rss`` columns are in pages; 4 KiB on x86-64 and most arm64 kernels."""
TOP_TASKS = 5
SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48
STORM_LINES = 40
STORM_NAME_LIMIT = 100
"""Characters of a name or command shown on one line of a storm (before escaping)."""
CODE_LINE_LIMIT = 1000
"""Characters of one line of a code block (a kernel line, a task row) before escaping."""

Block = dict[str, Any]
Message = dict[str, Any]


# --- words and numbers ------------------------------------------------------------------


def _real(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (a payload may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def human_bytes(n: float | None) -> str:
    """``1.47 GiB``, ``512 MiB``, ``800 KiB``; ``?`` when unknown."""
    value = _real(n)
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{value:.0f} B"
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    return f"{value:.0f} TiB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    value = _real(seconds)
    if value is None:
        return "?"
    s = max(0, round(value))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def clock(t: float | None) -> str:
    """``2026-01-05 14:03:07 UTC``."""
    value = _real(t)
    if value is None:
        return "?"
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "?"


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """Values as ``▁▂▅█``, at most ``width`` characters (averaged into buckets)."""
    points = [p for p in map(_real, values) if p is not None]
    if not points:
        return ""
    if len(points) > width:
        size = len(points) / width
        points = [
            sum(chunk) / len(chunk)
            for chunk in (
                points[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]
                for i in range(width)
            )
        ]
    low, high = min(points), max(points)
    if high - low <= 0:
        return SPARK[0] * len(points)
    top = len(SPARK) - 1
    return "".join(SPARK[round((p - low) / (high - low) * top)] for p in points)


OUTSIDE_LIMIT = 500
"""Characters of one outside value shown (before escaping): a 1 MB label stays readable."""
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
LOOKALIKES = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
"""Slack's formatting characters and what stands in for them: ``∗`` (asterisk operator),
``ˍ`` (modifier letter low macron), ``∼`` (tilde operator), ``ˋ`` (modifier letter grave)."""
BROADCAST_AT = "\uff20"
"""The fullwidth commercial at (U+FF20): stands in for the ``@`` of ``@channel`` and the like."""
SOFT_HYPHEN = "\u00ad"
_IN_TEXT = str.maketrans({**_ENTITIES, **LOOKALIKES})
_IN_CODE = str.maketrans({**_ENTITIES, "`": LOOKALIKES["`"]})
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone|group)(?![A-Za-z0-9]))", re.IGNORECASE)
_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(value: Any, *, code: bool = False, limit: int = OUTSIDE_LIMIT) -> str:
    """Text from the outside world made inert in any Slack field; the one way such text
    enters a message.

    Outside text is everything sentinel did not write itself: process and container names,
    images, labels, host names, kernel lines, cgroup paths, hook output, rule names and
    reasons. Whatever it holds, it can neither ping, link nor format, and a person still
    reads what it says:

    - ``&``, ``<``, ``>`` become ``&amp;``, ``&lt;``, ``&gt;`` (Slack's own escaping, which
      Slack decodes for display in every text field): no ``<!channel>``, ``<@U123>``,
      ``<#C123>``, ``<!subteam^...>``, ``<https://x|click>`` nor ``<!date^...>`` can form,
      and an already escaped ``&lt;`` shows as ``&lt;``.
    - Slack's formatting characters ``*``, ``_``, ``~`` and the backtick are replaced by
      lookalikes (:data:`LOOKALIKES`), the strategy jsx-slack uses: a name can neither bold,
      italicise or strike anything nor open or close inline code or a code block, and it
      still looks the same. Copying such a name from Slack gives the lookalike
      (``my_app`` comes back as ``myˍapp``); ``sentinel events`` shows names exactly.
      With ``code=True`` (a line inside a code block, where Slack formats nothing) only
      the backtick is replaced, so kernel lines keep ``oom_memcg=`` and ``*``.
    - ``@channel``, ``@here``, ``@everyone`` and ``@group`` written out get a fullwidth
      at sign (U+FF20), so no parse setting of the client can make them notify anyone.
    - Line breaks and tabs become spaces (no fake line of sentinel's own) and other control
      characters, bidirectional overrides included, become ``\ufffd``. A value that starts
      with ``>`` gets an invisible soft hyphen (U+00AD) before it, as jsx-slack does, so it
      does not quote the rest of the line when a template puts it at a line start.
    - At most ``limit`` characters are kept (``…`` marks a cut), counted before escaping,
      so an entity is never cut in two.

    Rendering code calls this on each outside value as it enters a template (the templates
    themselves carry sentinel's own formatting), or on a whole line of a code block.
    """
    text = _CONTROLS.sub("\ufffd", _BREAKS.sub(" ", str(value)))
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    if text.lstrip().startswith(">"):
        text = SOFT_HYPHEN + text
    return _BROADCAST.sub(BROADCAST_AT, text.translate(_IN_CODE if code else _IN_TEXT))


def _kb(value: Any) -> int | None:
    return value * 1024 if isinstance(value, int) and not isinstance(value, bool) else None


def rss_bytes(record: Mapping[str, Any]) -> int | None:
    parts = [record.get(k) for k in ("anon_rss_kb", "file_rss_kb", "shmem_rss_kb")]
    known = [p for p in parts if isinstance(p, int) and not isinstance(p, bool)]
    return sum(known) * 1024 if known else None


def top_tasks(tasks: Iterable[Mapping[str, Any]], n: int = TOP_TASKS) -> list[dict[str, Any]]:
    """The ``n`` biggest processes of a kill record's task table (``rss`` in pages)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for row in tasks:
        rss = row.get("rss")
        if not isinstance(rss, int) or isinstance(rss, bool):
            continue
        rss_b = rss * PAGE_BYTES
        rows.append((rss_b, {"pid": row.get("pid"), "name": row.get("name"), "rss_bytes": rss_b}))
    rows.sort(key=lambda r: -r[0])
    return [r for _, r in rows[:n]]


def kernel_lines(record: Mapping[str, Any]) -> list[str]:
    """The kernel's lines for this kill, as the kernel prints them (rebuilt from the
    parsed record: the invoker, the constraint line and the kill line)."""
    lines = []
    if record.get("invoker"):
        gfp = f" gfp_mask={record['gfp_mask']}" if record.get("gfp_mask") else ""
        order = f", order={record['order']}" if record.get("order") is not None else ""
        adj = record.get("invoker_oom_score_adj")
        adj_text = f", oom_score_adj={adj}" if adj is not None else ""
        lines.append(f"{record['invoker']} invoked oom-killer:{gfp}{order}{adj_text}")
    parts = []
    if record.get("constraint"):
        parts.append(f"constraint={record['constraint']}")
    for key in ("oom_memcg", "task_memcg"):
        if record.get(key):
            parts.append(f"{key}={record[key]}")
    if parts:
        lines.append("oom-kill:" + ",".join(parts))
    kill = f"Out of memory: Killed process {record.get('pid')} ({record.get('comm', '?')})"
    sizes = [
        f"{label}:{record[key]}kB"
        for key, label in (
            ("total_vm_kb", "total-vm"),
            ("anon_rss_kb", "anon-rss"),
            ("file_rss_kb", "file-rss"),
            ("shmem_rss_kb", "shmem-rss"),
        )
        if record.get(key) is not None
    ]
    if sizes:
        kill += " " + ", ".join(sizes)
    if record.get("uid") is not None:
        kill += f", UID:{record['uid']}"
    if record.get("pgtables_kb") is not None:
        kill += f" pgtables:{record['pgtables_kb']}kB"
    if record.get("oom_score_adj") is not None:
        kill += f" oom_score_adj:{record['oom_score_adj']}"
    lines.append(kill)
    return lines


def _host_total(notification: Mapping[str, Any], record: Mapping[str, Any]) -> int | None:
    memory = notification.get("memory") or {}
    total = memory.get("host_total_bytes")
    if isinstance(total, int):
        return total
    pages = (record.get("mem_info") or {}).get("pages_ram")
    return pages * PAGE_BYTES if isinstance(pages, int) else None


def _limit(notification: Mapping[str, Any], record: Mapping[str, Any]) -> int | None:
    kb = (record.get("mem_info") or {}).get("memory_limit_kb")
    # v1 prints "unlimited" as 2^63-ish: anything past 2^50 KiB is no limit
    if isinstance(kb, int) and 0 < kb < 1 << 50:
        return kb * 1024
    limit = (notification.get("memory") or {}).get("limit_bytes")
    return limit if isinstance(limit, int) else None


def why(notification: Mapping[str, Any]) -> str:
    """The kill's cause in plain words, ready for any Slack field (a cgroup path in it is
    made :func:`inert`)."""
    record = notification.get("record") or {}
    memory = notification.get("memory") or {}
    limit = _limit(notification, record)
    usage = memory.get("usage_bytes")
    scope = record.get("global")
    target = notification.get("target") or {}
    if scope is True and target.get("pod"):
        at = usage if isinstance(usage, int) else rss_bytes(record)
        of = f" ({human_bytes(at)} of its {human_bytes(limit)} limit)" if limit is not None else ""
        return f"host OOM: the node ran out of memory; the pod was below its limit{of}"
    if scope is True:
        if limit is not None:
            at = usage if isinstance(usage, int) else rss_bytes(record)
            return (
                f"the host ran out of memory; the container was at {human_bytes(at)} "
                f"of its {human_bytes(limit)} limit"
            )
        if "limit_bytes" in memory:
            return "the host ran out of memory (the container has no memory limit of its own)"
        return "the host ran out of memory"
    if scope is False:
        oom, task = record.get("oom_memcg"), record.get("task_memcg")
        if oom and task and oom != task and not str(task).startswith(f"{oom}/"):
            return f"it reached the {human_bytes(limit)} limit of the cgroup {inert(oom)}"
        if oom and task and oom != task:
            return f"it reached the {human_bytes(limit)} limit of its parent cgroup {inert(oom)}"
        return f"it reached its own {human_bytes(limit)} limit"
    return "the kernel log does not say whether the host or a memory limit ran out"


def _who(notification: Mapping[str, Any]) -> tuple[str, str]:
    """(name for words, made :func:`inert`; kind of thing): ``("web-1", "container")``,
    or ``("prod/web-7d9f8-abcde", "pod")`` for a container of a Kubernetes pod."""
    target = notification.get("target") or {}
    if target.get("pod"):
        return pod_name(target), "pod"
    name = inert(target.get("name") or target.get("id") or "?")
    kind = "container" if target.get("runtime") == "docker" else "process"
    return name, kind


def pod_name(target: Mapping[str, Any]) -> str:
    """``namespace/pod``, made :func:`inert`."""
    return f"{inert(target.get('namespace') or '?')}/{inert(target.get('pod'))}"


def _pod_words(target: Mapping[str, Any]) -> str:
    """`` in container *app* of pod *prod/web-…* (Deployment/web)``, made :func:`inert`."""
    container = target.get("container")
    out = f" in container *{inert(container)}* of" if container else " in"
    out += f" pod *{pod_name(target)}*"
    if target.get("owner_kind"):
        out += f" ({inert(target['owner_kind'])}/{inert(target.get('owner_name') or '')})"
    return out


def _pod_fields(target: Mapping[str, Any]) -> list[str]:
    if not target.get("pod"):
        return []
    out = [f"*Pod*\n{pod_name(target)}"]
    if target.get("owner_kind"):
        out.append(f"*Owner*\n{inert(target['owner_kind'])}/{inert(target.get('owner_name'))}")
    if target.get("node"):
        out.append(f"*Node*\n{inert(target['node'])}")
    return out


def _host(notification: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> str:
    host = notification.get("host") or (record or {}).get("host")
    return inert(host) if host else "this host"


# --- blocks --------------------------------------------------------------------------------
# Texts handed to these builders are Slack-ready: sentinel's own words and formatting, with
# every outside value already passed through inert(). Slack's own auto-parsing is off
# wherever Block Kit allows it: mrkdwn objects are ``verbatim`` (no bare URL, #channel or
# @mention is linked), headers do not turn ``:name:`` into emoji.


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": False}}


def _section(text: str, fields: Sequence[str] = ()) -> Block:
    block: Block = {"type": "section", "text": _mrkdwn(text)}
    if fields:
        block["fields"] = [_mrkdwn(f) for f in fields]
    return block


def _context(*texts: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(t) for t in texts]}


def _code(lines: Iterable[str]) -> str:
    """A code block of lines that hold outside text (each made inert for a code block)."""
    body = "\n".join(inert(line, code=True, limit=CODE_LINE_LIMIT) for line in lines)
    return f"```{body}```"


def _memory_block(notification: Mapping[str, Any]) -> Block | None:
    memory = notification.get("memory") or {}
    history = memory.get("history") or []
    line = sparkline(history)
    if not line:
        return None
    values = [v for v in history if isinstance(v, int | float)]
    span = memory.get("history_span_s")
    over = f"last {human_duration(span)}" if isinstance(span, int | float) else "recent samples"
    limit = memory.get("limit_bytes")
    of = f" (limit {human_bytes(limit)})" if isinstance(limit, int) else ""
    return _section(
        f"*Memory, {over}*: {human_bytes(min(values))} → {human_bytes(values[-1])}{of}\n`{line}`"
    )


def _forecast_text(notification: Mapping[str, Any], event_at: float | None) -> str:
    forecast = notification.get("forecast")
    eta = _real(forecast.get("eta_seconds")) if isinstance(forecast, Mapping) else None
    if not isinstance(forecast, Mapping) or eta is None:
        return "sentinel had not forecast it (no forecast of an OOM kill for it before)."
    at = _real(forecast.get("at"))
    expected = at + eta if at is not None else None
    text = f"sentinel had forecast it at {clock(at)}: kill expected in {human_duration(eta)}"
    if expected is not None and event_at is not None:
        off = event_at - expected
        text += (
            f" ({human_duration(abs(off))} {'later' if off > 0 else 'earlier'} than forecast)"
            if abs(off) >= 60
            else " (on time)"
        )
    rate = _real(forecast.get("rate_bytes_per_s"))
    if rate is not None and rate > 0:
        text += f", growing {human_bytes(rate * 3600)}/h"
    return text + "."


def _actions_text(notification: Mapping[str, Any]) -> str:
    actions = [a for a in notification.get("actions") or [] if isinstance(a, Mapping)]
    if not actions:
        return "sentinel recorded the kill and told you; no other action."
    parts = [f"{inert(a.get('action'))} ({inert(a.get('outcome', '?'))})" for a in actions]
    return "sentinel did: " + ", ".join(parts) + "."


def _mention(notification: Mapping[str, Any], mention: str | None) -> str:
    """The policy's ``mention`` (the operator's own Slack syntax, so not made inert)."""
    return f"{mention} " if mention and notification.get("kind") in ("kill", "escalation") else ""


def _kill(notification: Mapping[str, Any], mention: str | None) -> Message:
    record = notification.get("record") or {}
    target = notification.get("target") or {}
    name, kind = _who(notification)
    host = _host(notification, record)
    image = inert(target["image"]) if target.get("image") else ""
    comm = inert(record.get("comm") or "?")
    pid = inert(record.get("pid", "?"))
    reason = why(notification)
    rss = rss_bytes(record)
    limit = _limit(notification, record)
    host_total = _host_total(notification, record)
    killed_at = (notification.get("evidence") or {}).get("killed_at", notification.get("at"))
    image_text = f" (`{image}`)" if image else ""
    inside = (
        f" in {kind} *{name}*{image_text}"
        if kind == "container"
        else _pod_words(target) + image_text
        if kind == "pod"
        else ""
    )
    first = (
        f"{_mention(notification, mention)}The kernel killed `{comm}` "
        f"(pid {pid}){inside} on `{host}`: *{reason}*."
    )
    fields = [
        f"*RSS at the kill*\n{human_bytes(rss)}",
        f"*Limit*\n{human_bytes(limit) if limit is not None else 'none'}",
        f"*Host memory*\n{human_bytes(host_total)}",
        f"*When*\n{clock(killed_at)}",
    ]
    if notification.get("rule"):
        fields.append(f"*Rule*\n{inert(notification['rule'])}")
    fields += _pod_fields(target)
    blocks: list[Block] = [
        _header(f"OOM kill: {name} on {host}"),
        _section(first, fields),
    ]
    tasks = notification.get("top_tasks") or top_tasks(record.get("tasks") or [])
    if tasks:
        rows = [f"{'PID':>8}  {'RSS':>10}  NAME"]
        rows += [
            f"{t.get('pid', '?')!s:>8}  {human_bytes(t.get('rss_bytes')):>10}  {t.get('name', '?')}"
            for t in tasks
            if isinstance(t, Mapping)
        ]
        blocks.append(_section("*Top memory users at the kill*\n" + _code(rows)))
    memory = _memory_block(notification)
    if memory is not None:
        blocks.append(memory)
    killed = _real(killed_at)
    blocks.append(
        _section(
            f"*Forecast*: {_forecast_text(notification, killed)}\n"
            f"*Action*: {_actions_text(notification)}"
        )
    )
    if record:
        blocks.append(_section("*The kernel's lines*\n" + _code(kernel_lines(record))))
    blocks.append(_context(f"sentinel · target `{inert(target.get('id', '?'))}`"))
    text = (
        f"{_mention(notification, mention)}OOM kill on {host}: the kernel killed {comm} "
        f"(pid {pid})"
        f"{f' in container {name}' if kind == 'container' else ''}"
        f"{f' in pod {name}' if kind == 'pod' else ''}"
        f"{f' ({image})' if image else ''}: {reason}. RSS at the kill {human_bytes(rss)}."
    )
    return {"text": text, "blocks": blocks}


GROWTH_SITES = 5
"""Growth sites a message names (the report keeps more)."""
PATH_SHOWN = 80
"""Characters of a source path shown: longer ones keep their end (``…/app/jobs.py``)."""


def _path(value: Any) -> str:
    text = str(value)
    if len(text) <= PATH_SHOWN:
        return text
    tail = text[-(PATH_SHOWN - 1) :]
    cut = tail.find("/")
    return "…" + (tail[cut:] if 0 <= cut < PATH_SHOWN // 2 else tail)


def growth_sites(notification: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The probe's top growth sites in a notification (those that grew), most first."""
    probe = notification.get("probe")
    if not isinstance(probe, Mapping):
        return []
    sites = [s for s in probe.get("sites") or [] if isinstance(s, Mapping)]
    return [s for s in sites if (_real(s.get("growth_bytes")) or 0) > 0][:GROWTH_SITES]


def site_name(site: Mapping[str, Any], *, code: bool = True) -> str:
    """``…/app/jobs.py:42``, made :func:`inert` (for inline code with ``code=True``)."""
    return inert(f"{_path(site.get('file', '?'))}:{site.get('line', '?')}", code=code)


def _growth_block(notification: Mapping[str, Any]) -> Block | None:
    """*Top growth sites*: where the Python allocation probe saw the memory grow."""
    probe = notification.get("probe")
    sites = growth_sites(notification)
    if not isinstance(probe, Mapping) or not sites:
        return None
    at, base = _real(probe.get("at")), _real(probe.get("baseline_at"))
    since = f"since its baseline {human_duration(at - base)} before" if at and base else ""
    pid = f"pid {inert(probe.get('pid'))}" if probe.get("pid") is not None else ""
    about = "; ".join(p for p in (pid, since) if p)
    lines = [f"*Top growth sites* (Python allocation probe{f', {about}' if about else ''}):"]
    for i, site in enumerate(sites, 1):
        rate = _real(site.get("growth_per_hour_bytes"))
        per_hour = f", {human_bytes(rate)}/h" if rate is not None else ""
        steady = " · grew in every report" if site.get("steady") is True else ""
        lines.append(
            f"{i}. `{site_name(site)}` +{human_bytes(site.get('growth_bytes'))}{per_hour}{steady}"
        )
        if site.get("code"):
            lines.append(f"      `{inert(site['code'], code=True, limit=120)}`")
    steady_sites = [s for s in sites if s.get("steady") is True]
    if steady_sites:
        names = ", ".join(f"`{site_name(s)}`" for s in steady_sites)
        points = max((_real(s.get("points")) or 0) for s in steady_sites)
        lines.append(
            f"*Steady growth* (grew at each of {points:.0f} reports and checkpoints, "
            f"likely the leak): {names}"
        )
    return _section("\n".join(lines))


def _growth_text(notification: Mapping[str, Any]) -> str:
    sites = growth_sites(notification)
    if not sites:
        return ""
    top = sites[0]
    rate = _real(top.get("growth_per_hour_bytes"))
    per_hour = f", {human_bytes(rate)}/h" if rate is not None else ""
    return (
        f" Top growth site: {site_name(top, code=False)} "
        f"(+{human_bytes(top.get('growth_bytes'))}{per_hour})."
    )


def _action(notification: Mapping[str, Any]) -> Message:
    evidence = notification.get("evidence") or {}
    name, kind = _who(notification)
    host = _host(notification)
    reason = inert(notification.get("reason", ""))
    actions = [a for a in notification.get("actions") or [] if isinstance(a, Mapping)]
    done = {a.get("action") for a in actions}
    verb = (
        "Restarted"
        if "restart" in done
        else "Evicted"
        if "evict" in done
        else "Deleted"
        if "delete_pod" in done
        else None
    )
    title = f"{verb} {name} before an OOM kill" if verb else f"Memory warning: {name}"
    target = notification.get("target") or {}
    where = _pod_words(target).strip() if kind == "pod" else f"{kind} *{name}*"
    lines = [f"*{reason}* ({where} on `{host}`)."]
    if evidence.get("condition") == "projected_oom_within":
        lines.append(
            f"Forecast: the kernel would kill it in "
            f"{human_duration(evidence.get('projected_oom_in_s'))} "
            f"({inert(evidence.get('constraint', '?'))} limit): "
            f"{human_bytes(evidence.get('usage_bytes'))} of "
            f"{human_bytes(evidence.get('limit_bytes'))}."
        )
    elif evidence.get("condition") == "memory_above":
        pct = evidence.get("usage_percent")
        lines.append(
            f"Usage {inert(pct)}% of its limit." if pct is not None else "Usage above threshold."
        )
    forecast = notification.get("forecast") or {}
    rate = forecast.get("rate_bytes_per_s") if isinstance(forecast, Mapping) else None
    if isinstance(rate, int | float) and rate > 0:
        lines.append(f"Growth: {human_bytes(rate * 3600)}/h.")
    lines.append(f"*Action*: {_actions_text(notification)}")
    after = notification.get("after")
    if isinstance(after, Mapping):
        back = after.get("running")
        freed = None
        before = (notification.get("memory") or {}).get("usage_bytes")
        if isinstance(before, int) and isinstance(after.get("usage_bytes"), int):
            freed = before - after["usage_bytes"]
        outcome = "it is running again" if back else "it has not come back yet"
        if freed is not None:
            outcome += f", {human_bytes(max(freed, 0))} freed"
        lines.append(f"*Outcome*: {outcome}.")
    blocks: list[Block] = [_header(title), _section("\n".join(lines))]
    growth = _growth_block(notification)
    if growth is not None:
        blocks.append(growth)
    memory = _memory_block(notification)
    if memory is not None:
        blocks.append(memory)
    blocks.append(_context(f"sentinel · rule `{inert(notification.get('rule', '?'))}`"))
    growth_text = _growth_text(notification)
    text = f"{title} on {host}: {reason}{'.' + growth_text if growth_text else ''}"
    return {"text": text, "blocks": blocks}


def _escalation(notification: Mapping[str, Any], mention: str | None) -> Message:
    evidence = notification.get("evidence") or {}
    name, kind = _who(notification)
    host = _host(notification)
    restarts = evidence.get("restarts_at") or []
    count = len(restarts) if isinstance(restarts, list) else "?"
    forecast = notification.get("forecast") or {}
    rate = forecast.get("rate_bytes_per_s") if isinstance(forecast, Mapping) else None
    growth = (
        f"memory grows {human_bytes(rate * 3600)}/h"
        if isinstance(rate, int | float) and rate > 0
        else "memory keeps growing back"
    )
    first = (
        f"{_mention(notification, mention)}*Restarts are not helping: likely leak.* "
        f"{kind.capitalize()} *{name}* on `{host}` was restarted {count} times "
        f"by rule `{inert(notification.get('rule', '?'))}`; {growth}. sentinel will not "
        "restart it again until the restart window has passed: the fix is in the app "
        "(or its limit)."
    )
    blocks: list[Block] = [_header(f"Likely leak: {name}"), _section(first)]
    memory = _memory_block(notification)
    if memory is not None:
        blocks.append(memory)
    blocks.append(_context(f"sentinel · {inert(notification.get('reason', ''))}"))
    text = (
        f"{_mention(notification, mention)}Restarts are not helping: likely leak in {name} "
        f"on {host} ({count} restarts; {growth})."
    )
    return {"text": text, "blocks": blocks}


def _test(notification: Mapping[str, Any]) -> Message:
    host = _host(notification)
    text = f"sentinel test message from {host}: this notifier works."
    return {
        "text": text,
        "blocks": [
            _header("sentinel: test message"),
            _section(
                f"This is a test from sentinel on `{host}` "
                f"(notifier `{inert(notification.get('notifier', '?'))}`). Kills, restarts "
                "and escalations will look like this channel's other sentinel messages."
            ),
        ],
    }


def render(notification: Mapping[str, Any], *, mention: str | None = None) -> Message:
    """The Slack message for one notification, within Slack's limits. Every outside value
    in it went through :func:`inert`, in every field (blocks and the fallback ``text``)."""
    kind = notification.get("kind")
    if kind == "kill":
        message = _kill(notification, mention)
    elif kind == "escalation":
        message = _escalation(notification, mention)
    elif kind == "storm":
        earlier = notification.get("earlier")
        return render_storm(
            notification.get("kills") or [],
            mention=mention,
            earlier=earlier if isinstance(earlier, int) else 0,
        )
    elif kind == "test":
        message = _test(notification)
    else:
        message = _action(notification)
    return fit(message)


def _storm_name(n: Mapping[str, Any]) -> str:
    target = n.get("target") or {}
    return inert(target.get("name") or target.get("id") or "?", limit=STORM_NAME_LIMIT)


def _storm_line(n: Mapping[str, Any]) -> str:
    record = n.get("record") or {}
    name = _storm_name(n)
    scope = {True: "host", False: "limit"}.get(record.get("global") is True)
    if not isinstance(record.get("global"), bool):
        scope = "?"
    at = (n.get("evidence") or {}).get("killed_at", n.get("at"))
    stamp = clock(at)[11:19] or "?"
    return (
        f"`{stamp}` *{name}* · `{inert(record.get('comm', '?'), limit=STORM_NAME_LIMIT)}` "
        f"RSS {human_bytes(rss_bytes(record))} · {scope}"
    )


def render_storm(
    kills: Sequence[Mapping[str, Any]], *, mention: str | None = None, earlier: int = 0
) -> Message:
    """One message for many kills close together (a storm). ``earlier``: how many of the
    first ``kills`` were already told one by one."""
    kills = [k for k in kills if isinstance(k, Mapping)]
    total = len(kills)
    hosts = sorted({str(k.get("host") or "?") for k in kills}) or ["?"]
    where = inert(hosts[0]) if len(hosts) == 1 else f"{len(hosts)} hosts"
    times = [
        t
        for k in kills
        for t in [_real((k.get("evidence") or {}).get("killed_at", k.get("at")))]
        if t is not None
    ]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    host_kills = sum(1 for k in kills if (k.get("record") or {}).get("global") is True)
    limit_kills = sum(1 for k in kills if (k.get("record") or {}).get("global") is False)
    unknown = len(kills) - host_kills - limit_kills
    names = sorted({_storm_name(k) for k in kills})
    summary = (
        f"{_mention({'kind': 'kill'}, mention)}*{total} OOM kills within "
        f"{human_duration(span)} on `{where}`*: {host_kills} because the host ran out "
        f"of memory, {limit_kills} at a container's own limit"
        f"{f', {unknown} unknown' if unknown else ''}."
    )
    if earlier:
        summary += (
            f" The first {'kill was' if earlier == 1 else f'{earlier} kills were'} "
            "reported on its own above."
        )
    blocks: list[Block] = [
        _header(f"OOM kill storm on {where}: {total} kills"),
        _section(summary),
    ]
    lines = [_storm_line(k) for k in kills[:STORM_LINES]]
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > MAX_SECTION_TEXT - 100:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    if len(kills) > STORM_LINES:
        blocks.append(_context(f"… and {len(kills) - STORM_LINES} more kills (`sentinel events`)"))
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    text = (
        f"{_mention({'kind': 'kill'}, mention)}OOM kill storm on {where}: {total} kills within "
        f"{human_duration(span)} ({host_kills} host out of memory, {limit_kills} at a limit): "
        f"{shown}."
    )
    return fit({"text": text, "blocks": blocks})


# --- Slack's limits ------------------------------------------------------------------------


_CUT_ENTITY = re.compile(r"&[a-z]{0,3}$")


def _head(text: str, n: int) -> str:
    """The first ``n`` characters of ``text``, without an entity (``&amp;``) cut in two."""
    return _CUT_ENTITY.sub("", text[: max(0, n)])


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, marked with ``…`` when cut; a code block
    cut open is closed again, and an entity made by :func:`inert` is never cut in two."""
    if len(text) <= limit:
        return text
    out = _head(text, limit - 1) + "…"
    if out.count("```") % 2 == 1:
        out = _head(text, limit - 4) + "…```"
        if out.count("```") % 2 == 1:  # the cut fell inside the closing fence itself
            out = _head(text, limit - 4).rstrip("`") + "…```"
    return out[:limit]


def _fit_text(obj: Mapping[str, Any], limit: int) -> dict[str, Any]:
    text = str(obj.get("text") or "") or " "
    return {**obj, "text": cut(text, limit)}


def fit(message: Mapping[str, Any]) -> Message:
    """``message`` within Slack's limits (see the module docstring)."""
    blocks: list[Block] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            blocks.append({**block, "text": _fit_text(block["text"], MAX_HEADER_TEXT)})
        elif kind == "section":
            out = dict(block)
            if "text" in block:
                out["text"] = _fit_text(block["text"], MAX_SECTION_TEXT)
            if "fields" in block:
                out["fields"] = [_fit_text(f, MAX_FIELD_TEXT) for f in block["fields"][:MAX_FIELDS]]
            blocks.append(out)
        elif kind == "context":
            elements = [
                _fit_text(e, MAX_SECTION_TEXT) for e in block["elements"][:MAX_CONTEXT_ELEMENTS]
            ]
            blocks.append({**block, "elements": elements or [{"type": "mrkdwn", "text": " "}]})
        else:
            blocks.append(dict(block))
    if len(blocks) > MAX_BLOCKS:
        left = len(blocks) - (MAX_BLOCKS - 1)
        blocks = [*blocks[: MAX_BLOCKS - 1], _context(f"… {left} more blocks left out")]
    text = cut(str(message.get("text") or "").strip() or "sentinel notification", MAX_FALLBACK_TEXT)
    return {"text": text, "blocks": blocks}
