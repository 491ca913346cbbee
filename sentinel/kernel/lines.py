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
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime

MONTH_NAMES: tuple[str, ...] = (
    (
        "ene enero gen gener gennaio ian ianuarie jaan jaanuar jan janeiro januar januari "
        "january január januára janv janvier janvāris jän jänner led leden ledna oca ocak "
        "saus sausio sausis sty styczeń stycznia tammi tammikuu tammikuuta ιαν ιανουάριος "
        "ιανουαρίου січ січень січня янв январь января яну януари јан јануар 一月"
    ),
    (
        "feb febbraio febr febrer febrero februar februari februarie february február "
        "februára februāris fev fevereiro févr février helmi helmikuu helmikuuta lut lutego "
        "luty vas vasario vasaris veebr veebruar úno únor února şub şubat φεβ φεβρουάριος "
        "φεβρουαρίου лют лютий лютого феб фебруар фев февр февраль февраля февруари 二月"
    ),
    (
        "bře březen března kov kovas kovo maalis maaliskuu maaliskuuta maart mar marca march "
        "marec maret mars mart martie marts marzec marzo març março mrt márc március mär "
        "märts märz μάρ μάρτιος μαρ μαρτίου бер березень березня мар март марта 三月"
    ),
    (
        "abr abril apr april aprile aprilie aprill apríl apríla aprīlis avr avril bal "
        "balandis balandžio dub duben dubna huhti huhtikuu huhtikuuta kwi kwiecień kwietnia "
        "nis nisan ápr április απρ απρίλιος απριλίου апр апрель апреля април квіт квітень "
        "квітня 四月"
    ),
    (
        "geg gegužė gegužės kvě květen května mag maggio mai maig maijs maio maj maja may "
        "mayo mayıs mei máj mája május touko toukokuu toukokuuta μάι μάιος μαΐ μαΐου май мая "
        "мај трав травень травня 五月"
    ),
    (
        "birž birželio birželis cze czerwca czerwiec giu giugno haz haziran iun iunie juin "
        "jun june junho juni junij junio juny juuni jún júna június jūn jūnijs kesä kesäkuu "
        "kesäkuuta červen června čvn ιουν ιουνίου ιούν ιούνιος июн июнь июня черв червень "
        "червня юни јун 六月"
    ),
    (
        "heinä heinäkuu heinäkuuta iul iulie juil juillet jul julho juli julij julio juliol "
        "july juuli júl júla július jūl jūlijs liep liepa liepos lip lipca lipiec lug luglio "
        "tem temmuz července červenec čvc ιουλ ιουλίου ιούλ ιούλιος июл июль июля лип липень "
        "липня юли јул 七月"
    ),
    (
        "ag ago agost agosto agu agustus août aug august augusta augusti augusts augustus "
        "augusztus avg avgust ağu ağustos elo elokuu elokuuta rugp rugpjūtis rugpjūčio sie "
        "sierpień sierpnia srp srpen srpna αυγ αυγούστου αύγ αύγουστος авг август августа "
        "серп серпень серпня 八月"
    ),
    (
        "eyl eylül rugs rugsėjis rugsėjo sep sept september septembra septembre septembrie "
        "septembris septiembre set setembre setembro settembre syys syyskuu syyskuuta szept "
        "szeptember wrz wrzesień września zář září σεπ σεπτέμβριος σεπτεμβρίου вер вересень "
        "вересня сент сентябрь сентября сеп септембар септември 九月"
    ),
    (
        "eki ekim loka lokakuu lokakuuta oct october octobre octombrie octubre okt oktober "
        "oktobris oktoober október októbra ott ottobre out outubro paź październik "
        "października spal spalio spalis říj říjen října οκτ οκτωβρίου οκτώβριος жовт жовтень "
        "жовтня окт октобар октомври октябрь октября 十月"
    ),
    (
        "kas kasım lapkr lapkritis lapkričio lis listopad listopada listopadu marras "
        "marraskuu marraskuuta noiembrie nov november novembra novembre novembris novembro "
        "noviembre νοέ νοέμβριος νοε νοεμβρίου лист листопад листопада нов новембар ное "
        "ноември нояб ноябрь ноября 十一月"
    ),
    (
        "ara aralık dec december decembra decembrie decembris des desember desembre dets "
        "detsember dez dezember dezembro dic dicembre diciembre déc décembre gru grudnia "
        "grudzień gruod gruodis gruodžio joulu joulukuu joulukuuta pro prosince prosinec δεκ "
        "δεκέμβριος δεκεμβρίου груд грудень грудня дек декабрь декабря декември дец децембар "
        "十二月"
    ),
)
"""Each month's names in the common locales, lowercased, without a final dot.

Source: CLDR 47 (the Unicode Common Locale Data Repository, as shipped in Babel 2.18),
``months`` of ``en de de_AT fr es it pt pt_BR nl sv da nb fi pl cs sk sl hu ro tr ru uk bg
sr el ca lt lv et zh zh_Hant ja ko id``: the abbreviated and wide names, in their format and
stand-alone forms; names of two words (Catalan ``de gen.``) are left out. Python has no
CLDR, so the table is embedded. No name belongs to two months. ``strftime("%b")`` of a
glibc locale (what ``journalctl`` and ``dmesg -T`` print) is either one of these or a
prefix of one (Russian ``фев`` of ``февр``), found by :func:`_month`; the numeric forms of
Chinese, Japanese and Korean (``3月``, ``3월``) are read by :data:`_CJK_MONTH`.
"""
_SEEN_IN_LOGS = ("", "", "mrz", "", "", "", "", "aou", "", "", "", "")
"""Spellings seen in logs that CLDR does not have (ASCII for an accented name)."""

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(MONTH_NAMES, start=1):
    for _name in (*_names.split(), *_SEEN_IN_LOGS[_number - 1].split()):
        MONTHS[_name] = _number
