"""Strip a kernel log line of its transport prefix, whatever wrote it.

The same kernel message reaches operators through several writers, each with its own
prefix: ``/dev/kmsg`` records, ``dmesg`` and ``dmesg -T``, syslog / kern.log / messages
(BSD or RFC 3339 stamps, with ``#012``-escaped newlines), and ``journalctl -k`` in its
short, short-precise, short-iso and short-full forms. :class:`LineDecoder` turns each raw
line into the message text plus what the prefix said: host, seconds since boot, wall
clock, kmsg sequence number, and whether the line came from the kernel at all.

Pure: strings in, values out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "jan ene gen janv jän",
        "feb fév fev févr",
        "mar mär mrz märz mars",
        "apr abr avr",
        "may mai mag mayo",
        "jun juin giu",
        "jul juil lug",
        "aug ago aoû aou août",
        "sep set sept",
        "oct okt ott out",
        "nov",
        "dec dez dic déc",
    ),
    start=1,
):
    for _name in _names.split():
        MONTHS[_name] = _number


@dataclass(frozen=True, slots=True)
class LogLine:
    """One kernel message line with its prefix taken apart."""

    text: str
    host: str | None = None
    kernel_timestamp: float | None = None
    time: str | None = None
    log_time: str | None = None
    seq: int | None = None
    kernel: bool = True
    """False for a syslog/journal line written by anything but the kernel."""


_KMSG = re.compile(r"(\d+),(\d+),(\d+),[^;]*;(.*)", re.S)
_KMSG_DICT = re.compile(r" [A-Z_]+=")
_DMESG_TS = re.compile(r"\[\s*(\d+\.\d+)\]\s?(?:\[\s*[TC]\d+\]\s?)?")
_PRIO = re.compile(r"<\d{1,3}>")
_DMESG_X = re.compile(
    r"(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local\d)\s*:"
    r"(?:emerg|alert|crit|err|warn|notice|info|debug)\s*: ?"
)
_DMESG_T = re.compile(r"\[([^\[\]]*?\d\d:\d\d:\d\d[^\[\]]*?)\]\s?")
_STAMP_YEAR = re.compile(r"\b(\d{4})\b")
_STAMP_CLOCK = re.compile(r"\b(\d\d:\d\d:\d\d)\b")
_STAMP_DAY = re.compile(r"(?<![\d:])(\d{1,2})\.?(?![\d:])")
_STAMP_WORD = re.compile(r"[^\W\d_]+", re.U)
_BSD = re.compile(
    r"(?P<mon>[A-Za-zÀ-ÿ]{3,4})\.?\s+(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)(?P<frac>\.\d+)?"
    r" (?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
_ISO = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d)[T ](?P<clock>\d\d:\d\d:\d\d)(?P<frac>[.,]\d+)?"
    r"(?P<tz>Z|[+-]\d\d:?\d\d)? (?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
_FULL = re.compile(
    r"[A-Za-z]{3} (?P<date>\d{4}-\d\d-\d\d) (?P<clock>\d\d:\d\d:\d\d)(?P<frac>\.\d+)?"
    r" (?P<tz>[A-Za-z][A-Za-z0-9+-]*) (?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
_ESCAPED = re.compile(r"#0(1[12])")
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")
_MONOTONIC_HOST = re.compile(r"(?P<host>\S+) kernel: ?")
_UNIX = re.compile(
    r"(?P<epoch>\d{9,11})(?P<frac>\.\d+)? (?P<host>\S+) (?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
_RFC5424 = re.compile(
    r"1 (?P<date>\d{4}-\d\d-\d\d)T(?P<clock>\d\d:\d\d:\d\d)(?P<frac>\.\d+)?"
    r"(?P<tz>Z|[+-]\d\d:\d\d) (?P<host>\S+) (?P<tag>\S+) \S+ \S+ (?:-|\[.*?\]) ?"
)


def _month(name: str) -> int | None:
    name = name.lower().rstrip(".")
    for size in (len(name), 4, 3):
        number = MONTHS.get(name[:size])
        if number is not None:
            return number
    return None


def _stamp_time(stamp: str) -> str | None:
    """ISO time from a ``dmesg -T`` stamp in any locale's word order, or None."""
    year = _STAMP_YEAR.search(stamp)
    clock = _STAMP_CLOCK.search(stamp)
    if not year or not clock:
        return None
    rest = stamp.replace(year.group(0), " ").replace(clock.group(0), " ")
    day = _STAMP_DAY.search(rest)
    words = _STAMP_WORD.findall(rest)
    months = [m for m in (_month(w) for w in words) if m is not None]
    if len(months) > 1:  # "mar." is Tuesday in French and Spanish: skip the weekday
        months = [m for m in (_month(w) for w in words[1:]) if m is not None]
    if not day or len(months) != 1 or not _is_date(int(year.group(1)), months[0], int(day[1])):
        return None
    return f"{year.group(1)}-{months[0]:02d}-{int(day.group(1)):02d}T{clock.group(1)}"


