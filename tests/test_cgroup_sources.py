"""Cgroup memory sources on the checked-in v1 (hybrid) and v2 trees, and the pure parsers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sentinel.errors import SourceError
from sentinel.sources._fd import fields
from sentinel.sources.cgroup import (
    CgroupFS,
    CgroupGoneError,
    CgroupSet,
    ancestors,
    effective_limit,
    parse_limit,
    parse_memory_events,
    parse_memory_stat,
    v1_sample,
    v2_sample,
)

DATA = Path(__file__).parent / "data"
V1 = DATA / "cgroup-v1"
V2 = DATA / "cgroup-v2"
MIB = 1 << 20

DOCKER_V1 = "/docker/4c01db0b339c4b6e6d2f1a0d3c8e7f29b5a6c7d8e9f0a1b2c3d4e5f60718293a"
POD_V1 = "/kubepods/burstable/pod6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
NOLIMIT_V1 = f"{POD_V1}/9b2e6f0c3a5d47e1b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5"
KILLED_V1 = f"{POD_V1}/e3a1f9c27b5d4e6fa8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f"
SCOPE_V1 = (
    "/system.slice/docker-70d4b2a9e1c84f3b9a6d5c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a.scope"
)

DOCKER_V2 = (
    "/system.slice/docker-3e9a0c7f5b1d48e2a6c4b8d0f2e4a6c8b0d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0.scope"
)
POD_V2 = (
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod2c4e6a8b_0d1f_4a3c_9e5b_7d6f8a0b2c4e.slice"
)
CRI_ID = "b7f3e1d9c5a74b2e8f6d4c2a0e8f6d4c2b0a9e8f7d6c5b4a3f2e1d0c9b8a7f6e"
CRI_V2 = f"{POD_V2}/cri-containerd-{CRI_ID}.scope"


def clock() -> float:
    return 1234.5


# --- pure parsers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("536870912\n", 536870912),
        ("max\n", None),
        ("9223372036854771712\n", None),  # v1 unlimited, 4 KiB pages
        ("9223372036854710272\n", None),  # v1 unlimited, 64 KiB pages
        ("9223372036854775807\n", None),  # v1 unlimited before 3.19 (LLONG_MAX)
        (b"268435456\n", 268435456),
    ],
)
def test_parse_limit(text: str | bytes, expected: int | None) -> None:
    assert parse_limit(text) == expected


def test_parse_memory_stat_reads_every_key() -> None:
    stat = parse_memory_stat((V1 / "memory" / DOCKER_V1.strip("/") / "memory.stat").read_text())
    assert stat["total_rss"] == 69799936
    assert stat["total_inactive_file"] == 16777216
    assert stat["hierarchical_memory_limit"] == 512 * MIB
    assert len(stat) == len(
        (V1 / "memory" / DOCKER_V1.strip("/") / "memory.stat").read_text().splitlines()
    )


def test_parse_memory_stat_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a 'key value' line"):
        parse_memory_stat("anon 1\ngarbage\n")
    with pytest.raises(ValueError, match="invalid literal"):
        parse_memory_stat("anon x\n")


def test_parse_memory_events() -> None:
    text = (V2 / CRI_V2.strip("/") / "memory.events").read_text()
    assert parse_memory_events(text) == {
        "low": 0,
        "high": 0,
        "max": 482,
        "oom": 3,
        "oom_kill": 2,
        "oom_group_kill": 0,
    }


def test_effective_limit_tightest_wins_and_innermost_breaks_ties() -> None:
    assert effective_limit([("/a/b", None), ("/a", 100)]) == (100, "/a")
    assert effective_limit([("/a/b", 300), ("/a", 100), ("/", None)]) == (100, "/a")
    assert effective_limit([("/a/b", 100), ("/a", 100)]) == (100, "/a/b")
    assert effective_limit([("/a/b", None), ("/a", None)]) == (None, None)
    assert effective_limit([]) == (None, None)


def test_ancestors() -> None:
    assert ancestors("/a/b/c") == ["/a/b", "/a"]
    assert ancestors("/a") == []
    assert ancestors("/") == []


def test_v1_sample_working_set_is_floored_at_zero() -> None:
    sample = v1_sample(
        1.0,
        "/x",
        usage=b"100\n",
        limit=b"9223372036854771712\n",
        stat=b"total_rss 50\ntotal_cache 60\ntotal_inactive_file 160\n",
        failcnt=b"0\n",
        oom_control=b"oom_kill_disable 0\nunder_oom 0\n",
    )
    assert sample.working_set_bytes == 0
    assert sample.limit_bytes is None
    assert sample.oom_kill is None  # kernels before 4.13 do not count kills


def test_v2_sample_needs_inactive_file() -> None:
    with pytest.raises(ValueError, match="inactive_file"):
        v2_sample(1.0, "/x", current=b"1\n", max_=b"max\n", stat=b"anon 1\n", events=b"")


# --- v1 (hybrid) fixture tree ---------------------------------------------------------


def test_v1_layout_is_detected_as_hybrid() -> None:
    fs = CgroupFS(V1)
    assert fs.version == "v1"
    assert fs.hybrid
    assert fs.memory_root == V1 / "memory"
    assert fs.unified_root == V1 / "unified"


def test_v1_docker_container_own_limit_binds() -> None:
    sample = CgroupFS(V1, clock=clock).sample(DOCKER_V1)
    assert sample.t == 1234.5
    assert sample.cgroup == DOCKER_V1
    assert sample.usage_bytes == 87736320
    assert sample.working_set_bytes == 87736320 - 16777216
    assert sample.anon_bytes == 69799936
    assert sample.cache_bytes == 16777216
    assert sample.limit_bytes == 512 * MIB
    assert sample.effective_limit_bytes == 512 * MIB
    assert sample.effective_limit_cgroup == DOCKER_V1
    assert sample.limit_hits == 0
    assert sample.oom is None
    assert sample.oom_kill == 0
    assert sample.pressure is None  # no cgroup of that name in the unified hierarchy
    assert sample.headroom_bytes == 512 * MIB - 87736320


def test_v1_pod_limit_binds_a_container_without_one() -> None:
    sample = CgroupFS(V1).sample(NOLIMIT_V1)
    assert sample.limit_bytes is None
    assert sample.effective_limit_bytes == 128 * MIB
    assert sample.effective_limit_cgroup == POD_V1


def test_v1_killed_container_counts() -> None:
    sample = CgroupFS(V1).sample(KILLED_V1)
    assert sample.limit_bytes == 64 * MIB
    assert sample.effective_limit_bytes == 64 * MIB
    assert sample.limit_hits == 37
    assert sample.oom_kill == 1


def test_v1_hybrid_pressure_comes_from_the_unified_cgroup_of_the_same_name() -> None:
    sample = CgroupFS(V1).sample(SCOPE_V1)
    assert sample.pressure is not None
    assert sample.pressure.some_avg10 == 1.53
    assert sample.pressure.full_total_us == 2290112


def test_v1_root_is_unlimited() -> None:
    fs = CgroupFS(V1)
    sample = fs.sample("/")
    assert sample.limit_bytes is None
    assert sample.effective_limit_bytes is None
    assert sample.usage_bytes == 1051848704
    assert sample.working_set_bytes == 1051848704 - 478699520
    assert fs.effective_limit("/") == (None, None)


def test_v1_effective_limit_without_a_handle() -> None:
    fs = CgroupFS(V1)
    assert fs.effective_limit(NOLIMIT_V1) == (128 * MIB, POD_V1)
    assert fs.limit(DOCKER_V1) == 512 * MIB
    assert fs.limit("/docker") is None


def test_v1_the_memory_mount_itself_can_be_the_root() -> None:
    fs = CgroupFS(V1 / "memory")
    assert fs.version == "v1"
    assert not fs.hybrid
    assert fs.sample(DOCKER_V1).usage_bytes == 87736320


def test_walk_lists_parents_before_children() -> None:
    paths = list(CgroupFS(V1).walk())
    assert paths[0] == "/"
    assert set(paths) >= {"/docker", DOCKER_V1, POD_V1, NOLIMIT_V1, KILLED_V1, SCOPE_V1}
    assert paths.index(POD_V1) < paths.index(NOLIMIT_V1)
    assert list(CgroupFS(V1).walk("/docker")) == ["/docker", DOCKER_V1]


def test_handle_samples_again_and_follows_a_limit_change(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    shutil.copytree(V1, root)
    ticks = iter([1.0, 2.0])
    fs = CgroupFS(root, clock=lambda: next(ticks))
    with fs.open(NOLIMIT_V1) as handle:
        first = handle.sample()
        (root / "memory" / POD_V1.strip("/") / "memory.limit_in_bytes").write_text(
            "9223372036854771712\n"
        )
        second = handle.sample()
    assert (first.t, second.t) == (1.0, 2.0)
    assert first.effective_limit_cgroup == POD_V1
    assert second.effective_limit_bytes is None
    assert handle.closed
    with pytest.raises(ValueError, match="closed"):
        handle.sample()


def test_a_missing_cgroup_is_gone() -> None:
    with pytest.raises(CgroupGoneError, match="no cgroup file"):
        CgroupFS(V1).open("/docker/nope")


def test_unreadable_stat_names_the_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    shutil.copytree(V1, root)
    (root / "memory" / DOCKER_V1.strip("/") / "memory.stat").write_text("total_rss 1\n")
    with pytest.raises(SourceError, match="lacks 'total_inactive_file'"):
        CgroupFS(root).sample(DOCKER_V1)


def test_no_hierarchy(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no memory cgroup hierarchy"):
        CgroupFS(tmp_path)


# --- v2 fixture tree ------------------------------------------------------------------


def test_v2_layout() -> None:
    fs = CgroupFS(V2)
    assert fs.version == "v2"
    assert not fs.hybrid
    assert fs.memory_root == V2
    assert fs.limit_file == "memory.max"


def test_v2_without_memory_controller(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io pids\n")
    with pytest.raises(SourceError, match="no memory controller"):
        CgroupFS(tmp_path)


def test_v2_docker_container() -> None:
    sample = CgroupFS(V2, clock=clock).sample(DOCKER_V2)
    assert sample.usage_bytes == 354 * MIB
    assert sample.working_set_bytes == (354 - 40) * MIB
    assert sample.anon_bytes == 296 * MIB
    assert sample.cache_bytes == 50 * MIB
    assert sample.limit_bytes == 512 * MIB
    assert (sample.effective_limit_bytes, sample.effective_limit_cgroup) == (512 * MIB, DOCKER_V2)
    assert (sample.limit_hits, sample.oom, sample.oom_kill) == (12, 0, 0)
    assert sample.pressure is not None
    assert sample.pressure.some_avg60 == 0.11


def test_v2_pod_limit_binds_and_kills_are_counted() -> None:
    sample = CgroupFS(V2).sample(CRI_V2)
    assert sample.limit_bytes is None
    assert sample.effective_limit_bytes == 256 * MIB
    assert sample.effective_limit_cgroup == POD_V2
    assert (sample.limit_hits, sample.oom, sample.oom_kill) == (482, 3, 2)
    assert sample.pressure is not None
    assert sample.pressure.full_avg10 == 12.40
    assert sample.working_set_bytes == (245 - 2) * MIB


def test_v2_kubepods_allocatable_binds_the_qos_slice() -> None:
    fs = CgroupFS(V2)
    sample = fs.sample("/kubepods.slice/kubepods-burstable.slice")
    assert sample.effective_limit_bytes == 23012 * MIB
    assert sample.effective_limit_cgroup == "/kubepods.slice"


def test_v2_root_has_no_usage_file() -> None:
    with pytest.raises(SourceError, match="sample the host"):
        CgroupFS(V2).open("/")


def test_v2_without_psi(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    shutil.copytree(V2, root)
    (root / DOCKER_V2.strip("/") / "memory.pressure").unlink()
    assert CgroupFS(root).sample(DOCKER_V2).pressure is None


# --- key lookup and sets of cgroups ---------------------------------------------------


def test_fields_in_order_out_of_order_first_and_absent() -> None:
    data = b"anon 1\nfile 2\nfile_mapped 3\ninactive_file 4\n"
    assert fields(data, (b"anon ", b"file ", b"inactive_file ")) == [1, 2, 4]
    assert fields(data, (b"inactive_file ", b"anon ", b"file_mapped ")) == [4, 1, 3]
    assert fields(data, (b"shmem ", b"file ")) == [None, 2]
    assert fields(b"oom_kill 5", (b"oom_kill ",)) == [5]  # no trailing newline
    assert fields(b"xoom_kill 5\noom_kill 6\n", (b"oom_kill ",)) == [6]


def test_set_samples_all_and_shares_parents() -> None:
    fs = CgroupFS(V1, clock=clock)
    with CgroupSet(fs) as watched:
        for cgroup in (NOLIMIT_V1, KILLED_V1, DOCKER_V1, NOLIMIT_V1):
            watched.add(cgroup)
        assert len(watched) == 3
        assert NOLIMIT_V1 in watched
        samples, gone = watched.sample()
        assert gone == []
        by_path = {s.cgroup: s for s in samples}
        assert by_path[NOLIMIT_V1] == fs.sample(NOLIMIT_V1)
        assert by_path[KILLED_V1].oom_kill == 1
        assert by_path[DOCKER_V1].effective_limit_cgroup == DOCKER_V1
        watched.discard(KILLED_V1)
        watched.discard("/not/watched")
        assert len(watched) == 2
    assert len(watched) == 0


def test_set_add_of_a_missing_cgroup_changes_nothing() -> None:
    with CgroupSet(CgroupFS(V1)) as watched:
        watched.add(NOLIMIT_V1)
        with pytest.raises(CgroupGoneError):
            watched.add(f"{POD_V1}/nope")
        assert len(watched) == 1
        samples, gone = watched.sample()
        assert ([s.cgroup for s in samples], gone) == ([NOLIMIT_V1], [])