_MONTH_PREFIXES: dict[str, int] = {}
"""3- and 4-letter prefixes of longer names that name one month only (glibc's ``сен``)."""
_ambiguous: set[str] = set()
for _name, _number in MONTHS.items():
    for _size in (3, 4):
        _prefix = _name[:_size]
        if len(_name) <= _size or _prefix in MONTHS:
            continue
        if _MONTH_PREFIXES.setdefault(_prefix, _number) != _number:
            _ambiguous.add(_prefix)
for _prefix in _ambiguous:
    del _MONTH_PREFIXES[_prefix]
_CJK_MONTH = re.compile(r"(\d{1,2})\s*[月월]")


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
    r"(?P<mon>\d{1,2}[月월]|[^\W\d_]{2,12}\.?)\s+(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)"
    r"(?P<frac>\.\d+)? (?:(?P<host>\S*[^\s:]) )?(?:[a-z0-9]+\.[a-z]+ )?"
    r"(?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
"""BSD syslog and ``journalctl`` short: a month in any locale (``Mär``, ``févr.``, ``мар``,
``3月``), the host (``journalctl`` of a journal without one leaves it out: ``Jan 09
14:15:16 kernel: ...``; a host never ends with ``:``), BusyBox syslogd's ``kern.warn``, the
tag."""
_LOGREAD = re.compile(
    r"[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d)"
    r" (?P<year>\d{4}) [a-z0-9]+\.[a-z]+ (?P<tag>[^\s:\[]+)(?:\[\d+\])?: ?"
)
"""OpenWrt's ``logread`` (ubox logd): ``Tue Mar 17 18:23:55 2026 kern.err kernel: ...``,
a ``ctime`` stamp with its year, the facility and level, the tag, and no host."""
_DROPPED = re.compile(r"\*\* \d+ printk messages dropped \*\*\s*")
"""What a console prints before the next line when printk outran it."""
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


PREFIXED_ASCII = re.compile(
    rb"[A-Za-z]{3} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)? (?:[!-9;-~]+ )?"
    rb"[!-9;-Z\\-~]+(?:\[[0-9]+\])?:"  # BSD syslog, journalctl short: "Mar  1 10:00:00 h kernel:"
    rb"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    rb"(?:Z|[+-][0-9]{2}:?[0-9]{2})? [!-~]+ [!-9;-Z\\-~]+(?:\[[0-9]+\])?:"  # RFC 3339 syslog
    rb"|\[ *[0-9]+\.[0-9]+\]"  # dmesg
    rb"|[0-9]+,[0-9]+,[0-9]+,[^;\n]*;"  # /dev/kmsg
)
"""The commonest prefixes above, in ASCII bytes: a raw line that starts with one of these is
one that :class:`LineDecoder` reads as prefixed (each alternative a subset of ``_BSD``,
``_ISO``, ``_DMESG_TS`` or ``_KMSG``), so the byte scanner tells it without decoding it.
Change it with those patterns: ``tests/test_scan.py`` holds it to the decoder."""


