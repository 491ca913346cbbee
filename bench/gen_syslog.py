# ruff: noqa: E501  (log line templates read best unbroken)
"""A large, realistic syslog with sparse OOM reports, written as a stream.

Ordinary lines come from a dozen daemons and the kernel (sshd, systemd, cron, dockerd,
containerd, kubelet, NetworkManager, postfix, UFW, ext4, e1000e ...) on several hosts.
Every ``report_every`` bytes on average, one of the real OOM reports in
``tests/data/oom-logs`` is re-stamped into syslog format on one host (its kernel lines
only; the kernel's own ``[seconds]`` stamp is added) and written among them, with lines
of the other hosts in between. The expected kill count is what an :class:`OomParser`
yields for the report lines alone: ordinary lines never belong to a report (the tests
check that).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from sentinel.kernel.lines import LineDecoder
from sentinel.kernel.oom import OomParser

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "oom-logs"
VERSION = 2
HOSTS = ("web-01", "web-02", "db-01", "k8s-node-1", "k8s-node-2", "ci-runner-3")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Params:
    size: int
    seed: int = 1
    report_every: int = 2_000_000
    version: int = VERSION


@dataclass(frozen=True)
class Stats:
    bytes: int
    lines: int
    reports: int
    kills: int
    killed_process_lines: int


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _ip(rng: random.Random) -> str:
    return f"{rng.choice((10, 172, 192))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


Message = tuple[str, str]  # (tag with optional [pid], message)


def _messages(rng: random.Random) -> Iterator[Message]:
    """An endless stream of ordinary (tag, message) pairs."""
    users = ("deploy", "root", "ubuntu", "git", "backup", "ansible")
    units = (
        "logrotate.service",
        "apt-daily.service",
        "fstrim.service",
        "certbot.service",
        "man-db.service",
        "sysstat-collect.service",
        "docker-prune.service",
        "node-exporter.service",
    )
    images = ("nginx:1.25", "redis:7", "postgres:16", "grafana/grafana:10.2.0", "app/api:4.1.7")
    words = ("GET", "POST", "PUT", "DELETE")

    def sshd() -> Message:
        pid = rng.randrange(1000, 60000)
        user = rng.choice(users)
        kind = rng.randrange(6)
        if kind == 0:
            return (
                f"sshd[{pid}]",
                f"Accepted publickey for {user} from {_ip(rng)} port {rng.randrange(1024, 65535)}"
                f" ssh2: ED25519 SHA256:{_hex(rng, 43)}",
            )
        if kind == 1:
            return (
                f"sshd[{pid}]",
                f"pam_unix(sshd:session): session opened for user {user}(uid={rng.randrange(2000)})"
                f" by (uid=0)",
            )
        if kind == 2:
            return (
                f"sshd[{pid}]",
                f"Invalid user admin{rng.randrange(100)} from {_ip(rng)} port"
                f" {rng.randrange(1024, 65535)}",
            )
        if kind == 3:
            return (f"sshd[{pid}]", f"Disconnected from user {user} {_ip(rng)} port 22")
        if kind == 4:
            return (
                f"sshd[{pid}]",
                f"Connection closed by authenticating user root {_ip(rng)} port"
                f" {rng.randrange(1024, 65535)} [preauth]",
            )
        return (
            f"sshd[{pid}]",
            f"Received disconnect from {_ip(rng)} port 22:11: disconnected by user",
        )

    def systemd() -> Message:
        unit = rng.choice(units)
        kind = rng.randrange(8)
        if kind == 0:
            return ("systemd[1]", f"Starting {unit[:-8]} - periodic job...")
        if kind == 1:
            return ("systemd[1]", f"{unit}: Deactivated successfully.")
        if kind == 2:
            return ("systemd[1]", f"Finished {unit[:-8]} - periodic job.")
        if kind == 3:
            return (
                "systemd[1]",
                f"{unit}: Consumed {rng.randrange(1, 900)}ms CPU time, {rng.randrange(1, 90)}.{rng.randrange(10)}M"
                " memory peak.",
            )
        if kind == 4:
            return (
                "systemd[1]",
                f"Started session-{rng.randrange(1, 99999)}.scope - Session of User.",
            )
        if kind == 5:
            # "Kill" in an ordinary line: the scanner feeds it and finds nothing.
            return (
                "systemd[1]",
                f"session-{rng.randrange(1, 99999)}.scope: Killing process {rng.randrange(1000, 60000)}"
                " (sshd) with signal SIGKILL.",
            )
        if kind == 6:
            return (
                f"systemd-logind[{rng.randrange(500, 900)}]",
                f"New session {rng.randrange(1, 99999)} of user {rng.choice(users)}.",
            )
        return (
            "systemd[1]",
            f"{unit}: Scheduled restart job, restart counter is at {rng.randrange(1, 9)}. Will retry.",
        )

    def cron() -> Message:
        pid = rng.randrange(1000, 60000)
        if rng.randrange(2):
            return (
                f"CRON[{pid}]",
                f"({rng.choice(users)}) CMD (   cd / && run-parts --report /etc/cron.hourly)",
            )
        return (f"CRON[{pid}]", "pam_unix(cron:session): session closed for user root")

    def dockerd() -> Message:
        cid = _hex(rng, 64)
        kind = rng.randrange(4)
        if kind == 0:
            return (
                f"dockerd[{rng.randrange(700, 1200)}]",
                f'time="2024-03-0{rng.randrange(1, 9)}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:'
                f'{rng.randrange(60):02d}.{rng.randrange(10**9):09d}Z" level=info msg="ignoring event"'
                f" container={cid} module=libcontainerd namespace=moby topic=/tasks/delete"
                ' type="*events.TaskDelete"',
            )
        if kind == 1:
            return (
                f"containerd[{rng.randrange(600, 900)}]",
                f'time="2024-03-01T10:00:00.{rng.randrange(10**9):09d}Z" level=info msg="loading plugin'
                f' \\"io.containerd.event.v1.publisher\\"..." runtime=io.containerd.runc.v2'
                f" type=io.containerd.event.v1",
            )
        if kind == 2:
            return (
                f"dockerd[{rng.randrange(700, 1200)}]",
                f'time="2024-03-01T10:00:00Z" level=warning msg="Health check for container {cid[:12]}'
                f' error: timed out starting health check for image {rng.choice(images)}"',
            )
        return (
            f"kubelet[{rng.randrange(1000, 3000)}]",
            f"I0301 10:00:00.{rng.randrange(10**6):06d} {rng.randrange(1000, 3000)} kubelet.go:2458]"
            f' "SyncLoop (PLEG): event for pod" pod="default/api-{_hex(rng, 10)}-{_hex(rng, 5)}"'
            f' event={{"ID":"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}","Type":"ContainerStarted"}}',
        )

    def kernel() -> Message:
        ts = f"[{rng.randrange(10, 9_999_999):7d}.{rng.randrange(10**6):06d}]"
        kind = rng.randrange(7)
        if kind == 0:
            return (
                "kernel",
                f"{ts} [UFW BLOCK] IN=eth0 OUT= MAC={_hex(rng, 12)} SRC={_ip(rng)} DST={_ip(rng)} LEN=40"
                f" TOS=0x00 PREC=0x00 TTL=244 ID={rng.randrange(65536)} PROTO=TCP"
                f" SPT={rng.randrange(65536)} DPT={rng.randrange(65536)} WINDOW=1024 RES=0x00 SYN URGP=0",
            )
        if kind == 1:
            return (
                "kernel",
                f"{ts} EXT4-fs (nvme0n1p{rng.randrange(1, 4)}): mounted filesystem"
                f" {_hex(rng, 8)}-{_hex(rng, 4)} r/w with ordered data mode. Quota mode: none.",
            )
        if kind == 2:
            return (
                "kernel",
                f"{ts} e1000e: eth{rng.randrange(2)} NIC Link is Up 1000 Mbps Full Duplex",
            )
        if kind == 3:
            veth = _hex(rng, 7)
            return (
                "kernel",
                f"{ts} docker0: port {rng.randrange(1, 9)}(veth{veth}) entered forwarding state",
            )
        if kind == 4:
            return (
                "kernel",
                f"{ts} audit: type=1400 audit({rng.randrange(10**9)}.{rng.randrange(1000)}:{rng.randrange(999)}):"
                f' apparmor="DENIED" operation="open" profile="snap.lxd" name="/proc/{rng.randrange(9999)}/mounts"'
                f' pid={rng.randrange(9999)} comm="lxd" requested_mask="r" denied_mask="r" fsuid=0 ouid=0',
            )
        if kind == 5:
            return (
                "kernel",
                f"{ts} IPv6: ADDRCONF(NETDEV_CHANGE): veth{_hex(rng, 7)}: link becomes ready",
            )
        return ("kernel", f"{ts} nf_conntrack: nf_conntrack: table full, dropping packet")

    def other() -> Message:
        kind = rng.randrange(5)
        if kind == 0:
            return (
                f"NetworkManager[{rng.randrange(600, 900)}]",
                f"<info>  [{rng.randrange(10**9)}.{rng.randrange(10**4)}] dhcp4 (eth0): state changed new lease,"
                f" address={_ip(rng)}",
            )
        if kind == 1:
            return (
                f"postfix/smtpd[{rng.randrange(1000, 60000)}]",
                f"connect from unknown[{_ip(rng)}]",
            )
        if kind == 2:
            return (
                f"nginx[{rng.randrange(1000, 9000)}]",
                f'{_ip(rng)} - - "{rng.choice(words)} /api/v1/items/{rng.randrange(10**6)} HTTP/1.1"'
                f' {rng.choice((200, 200, 200, 304, 404, 502))} {rng.randrange(20000)} "-" "curl/8.5.0"',
            )
        if kind == 3:
            return ("rsyslogd", "-- MARK --")
        return (
            f"snapd[{rng.randrange(500, 900)}]",
            f'storehelpers.go:{rng.randrange(900)}: cannot refresh snap "core22": snap has no updates available',
        )

    makers: list[Callable[[], Message]] = [sshd] * 3 + [systemd] * 3 + [cron] + [dockerd] * 3
    makers += [kernel] * 2 + [other] * 3
    while True:
        yield rng.choice(makers)()


def _templates() -> list[list[str]]:
    """The kernel message lines of each sample, decoded from whatever format it is in."""
    out: list[list[str]] = []
    for path in sorted(SAMPLES.glob("*.log")):
        decoder = LineDecoder()
        texts: list[str] = []
        for raw in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            for line in decoder.decode(raw):
                if line.kernel:
                    texts.append(line.text)
        if texts:
            out.append(texts)
    return out


class _Clock:
    """Syslog stamps that advance a little with every line."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._cached = -1
        self._stamp = ""

    def tick(self, rng: random.Random) -> str:
        self.seconds += rng.random() * 0.05
        whole = int(self.seconds)
        if whole != self._cached:
            self._cached = whole
            day, rest = divmod(whole, 86400)
            month, mday = divmod(day, 28)
            self._stamp = (
                f"{MONTHS[(2 + month) % 12]} {mday + 1:2d}"
                f" {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
            )
        return self._stamp


