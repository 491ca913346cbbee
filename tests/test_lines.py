"""Every log writer's prefix is taken apart the same way."""

from __future__ import annotations

import pytest

from sentinel.kernel.lines import LineDecoder

MSG = "Out of memory: Killed process 1 (x)"


@pytest.mark.parametrize(
    ("raw", "host", "kts", "time", "log_time"),
    [
        (f"6,2697,3812808832,-;{MSG}", None, 3812.808832, None, None),
        (f"6,2697,3812808832,-,caller=T123;{MSG}", None, 3812.808832, None, None),
        (f"[ 1234.567890] {MSG}", None, 1234.56789, None, None),
        (f"[ 1234.567890][ T1234] {MSG}", None, 1234.56789, None, None),
        (f"<4>[ 1234.567890] {MSG}", None, 1234.56789, None, None),
        (f"kern  :err   : [ 1234.567890] {MSG}", None, 1234.56789, None, None),
        (
            f"[Tue Sep 28 10:00:00 2021] {MSG}",
            None,
            None,
            "2021-09-28T10:00:00",
            "Tue Sep 28 10:00:00 2021",
        ),
        (
            f"Sep 30 13:00:20 web-1 kernel: [2343070.752481] {MSG}",
            "web-1",
            2343070.752481,
            None,
            "Sep 30 13:00:20",
        ),
        (f"Sep  3 13:00:20 web-1 kernel: {MSG}", "web-1", None, None, "Sep  3 13:00:20"),
        (
            f"Sep 30 13:00:20.123456 web-1 kernel: {MSG}",
            "web-1",
            None,
            None,
            "Sep 30 13:00:20.123456",
        ),
        (
            f"2021-09-30T13:00:20.752481+02:00 web-1 kernel: [ 5.000001] {MSG}",
            "web-1",
            5.000001,
            "2021-09-30T13:00:20.752481+02:00",
            "2021-09-30T13:00:20.752481+02:00",
        ),
        (
            f"2022-07-13T11:45:20+0300 web-1 kernel: {MSG}",
            "web-1",
            None,
            "2022-07-13T11:45:20+03:00",
            "2022-07-13T11:45:20+0300",
        ),
        (
            f"2022-07-13T11:45:20Z web-1 kernel: {MSG}",
            "web-1",
            None,
            "2022-07-13T11:45:20+00:00",
            "2022-07-13T11:45:20Z",
        ),
        (
            f"Wed 2022-07-13 11:45:20 EEST web-1 kernel: {MSG}",
            "web-1",
            None,
            "2022-07-13T11:45:20",
            "Wed 2022-07-13 11:45:20 EEST",
        ),
        (MSG, None, None, None, None),
    ],
)
def test_prefix_is_taken_apart(
    raw: str, host: str | None, kts: float | None, time: str | None, log_time: str | None
) -> None:
    (line,) = LineDecoder().decode(raw)
    assert line.text == MSG
    assert (line.host, line.kernel_timestamp, line.time, line.log_time) == (
        host,
        kts,
        time,
        log_time,
    )
    assert line.kernel


def test_year_completes_bsd_syslog_time() -> None:
    (line,) = LineDecoder(year=2021).decode(f"Sep  3 13:00:20 web-1 kernel: {MSG}")
    assert line.time == "2021-09-03T13:00:20"


def test_non_kernel_syslog_lines_are_marked() -> None:
    (line,) = LineDecoder().decode(f"Sep 30 13:00:20 web-1 dockerd[812]: {MSG}")
    assert not line.kernel
    assert line.host == "web-1"


def test_rsyslog_escaped_newlines_become_lines() -> None:
    lines = LineDecoder().decode(
        "Sep 30 13:00:20 h kernel: active_anon:1 inactive_anon:2#012 active_file:3#011x"
    )
    assert [line.text for line in lines] == ["active_anon:1 inactive_anon:2", " active_file:3\tx"]
    assert {line.host for line in lines} == {"h"}


def test_kmsg_dictionary_continuations_are_dropped() -> None:
    decoder = LineDecoder()
    assert decoder.decode("6,1,2,-;virtio_net virtio1 eth0: renamed")
    assert decoder.decode(" SUBSYSTEM=virtio") == []
    assert decoder.decode(" DEVICE=+virtio:virtio1") == []


def test_journal_markers_are_skipped() -> None:
    decoder = LineDecoder()
    assert decoder.decode("-- Logs begin at Mon 2022-07-11 10:00:00 EEST, end at ... --") == []
    assert decoder.decode("-- Boot 8d0c0e6f3bd24c1b8e1a6c0c1a0f0f0f --") == []


def test_unprefixed_continuation_keeps_the_previous_host() -> None:
    decoder = LineDecoder()
    decoder.decode("Sep 30 13:00:20 web-2 kernel: Memory cgroup stats for /x:")
    (line,) = decoder.decode("    anon 314535936")
    assert line.host == "web-2"


def test_journal_short_monotonic_and_short_unix() -> None:
    (line,) = LineDecoder().decode(f"[ 1234.567890] web-1 kernel: {MSG}")
    assert (line.text, line.host, line.kernel_timestamp) == (MSG, "web-1", 1234.56789)
    (line,) = LineDecoder().decode(f"1657702520.250000 web-1 kernel: {MSG}")
    assert (line.text, line.host, line.time) == (MSG, "web-1", "2022-07-13T08:55:20.250000+00:00")