def _month(name: str) -> int | None:
    """The month a name means in any locale of :data:`MONTH_NAMES`, or None."""
    name = unicodedata.normalize("NFC", name).strip().lower().rstrip(".")
    m = _CJK_MONTH.fullmatch(name)
    if m:
        return int(m.group(1)) if 1 <= int(m.group(1)) <= 12 else None
    number = MONTHS.get(name) or _MONTH_PREFIXES.get(name)
    if number is None:
        for size in (4, 3):
            number = MONTHS.get(name[:size]) or _MONTH_PREFIXES.get(name[:size])
            if number is not None:
                break
    return number


def _stamp_time(stamp: str) -> str | None:
    """ISO time from a ``dmesg -T`` stamp in any locale's word order, or None."""
    year = _STAMP_YEAR.search(stamp)
    clock = _STAMP_CLOCK.search(stamp)
    if not year or not clock:
        return None
    rest = stamp.replace(year.group(0), " ").replace(clock.group(0), " ")
    cjk = _CJK_MONTH.search(rest)
    if cjk:  # "[二 3月 17 18:23:55 2026]": the digits before 月 are the month, not the day
        rest = rest[: cjk.start()] + " " + rest[cjk.end() :]
    day = _STAMP_DAY.search(rest)
    words = _STAMP_WORD.findall(rest)
    months = [m for m in (_month(w) for w in words) if m is not None]
    if cjk:
        months = [int(cjk.group(1))]
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
        if line[0] == ">":
            line = line.lstrip("> \t")  # quoted in a mail or forum post: "> ", ">> ", "> > "
            if not line:
                return []
        if line[0] == "*":
            dropped = _DROPPED.match(line)
            if dropped:
                line = line[dropped.end() :]
                if not line:
                    return []
        if line[0].isalpha():  # BSD syslog, the usual form: no other that a letter starts
            m = _BSD.match(line)  # (kmsg, dmesg -x, logread, full dates) matches it too
            if m:
                self._last_kmsg = False
                return self._bsd(line, m)
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
            m = _BSD.match(line)  # a CJK month: "3月 17 18:23:55 host kernel: ..."
            if m:
                return self._bsd(line, m)
        elif c.isalpha():
            m = _LOGREAD.match(line)
            if m:
                mon = _month(m["mon"])
                year, day = int(m["year"]), int(m["day"])
                read_time = None
                if mon is not None and _is_date(year, mon, day):
                    read_time = f"{year:04d}-{mon:02d}-{day:02d}T{m['clock']}"
                stamp = line[: m.end("year")]
                return self._syslog(line[m.end() :], None, m["tag"], read_time, stamp)
            m = _BSD.match(line)
            if m:
                return self._bsd(line, m)
            m = _FULL.match(line)
            if m:
                time = f"{m['date']}T{m['clock']}{m['frac'] or ''}"
                stamp = line[: m.start("host") - 1]
                return self._syslog(line[m.end() :], m["host"], m["tag"], time, stamp)
        # A message with no prefix: a continuation of the previous writer's host.
        return [LogLine(text=line, host=self._last_host)]

    def _bsd(self, line: str, m: re.Match[str]) -> list[LogLine]:
        bsd_time: str | None = None
        mon = _month(m["mon"]) if self.year is not None else None
        day = int(m["day"])
        if mon is not None and self.year is not None and _is_date(self.year, mon, day):
            bsd_time = f"{self.year:04d}-{mon:02d}-{day:02d}T{m['clock']}"
            bsd_time += m["frac"] or ""
        stamp = line[: m.end("frac") if m["frac"] else m.end("clock")]
        return self._syslog(line[m.end() :], m["host"], m["tag"], bsd_time, stamp)

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
        self, text: str, host: str | None, tag: str, time: str | None, stamp: str
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
