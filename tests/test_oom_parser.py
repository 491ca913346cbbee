"""Behaviour of the report assembler beyond the real samples: hosts, flushing, variants."""

from __future__ import annotations

from sentinel.kernel.oom import OomParser, parse_lines
from sentinel.kernel.scan import scan_chunks

CID = "6141f63fdc9f5bca4ad9c5a98e50a8ad7588948f281668a09bb4f1309af7b059"


def test_reports_of_two_hosts_never_mix() -> None:
    lines = [
        "Sep 30 13:00:20 a kernel: java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0,"
        " oom_score_adj=0",
        "Sep 30 13:00:20 b kernel: php invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE),"
        " order=1, oom_score_adj=5",
        "Sep 30 13:00:20 a kernel: [  pid  ]   uid  tgid total_vm      rss pgtables_bytes"
        " swapents oom_score_adj name",
        "Sep 30 13:00:20 b kernel: [  pid  ]   uid  tgid total_vm      rss pgtables_bytes"
        " swapents oom_score_adj name",
        "Sep 30 13:00:20 a kernel: [    100]  1000   100     1000      500    40960        0"
        "           -5 java",
        "Sep 30 13:00:20 b kernel: [    100]    33   100     2000      700    40960        0"
        "          300 php",
        "Sep 30 13:00:20 b kernel: Out of memory: Killed process 100 (php) total-vm:8000kB,"
        " anon-rss:2800kB, file-rss:0kB, shmem-rss:0kB",
        "Sep 30 13:00:21 a kernel: Memory cgroup out of memory: Killed process 100 (java)"
        " total-vm:4000kB, anon-rss:2000kB, file-rss:0kB, shmem-rss:0kB",
    ]
    b, a = parse_lines(lines)
    assert (b.host, b.invoker, b.order, b.uid, b.oom_score_adj, b.global_) == (
        "b",
        "php",
        1,
        33,
        300,
        True,
    )
    assert (a.host, a.invoker, a.order, a.uid, a.oom_score_adj, a.global_) == (
        "a",
        "java",
        0,
        1000,
        -5,
        False,
    )
    assert [t["name"] for t in a.tasks] == ["java"]
    assert [t["name"] for t in b.tasks] == ["php"]


SUMMARY = (
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    f"oom_memcg=/docker/{CID},task_memcg=/docker/{CID},task=leaker,pid=42,uid=0"
)


def test_summary_only_kill_waits_for_flush() -> None:
    parser = OomParser()
    assert parser.feed(SUMMARY) == []
    assert parser.busy
    (record,) = parser.flush()
    assert (record.pid, record.comm, record.container_id, record.global_) == (
        42,
        "leaker",
        CID,
        False,
    )
    assert not parser.busy


def test_summary_only_kill_is_emitted_when_the_next_report_starts() -> None:
    parser = OomParser()
    parser.feed(SUMMARY)
    (record,) = parser.feed("x invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0")
    assert record.pid == 42


def test_summary_and_killed_line_of_one_victim_are_one_record() -> None:
    records = list(
        parse_lines(
            [
                SUMMARY,
                "Memory cgroup out of memory: Killed process 42 (leaker) total-vm:1kB, "
                "anon-rss:2kB, file-rss:3kB, shmem-rss:4kB, UID:0 pgtables:5kB oom_score_adj:7",
            ]
        )
    )
    assert len(records) == 1
    r = records[0]
    assert (r.anon_rss_kb, r.pgtables_kb, r.oom_score_adj, r.constraint) == (
        2,
        5,
        7,
        "CONSTRAINT_MEMCG",
    )
    assert r.rss_kb == 9


def test_rate_limited_kill_line_alone_is_a_record() -> None:
    (r,) = parse_lines(
        [
            "[ 5.1] Memory cgroup out of memory: Killed process 7 (a b (c)) total-vm:10kB, "
            "anon-rss:1kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:4kB oom_score_adj:0"
        ]
    )
    assert (r.pid, r.comm, r.uid, r.global_, r.kernel_timestamp) == (7, "a b (c)", 33, False, 5.1)
    assert r.invoker is None
    assert r.constraint is None