def test_rfc5424_syslog() -> None:
    (line,) = LineDecoder().decode(f"<4>1 2021-09-30T13:00:20.123Z web-1 kernel - - - {MSG}")
    assert (line.text, line.host, line.time) == (MSG, "web-1", "2021-09-30T13:00:20.123+00:00")
    assert line.kernel


def test_journal_json_entries() -> None:
    entry = (
        '{"__REALTIME_TIMESTAMP":"1657702520250000","_SOURCE_MONOTONIC_TIMESTAMP":"5000001",'
        '"_TRANSPORT":"kernel","_HOSTNAME":"web-1","MESSAGE":"' + MSG + '"}'
    )
    (line,) = LineDecoder().decode(entry)
    assert (line.text, line.host, line.kernel_timestamp) == (MSG, "web-1", 5.000001)
    assert line.time == "2022-07-13T08:55:20.250000+00:00"
    assert line.kernel
    (other,) = LineDecoder().decode('{"_TRANSPORT":"journal","MESSAGE":"' + MSG + '"}')
    assert not other.kernel


def test_indented_lines_keep_their_prefix() -> None:
    (line,) = LineDecoder().decode(f"        [56395.333438] {MSG}")
    assert (line.text, line.kernel_timestamp) == (MSG, 56395.333438)


@pytest.mark.parametrize(
    ("raw", "month"),
    [
        ("Mär 17 18:23:55 pve kernel: x", 3),  # glibc de_DE
        ("févr. 09 07:41:12 pc kernel: x", 2),  # glibc fr_FR
        ("мар 03 11:02:47 srv kernel: x", 3),  # glibc ru_RU
        ("сен 03 11:02:47 srv kernel: x", 9),  # glibc ru_RU: a prefix of CLDR's "сент."
        ("3月 21 02:10:05 web kernel: x", 3),  # zh_CN
        ("10月 21 02:10:05 web kernel: x", 10),
        (" 3月 22 04:15:30 db kernel: x", 3),  # ja_JP pads one digit with a space
        ("11월 05 23:59:01 app kernel: x", 11),  # ko_KR
        ("Μάρ 14 09:30:00 srv kernel: x", 3),  # el_GR
        ("marras 14 09:30:00 srv kernel: x", 11),  # Finnish November, not "mar"
        ("Eki 14 09:30:00 srv kernel: x", 10),  # tr_TR
        ("Sep 30 13:00:20 web-1 kernel: x", 9),
    ],
)
def test_journal_and_syslog_months_in_any_locale(raw: str, month: int) -> None:
    [line] = LineDecoder(year=2026).decode(raw)
    assert line.kernel
    assert line.text == "x"
    assert (line.time or "")[:8] == f"2026-{month:02d}-"
    assert line.host is not None


def test_unknown_month_word_keeps_the_stamp_but_no_time() -> None:
    [line] = LineDecoder(year=2026).decode("Foo 17 18:23:55 pve kernel: x")
    assert (line.host, line.time, line.log_time) == ("pve", None, "Foo 17 18:23:55")


@pytest.mark.parametrize(
    ("raw", "host", "kernel"),
    [
        ("Jan 09 14:15:16 kernel: Out of memory: x", None, True),
        ("Jan 09 14:15:16 kernel: wlan0: link is ready", None, True),
        ("Jan 09 14:15:16 systemd[1]: Started x.", None, False),
        ("Jan 09 14:15:16 node-1 kernel: wlan0: link", "node-1", True),
        ("Jan  9 14:15:16 router kern.warn kernel: x", "router", True),  # BusyBox syslogd
    ],
)
def test_journal_lines_with_and_without_a_host(raw: str, host: str | None, kernel: bool) -> None:
    [line] = LineDecoder().decode(raw)
    assert (line.host, line.kernel, line.log_time) == (host, kernel, raw[:15])


def test_openwrt_logread_line_has_a_full_date_and_no_host() -> None:
    raw = "Tue Mar 17 18:23:55 2026 kern.err kernel: [ 267.720081] Out of memory: x"
    [line] = LineDecoder().decode(raw)
    assert line.text == "Out of memory: x"
    assert (line.host, line.kernel, line.kernel_timestamp) == (None, True, 267.720081)
    assert (line.time, line.log_time) == ("2026-03-17T18:23:55", "Tue Mar 17 18:23:55 2026")
    [daemon] = LineDecoder().decode("Sun Mar  8 12:23:14 2020 daemon.info procd: x")
    assert (daemon.kernel, daemon.time) == (False, "2020-03-08T12:23:14")


@pytest.mark.parametrize("quote", ["> ", ">", ">> ", "> > ", "  > "])
def test_mail_quoting_is_taken_off(quote: str) -> None:
    [line] = LineDecoder().decode(f"{quote}[ 12.5] Out of Memory: Killed process 1 (x).")
    assert (line.text, line.kernel_timestamp) == ("Out of Memory: Killed process 1 (x).", 12.5)
    assert LineDecoder().decode(">") == []


def test_printk_dropped_marker_before_a_timestamp_is_taken_off() -> None:
    [line] = LineDecoder().decode("** 1133 printk messages dropped ** [    3.474989] CPU: 0 x")
    assert (line.text, line.kernel_timestamp) == ("CPU: 0 x", 3.474989)


def test_dmesg_t_stamp_with_a_cjk_month() -> None:
    [line] = LineDecoder().decode("[二 3月 17 18:23:55 2026] x")
    assert (line.text, line.time) == ("x", "2026-03-17T18:23:55")
