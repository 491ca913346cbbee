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