def test_allocating_task_kill_is_global() -> None:
    (r,) = parse_lines(
        [
            "Out of memory (oom_kill_allocating_task): Killed process 9 (stress) "
            "total-vm:10kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB"
        ]
    )
    assert (r.pid, r.global_) == (9, True)


def test_uid_with_comma_form() -> None:
    (r,) = parse_lines(["Killed process 9 (java), UID 1000, total-vm:10kB, anon-rss:1kB"])
    assert (r.pid, r.comm, r.uid, r.total_vm_kb) == (9, "java", 1000, 10)


def test_no_killable_processes_is_no_kill_and_ends_the_report() -> None:
    parser = OomParser()
    parser.feed("a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0")
    assert parser.feed("Out of memory and no killable processes...") == []
    assert not parser.busy
    assert parser.flush() == []


def test_invoked_line_without_kill_yields_nothing() -> None:
    assert list(parse_lines(["a invoked oom-killer: gfp_mask=0x0, order=0"])) == []


def test_sacrifice_child_line_alone_is_not_a_kill() -> None:
    assert list(parse_lines(["Out of memory: Kill process 5 (x) score 9 or sacrifice child"])) == []


def test_invoker_pid_comes_from_the_cpu_line() -> None:
    (r,) = parse_lines(
        [
            "process reaper invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
            "oom_score_adj=-10",
            "CPU: 3 PID: 4242 Comm: process reaper Not tainted 5.15.0 #1",
            "Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        ]
    )
    assert (r.invoker, r.invoker_pid, r.invoker_oom_score_adj) == ("process reaper", 4242, -10)


def test_mem_info_counters_are_kept() -> None:
    (r,) = parse_lines(
        [
            "a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "Mem-Info:",
            "active_anon:10 inactive_anon:20 isolated_anon:0",
            " active_file:30 inactive_file:40 isolated_file:0",
            "Node 0 DMA free:15872kB min:40kB",
            "514440 pages RAM",
            "Free swap  = 0kB",
            "Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        ]
    )
    assert r.mem_info == {
        "active_anon": 10,
        "inactive_anon": 20,
        "isolated_anon": 0,
        "active_file": 30,
        "inactive_file": 40,
        "isolated_file": 0,
        "pages_ram": 514440,
        "free_swap_kb": 0,
    }
    assert r.global_ is True  # Mem-Info is printed only for a system-wide OOM


def test_comm_with_spaces_in_task_table() -> None:
    (r,) = parse_lines(
        [
            "a invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
            "[   2074]   998  2074     1000      500    40960        0           100 tmux: client",
            "Killed process 2074 (tmux: client) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
        ]
    )
    assert r.tasks[0]["name"] == "tmux: client"
    assert (r.uid, r.oom_score_adj) == (998, 100)


def test_non_utf8_bytes_are_tolerated() -> None:
    data = (
        b"\xff\xfe garbage \xc3\x28\n"
        b"[ 1.0] Out of memory: Killed process 3 (\xe9vil) total-vm:1kB, anon-rss:1kB\n"
    )
    (r,) = scan_chunks([data])
    assert r.pid == 3
    assert r.comm == "\ufffdvil"


def test_crlf_line_endings() -> None:
    data = b"[ 1.0] Out of memory: Killed process 3 (x) total-vm:1kB, anon-rss:1kB\r\n"
    (r,) = scan_chunks([data])
    assert (r.comm, r.anon_rss_kb) == ("x", 1)


def test_kill_of_next_report_does_not_take_previous_context() -> None:
    records = list(
        parse_lines(
            [
                "a invoked oom-killer: gfp_mask=0x1, order=0, oom_score_adj=0",
                "Out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
                "Out of memory: Killed process 6 (y) total-vm:1kB, anon-rss:1kB, file-rss:0kB",
            ]
        )
    )
    assert [(r.pid, r.invoker) for r in records] == [(5, "a"), (6, None)]


def test_rhel6_killed_line_with_uid_before_comm() -> None:
    (r,) = parse_lines(
        [
            "java invoked oom-killer: gfp_mask=0x201da, order=0, oom_adj=0, oom_score_adj=0",
            "Pid: 2592, comm: java Not tainted 2.6.32-431.el6.x86_64 #1",
            "Out of memory: Kill process 2592 (java) score 900 or sacrifice child",
            "Killed process 2592, UID 1000, (java) total-vm:10kB, anon-rss:1kB, file-rss:0kB",
        ]
    )
    assert (r.pid, r.comm, r.uid, r.total_vm_kb, r.global_) == (2592, "java", 1000, 10, True)
    assert (r.invoker, r.invoker_pid, r.invoker_oom_score_adj) == ("java", 2592, 0)


def test_rhel5_killed_line_ends_with_a_period() -> None:
    (r,) = parse_lines(["Out of memory: Killed process 7240 (httpd)."])
    assert (r.pid, r.comm, r.global_) == (7240, "httpd", True)


def test_kmsg_escapes_are_decoded() -> None:
    (r,) = parse_lines(
        [
            "3,9,5000000,-;Memory cgroup out of memory: Killed process 3 (caf\\xc3\\xa9) "
            "total-vm:1kB, anon-rss:1kB, file-rss:0kB"
        ]
    )
    assert r.comm == "café"


def test_page_allocation_failure_dump_is_not_an_oom_report() -> None:
    parser = OomParser()
    lines = [
        "[ 1.0] nginx: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP)",
        "[ 1.0] Mem-Info:",
        "[ 1.0] active_anon:10 inactive_anon:20 isolated_anon:0",
        "[ 1.0] 514440 pages RAM",
    ]
    for line in lines:
        assert parser.feed(line) == []
    assert not parser.busy
    (r,) = parser.feed(
        "[ 9.0] Memory cgroup out of memory: Killed process 5 (x) total-vm:1kB, anon-rss:1kB"
    )
    assert r.mem_info == {}
    assert r.global_ is False


def test_2_6_report_without_invoker_and_capital_m_kill() -> None:
    [r] = parse_lines(["oom-killer: gfp_mask=0xd0", "Out of Memory: Killed process 17664 (bash)."])
    assert (r.pid, r.comm, r.invoker, r.gfp_mask, r.global_) == (17664, "bash", None, "0xd0", True)


def test_2_6_23_kill_step_says_or_a_child() -> None:
    [r] = parse_lines(
        [
            "Out of memory: kill process 3170 (df_inode) score 2231 or a child",
            "Killed process 3171 (df_worker)",
        ]
    )
    assert (r.pid, r.global_) == (3171, True)


def test_a_kill_line_wrapped_by_a_console_is_joined() -> None:
    lines = [
        "[ 1.5] Killed process 2298 (dnsmasq) total-vm:30872kB, anon-rss:27440kB, file-rss:84kB, s",
        "hmem-rss:0kB, UID:0 pgtables:12kB oom_score_adj:-17        ",
        "[ 1.6] oom_reaper: reaped process 2298 (dnsmasq), now anon-rss:0kB",
    ]
    [r] = parse_lines(lines)
    assert (r.shmem_rss_kb, r.pgtables_kb, r.oom_score_adj) == (0, 12, -17)


def test_wrapped_invoked_and_summary_lines_are_joined() -> None:
    lines = [
        "[ 9.0] odhcpd invoked oom-killer: gfp_mask=0x6000c0(GFP_KERNEL), nodemask=(null), order",
        "=2, oom_score_adj=-5",
        "[ 9.1] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,globa",
        "l_oom,task_memcg=/,task=uhttpd,pid=1603,u",
        "id=0",
    ]
    [r] = parse_lines(lines)
    assert (r.order, r.invoker_oom_score_adj) == (2, -5)
    assert (r.pid, r.uid, r.task_memcg, r.global_) == (1603, 0, "/", True)


def test_a_cut_kill_line_followed_by_a_line_of_its_own_is_not_joined() -> None:
    parser = OomParser()
    assert parser.feed("Killed process 5 (x) total-vm:10kB, anon-rss:4") == []
    assert parser.holding
    [r] = parser.feed("oom_reaper: reaped process 5 (x), now anon-rss:0kB")
    assert (r.pid, r.anon_rss_kb, parser.holding) == (5, None, False)
    assert parser.feed("Killed process 6 (y) total-vm:10kB, anon-rss:4") == []
    [r] = parser.flush()
    assert r.pid == 6
