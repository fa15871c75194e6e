"""`audiocls app`: the Gradio page, started for real on localhost and asked through Gradio's client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, tone, untrained_bundle, write_wav

from audiocls_utils.engine.commands.dashboard import free_port
from audiocls_utils.predict import Predictor

gradio_client = pytest.importorskip("gradio_client", reason="the app extra (gradio) is not installed")
pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")


def _model(folder: Path, threshold: float | None = 0.0) -> Path:
    """Save the untrained 3-class test model with `threshold` as its reject threshold."""
    bundle = untrained_bundle()
    bundle["reject_threshold"] = threshold
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(bundle, folder / "model.pt")
    return folder / "model.pt"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Start `audiocls app` in a subprocess on a free localhost port; yield its URL and model."""
    folder = tmp_path_factory.mktemp("app")
    model = _model(folder / "run")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(folder / "app.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "audiocls_utils", "app", "--model",
                                str(folder / "run"), "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            import urllib.request

            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                pytest.fail(f"audiocls app did not start: {(folder / 'app.log').read_text()[-2000:]}")
            time.sleep(0.5)
    try:
        yield url, model
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ask(url: str, clip: Path) -> tuple[str, dict, str | None, dict]:
    """Send one clip through Gradio's own client; return the page's four outputs."""
    client = gradio_client.Client(url, verbose=False)
    return client.predict(gradio_client.handle_file(str(clip)), api_name="/classify")


def test_the_page_answers_as_predict_does_for_the_same_file(served: tuple[str, Path],
                                                            tmp_path: Path) -> None:
    url, model = served
    clip = write_wav(tmp_path / "clip.wav", tone(440.0, 1.5, 8000), 8000)
    answer, label, picture, details = _ask(url, clip)
    expected = Predictor.from_file(model).predict([clip], top_k=3)[0]
    assert details["label"] == expected["label"] == expected["top"][0]["label"]  # threshold 0
    assert details["reason"] is None and answer.startswith(f"## {expected['label']}")
    for row in expected["top"]:
        assert details["probabilities"][row["label"]] == pytest.approx(row["probability"], abs=1e-4)
    assert label["label"] == expected["label"]
    assert {c["label"] for c in label["confidences"]} == {"a", "b", "c"}
    assert picture and Path(picture).stat().st_size > 10_000  # the log-Mel, strip and Grad-CAM


@pytest.mark.parametrize(("name", "samples", "says"), [
    ("quiet.wav", tone(440.0, 1.5, 8000, amplitude=1e-4), "None of these"),  # about -83 dBFS
    ("zeros.wav", np.zeros(12000, dtype=np.float32), "None of these"),  # digital silence
])
def test_silence_is_none_of_these(served: tuple[str, Path], tmp_path: Path, name: str,
                                  samples: np.ndarray, says: str) -> None:
    answer, label, _, details = _ask(served[0], write_wav(tmp_path / name, samples, 8000))
    assert details["label"] == "unknown" and details["reason"] == "silence"
    assert answer.startswith("## None of these") and "silent" in answer


def test_bad_uploads_get_one_clear_message_not_a_traceback(served: tuple[str, Path],
                                                           tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    answer, label, picture, details = _ask(served[0], text)
    assert answer.startswith("This file cannot be read as audio") and "Traceback" not in answer
    assert not label and picture is None and details["message"] == answer
    # Two hours at 1 kHz (14 MB): refused from its header, before anything is decoded.
    long = write_wav(tmp_path / "long.wav", np.zeros(2 * 3600 * 1000, dtype=np.float32), 1000)
    answer, *_ = _ask(served[0], long)
    assert answer.startswith("This clip is 2 h 0 min long; the page takes clips up to 10 min")


def test_an_unsure_model_answers_none_of_these_with_its_best_guess(tmp_path: Path) -> None:
    from audiocls_utils.engine.commands.app import analyse, answer_text

    predictor = Predictor.from_file(_model(tmp_path, threshold=0.99))
    result = analyse(predictor, write_wav(tmp_path / "clip.wav", tone(440.0, 1.5, 8000), 8000))
    assert result["label"] == "unknown" and result["reason"] == "low confidence"
    assert result["probability"] < 0.99 and result["top"] in predictor.class_names
    assert answer_text(result, 0.99).startswith(
        f"## None of these  \nthe model is unsure: its best guess, {result['top']} at "
        f"{result['probability']:.2f}, is below the threshold 0.99")
    # The strip has one row per window; Grad-CAM covers one window of the log-Mel.
    assert result["windows"].shape == (len(result["starts"]), 3)
    assert result["cam"].shape == (result["log_mel"].shape[0], predictor.num_frames)


@pytest.mark.browser
def test_a_browser_uploads_a_clip_and_the_page_shows_the_answer(served: tuple[str, Path],
                                                                 tmp_path: Path) -> None:
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("Chromium not installed (scripts/ensure-chromium.sh installs it in CI)")
    from readme_figures import screenshot_app  # scripts/, on the path through conftest

    clip = write_wav(tmp_path / "clip.wav", tone(440.0, 1.5, 8000), 8000)
    screenshot_app(served[0], clip, tmp_path / "app.png")  # waits until the answer is drawn
    assert (tmp_path / "app.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "app.png").stat().st_size > 50_000


def test_a_taken_port_is_one_line_before_the_model_loads(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from audiocls_utils.engine.commands.cli import main

    model = _model(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--model", str(model), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--port {port} on 127.0.0.1 is taken (another app?): choose another, e.g. --port " in err
