"""The SwanLab dashboard serves the course's runs on localhost, checked in headless Chromium."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from browser import render_page, start_dashboard  # scripts/ (tests/conftest.py puts it on the path)

from audiocls_utils.engine.commands.dashboard import find_log_dir, free_port
from audiocls_utils.engine.experiment.tracking import Tracker
from audiocls_utils.errors import AudioclsError


def _logged_runs(log_dir: Path) -> None:
    """Record two small runs the way training does."""
    for name, losses in (("baseline", [2.0, 1.5, 1.1]), ("advanced", [2.2, 1.4, 0.9])):
        tracker = Tracker(project="audiocls", experiment=name, mode="local", log_dir=log_dir,
                          config={"recipe": name})
        for step, loss in enumerate(losses, start=1):
            tracker.log({"train/loss": loss, "val/acc": 1 / loss}, step=step)
        tracker.finish()


def test_find_log_dir_picks_a_swanlog_folder_or_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(AudioclsError, match="make demo"):
        find_log_dir(tmp_path)
    (tmp_path / "demo" / "swanlog").mkdir(parents=True)
    assert find_log_dir(tmp_path) == tmp_path / "demo" / "swanlog"


@pytest.mark.slow
@pytest.mark.browser
def test_dashboard_lists_runs_and_charts_in_a_browser(tmp_path: Path) -> None:
    _logged_runs(tmp_path / "swanlog")
    port = free_port()
    server = start_dashboard(tmp_path / "swanlog", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/project", timeout=10) as r:
            project = json.load(r)["data"]
        assert sorted(e["name"] for e in project["experiments"]) == ["advanced", "baseline"]
        if not (shutil.which("chromium") or shutil.which("chromium-browser")):
            pytest.skip("Chromium not installed (scripts/ensure-chromium.sh installs it in CI)")
        screenshot = tmp_path / "dashboard.png"
        dom = render_page(f"http://127.0.0.1:{port}/", screenshot=screenshot)
        assert "baseline" in dom and "advanced" in dom
        assert "train/loss" in dom and "val/acc" in dom
        assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_taken_port_is_refused_so_the_printed_address_is_the_served_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from audiocls_utils.engine.commands.cli import main

    (tmp_path / "swanlog").mkdir()
    with socket.socket() as other:  # another dashboard already listens there
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        status = main(["dashboard", "--log-dir", str(tmp_path / "swanlog"), "--port", str(port)])
    out, err = capsys.readouterr()
    assert status == 2 and "open http" not in out and err.count("\n") == 1
    assert f"--port {port} on 127.0.0.1 is taken (another dashboard?): choose another" in err
