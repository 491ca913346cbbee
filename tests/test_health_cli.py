"""``sentinel health``: finds the daemon's endpoint through the address file beside the
state and answers 0 (healthy) or 1 (unhealthy, or nothing answers); 2 when there is
nothing to ask. The endpoint is sentinel's own HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.runtime.http import HealthServer, Metrics


class Toggle:
    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> bool:
        return self.ok


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, Toggle]]:
    toggle = Toggle()
    server = HealthServer("127.0.0.1:0", Metrics(), healthy=toggle, ready=toggle)
    server.start()
    yield server, toggle
    server.stop()


def test_health_reads_the_address_beside_the_state(
    tmp_path: Path, served: tuple[HealthServer, Toggle], capsys: pytest.CaptureFixture[str]
) -> None:
    server, toggle = served
    state = tmp_path / "state.db"
    Path(f"{state}.address").write_text(server.address + "\n")
    assert main(["health", "--state", str(state)]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    toggle.ok = False
    assert main(["health", "--state", str(state)]) == 1
    assert "503 unhealthy" in capsys.readouterr().err


def test_health_with_nothing_listening_is_unhealthy(
    tmp_path: Path, served: tuple[HealthServer, Toggle], capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = served
    address = server.address
    server.stop()
    state = tmp_path / "state.db"
    Path(f"{state}.address").write_text(address)
    assert main(["health", "--state", str(state)]) == 1
    err = capsys.readouterr().err
    assert "no answer" in err
    assert "Traceback" not in err


def test_health_without_an_endpoint_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"settings: {{listen: null, state: {tmp_path / 'state.db'}}}\n")
    assert main(["health", "-c", str(policy)]) == 2
    assert "settings.listen is null" in capsys.readouterr().err