def generate(path: Path, params: Params) -> Stats:
    """Write the log to ``path`` (streaming: a few MB in memory at most)."""
    rng = random.Random(params.seed)
    messages = _messages(rng)
    templates = _templates()
    clock = _Clock()
    uptime = {host: 1000.0 + 1000 * i for i, host in enumerate(HOSTS)}
    oracle = OomParser()
    kills = reports = lines = killed_lines = 0
    written = 0
    next_report = rng.randrange(params.report_every // 4, params.report_every * 7 // 4)
    buf: list[str] = []
    buffered = 0
    with path.open("wb") as f:

        def put(line: str) -> None:
            nonlocal buffered, written, lines
            buf.append(line)
            buffered += len(line) + 1
            lines += 1
            if buffered >= 1 << 20:
                data = ("\n".join(buf) + "\n").encode()
                f.write(data)
                written += len(data)
                buf.clear()
                buffered = 0

        def noise() -> None:
            tag, msg = next(messages)
            put(f"{clock.tick(rng)} {rng.choice(HOSTS)} {tag}: {msg}")

        while written + buffered < params.size:
            if written + buffered < next_report:
                noise()
                continue
            next_report += rng.randrange(params.report_every // 4, params.report_every * 7 // 4)
            reports += 1
            host = rng.choice(HOSTS)
            others = [h for h in HOSTS if h != host]
            uptime[host] += rng.random() * 50_000
            for text in rng.choice(templates):
                uptime[host] += rng.random() * 0.0001
                line = f"{clock.tick(rng)} {host} kernel: [{uptime[host]:12.6f}] {text}"
                put(line)
                kills += len(oracle.feed(line))
                killed_lines += "Killed process" in line
                while rng.random() < 0.1:  # other hosts keep logging meanwhile
                    tag, msg = next(messages)
                    put(f"{clock.tick(rng)} {rng.choice(others)} {tag}: {msg}")
        data = "".join(line + "\n" for line in buf).encode()
        f.write(data)
        written += len(data)
    kills += len(oracle.flush())
    return Stats(written, lines, reports, kills, killed_lines)


def ensure(path: Path, params: Params) -> Stats:
    """The log at ``path`` for ``params``: reused when a previous run made the same one."""
    meta = path.with_suffix(path.suffix + ".json")
    if path.exists() and meta.exists():
        saved = json.loads(meta.read_text())
        if saved.get("params") == asdict(params) and path.stat().st_size == saved["stats"]["bytes"]:
            return Stats(**saved["stats"])
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = generate(path, params)
    meta.write_text(json.dumps({"params": asdict(params), "stats": asdict(stats)}, indent=1))
    return stats