def _is_date(year: int, month: int, day: int) -> bool:
    """Whether the calendar has this day (no 29 February in 2021, no year 0 or 10000)."""
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _iso_tz(tz: str | None) -> str:
    if not tz:
        return ""
    if tz == "Z":
        return "+00:00"
    if ":" not in tz:
        return f"{tz[:3]}:{tz[3:]}"
    return tz


class LineDecoder:
    """Decodes raw lines one at a time; remembers what a continuation line needs.

    ``year`` supplies the year that BSD syslog stamps leave out. Without it the record's
    ``time`` stays empty for those lines and only ``log_time`` carries the stamp; so it does
    for a stamp the year does not have (``Feb 29`` in 2021).
    """

    def __init__(self, *, year: int | None = None) -> None:
        self.year = year
        self._last_kmsg = False
        self._last_host: str | None = None

    def decode(self, raw: str) -> list[LogLine]:
        """The message lines carried by one raw line (several where ``#012`` was escaped)."""
        line = raw.rstrip("\r\n")
        if not line:
            return []
        if self._last_kmsg and _KMSG_DICT.match(line):
            return []  # a /dev/kmsg dictionary continuation (SUBSYSTEM=, DEVICE=)
        if line[0] in " \t":
            line = line.lstrip()  # pasted or quoted logs: indentation before the prefix
            if not line:
                return []
        m = _KMSG.match(line)
        if m:
            self._last_kmsg = True
            self._last_host = None
            kts = int(m.group(3)) / 1e6
            seq = int(m.group(2))
            return [
                LogLine(text=text, kernel_timestamp=kts, seq=seq)
                for text in _kmsg_unescape(m.group(4))
            ]
        self._last_kmsg = False
        if line[0] == "{":
            return self._journal_json(line)
        if line.startswith("-- ") and (" --" in line[3:] or line.startswith("-- Logs begin")):
            return []  # journalctl's boot / "logs begin" markers
        if line[0] == "<":
            m = _PRIO.match(line)
            if m:
                line = line[m.end() :]
                m = _RFC5424.match(line)
                if m:
                    time = f"{m['date']}T{m['clock']}{m['frac'] or ''}{_iso_tz(m['tz'])}"
                    stamp = line[2 : m.start("host") - 1]
                    return self._syslog(line[m.end() :], m["host"], m["tag"], time, stamp)
        if line[:1] == "[":
            return [self._dmesg(line)]
        m = _DMESG_X.match(line)
        if m:
            return self.decode(line[m.end() :]) or []
        c = line[0]
        if c.isdigit():
            m = _UNIX.match(line)
            if m:
                seconds = float(m["epoch"] + (m["frac"] or ""))
                time = datetime.fromtimestamp(seconds, UTC).isoformat()
                stamp = line[: m.start("host") - 1]
                return self._syslog(line[m.end() :], m["host"], m["tag"], time, stamp)
            m = _ISO.match(line)
            if m:
                time = f"{m['date']}T{m['clock']}{(m['frac'] or '').replace(',', '.')}"
                time += _iso_tz(m["tz"])
                stamp = line[: m.start("host") - 1]
                return self._syslog(line[m.end() :], m["host"], m["tag"], time, stamp)
        elif c.isalpha():
            m = _BSD.match(line)
            if m:
                mon = _month(m["mon"])
                bsd_time: str | None = None
                day = int(m["day"])
                if mon is not None and self.year is not None and _is_date(self.year, mon, day):
                    bsd_time = f"{self.year:04d}-{mon:02d}-{day:02d}T{m['clock']}"
                    bsd_time += m["frac"] or ""
                stamp = line[: m.start("host") - 1]
                return self._syslog(line[m.end() :], m["host"], m["tag"], bsd_time, stamp)
            m = _FULL.match(line)
            if m:
                time = f"{m['date']}T{m['clock']}{m['frac'] or ''}"
                stamp = line[: m.start("host") - 1]
                return self._syslog(line[m.end() :], m["host"], m["tag"], time, stamp)
        # A message with no prefix: a continuation of the previous writer's host.
        return [LogLine(text=line, host=self._last_host)]

    def _dmesg(self, line: str) -> LogLine:
        m = _DMESG_TS.match(line)
        if m:
            kts = float(m.group(1))
            rest = line[m.end() :]
            host = _MONOTONIC_HOST.match(rest)  # journalctl -o short-monotonic
            if host:
                self._last_host = host["host"]
                return LogLine(text=rest[host.end() :], host=host["host"], kernel_timestamp=kts)
            self._last_host = None
            return LogLine(text=rest, kernel_timestamp=kts)
        m = _DMESG_T.match(line)
        if m and _STAMP_YEAR.search(m.group(1)):
            self._last_host = None
            stamp = m.group(1).strip()
            return LogLine(text=line[m.end() :], time=_stamp_time(stamp), log_time=stamp)
        return LogLine(text=line, host=self._last_host)  # a task-table row, "[<addr>]" ...

    def _syslog(
        self, text: str, host: str, tag: str, time: str | None, stamp: str
    ) -> list[LogLine]:
        self._last_host = host
        kernel = tag == "kernel"
        kts: float | None = None
        if kernel and text[:1] == "[":
            m = _DMESG_TS.match(text)
            if m:
                kts = float(m.group(1))
                text = text[m.end() :]
        pieces = [text]
        if "#01" in text:
            pieces = _ESCAPED.sub(lambda e: "\n" if e.group(1) == "12" else "\t", text).split("\n")
        return [
            LogLine(
                text=piece,
                host=host,
                kernel_timestamp=kts,
                time=time,
                log_time=stamp,
                kernel=kernel,
            )
            for piece in pieces
        ]

    def _journal_json(self, line: str) -> list[LogLine]:
        """``journalctl -o json``: one entry per line; kernel entries have transport kernel."""
        try:
            entry = json.loads(line)
        except ValueError:
            return [LogLine(text=line, host=self._last_host)]
        if not isinstance(entry, dict) or "MESSAGE" not in entry:
            return [LogLine(text=line, host=self._last_host)]
        message = entry["MESSAGE"]
        if isinstance(message, list):  # non-UTF-8 messages come as a byte array
            message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode(
                "utf-8", "replace"
            )
        if not isinstance(message, str):
            return []
        host = entry.get("_HOSTNAME")
        host = host if isinstance(host, str) else None
        self._last_host = host
        kernel = entry.get("_TRANSPORT") == "kernel" or entry.get("SYSLOG_IDENTIFIER") == "kernel"
        kts = _micros(entry.get("_SOURCE_MONOTONIC_TIMESTAMP"))
        realtime = _micros(entry.get("__REALTIME_TIMESTAMP"))
        time = None
        if realtime is not None:
            time = datetime.fromtimestamp(realtime, UTC).isoformat()
        return [
            LogLine(text=text, host=host, kernel_timestamp=kts, time=time, kernel=kernel)
            for text in message.split("\n")
        ]


def _micros(value: object) -> float | None:
    if isinstance(value, str) and value.isdigit():
        return int(value) / 1e6
    return None


def _kmsg_unescape(text: str) -> list[str]:
    """/dev/kmsg writes bytes outside printable ASCII as ``\\xNN``; a newline splits."""
    if "\\x" not in text:
        return [text]
    raw = _KMSG_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    data = raw.encode("latin-1", "replace")
    return data.decode("utf-8", "replace").split("\n")
