"""`audiocls app`: a Gradio page that classifies one uploaded or recorded clip with a saved model.

It shows the answer ("none of these" when the model abstains: silence, or a top probability
below the threshold saved with the model), the class probabilities, the clip's log-Mel, the
probabilities of each window along the clip, and the Grad-CAM map of the top class on the
window that voted for it most. Gradio is an optional extra (`pip install "audiocls_utils[app]"`),
imported only when the page is built; `analyse` needs only the core, and never training code.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...abstain import UNKNOWN
from ...audio import content_problem
from ...data import SegmentDataset, decode_problem
from ...errors import AudioclsError
from ...explain import grad_cam
from ...features import too_short_to_frame
from ...predict import KEEP_SECONDS, Predictor

MAX_SECONDS = KEEP_SECONDS  # longer uploads are refused: `audiocls predict` streams any length
INSTALL = ('`audiocls app` needs Gradio, an optional extra: pip install "audiocls_utils[app]" '
           '(from a clone: pip install -e ".[app]"), or pip install gradio')
CMAP = "magma"  # plots.CMAP, the course's spectrogram colormap (plots itself imports train)
REASONS = {"silence": "the clip is silent", "low confidence": "the model is unsure"}


def import_gradio():  # noqa: ANN201 - the gradio module
    """Return the gradio module, or raise one line saying how to install it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a lab machine
    try:
        import gradio
    except ImportError:
        raise AudioclsError(INSTALL) from None
    return gradio


def _duration_problem(path: Path) -> str | None:
    """Say why a clip is too long for the page (from its header, before decoding), else None."""
    import soundfile

    try:
        seconds = soundfile.info(str(path)).duration
    except (RuntimeError, ValueError, OSError, soundfile.LibsndfileError):
        return None  # decoding says what is wrong with it
    if seconds <= MAX_SECONDS:
        return None
    return (f"This clip is {_clock(seconds)} long; the page takes clips up to "
            f"{_clock(MAX_SECONDS)}. Cut a part of it (e.g. `ffmpeg -i in.wav -t 60 part.wav`), or "
            f"label the whole file with `audiocls predict`, which streams any length.")


def _clock(seconds: float) -> str:
    """Return a duration as `2 h 0 min`, `10 min`, or `4.2 s`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@torch.no_grad()
def window_probabilities(predictor: Predictor, log_mel: torch.Tensor
                         ) -> tuple[torch.Tensor, list[int]]:
    """Return each evaluation window's probabilities (windows, classes) and its first frame."""
    windows = SegmentDataset([log_mel], [0], predictor.num_frames, train=False,
                             hop_frames=predictor.hop_frames)
    rows = []
    for segments, _, _ in DataLoader(windows, batch_size=predictor.recipe.batch_size):
        rows.append(predictor.model(segments.to(predictor.device)).float().softmax(dim=1).cpu())
    return torch.cat(rows), [start for _, start in windows.windows]


def analyse(predictor: Predictor, path: str | Path | None) -> dict[str, Any]:
    """Classify one clip for the page; return the answer, or {"message": why there is none}.

    The answer holds `label` (the top class, or "unknown"), `top`, `probability`, `reason`
    (as `Predictor.decide` gives them), `probabilities` (class -> clip probability, the mean
    of its windows, as `audiocls predict` computes it), `windows` (per-window probabilities),
    `starts` (their first frames), `log_mel`, and `cam` (Grad-CAM of the top class on the
    window most sure of it) with `cam_start`.
    """
    if path is None:
        return {"message": "Upload a clip or record one, then press Classify."}
    path = Path(path)
    feature = predictor.recipe.feature
    problem = _duration_problem(path)
    if problem:
        return {"message": problem}
    try:
        scan = predictor.scan(path)
        problem = content_problem(scan.info) or (None if scan.framed else too_short_to_frame(feature))
    except AudioclsError as error:
        why = decode_problem(path, error).split(" The file is")[0].rstrip(".")
        return {"message": f"This file cannot be read as audio: {why}. Upload a WAV, FLAC, OGG "
                           "or MP3 recording."}
    silent = problem is not None and problem.startswith("digital silence")
    if problem is not None and not silent:
        return {"message": f"This clip cannot be classified: {problem}"}
    names = predictor.class_names
    if silent:  # nothing to look at: every sample is 0
        decision = {"label": UNKNOWN, "top": None, "probability": None, "reason": "silence"}
        return {**decision, "probabilities": {}, "log_mel": scan.log_mel, "windows": None,
                "starts": [], "cam": None, "cam_start": 0, "loudness_db": -math.inf}
    probabilities = predictor.clip_probabilities(scan.log_mel)
    decision = predictor.decide(probabilities, scan.info.loudness_db)
    windows, starts = window_probabilities(predictor, scan.log_mel)
    best = int(windows[:, names.index(decision["top"])].argmax())
    segment = SegmentDataset([scan.log_mel], [0], predictor.num_frames, train=False,
                             hop_frames=predictor.hop_frames)[best][0]
    cam = grad_cam(predictor.model, segment.to(predictor.device), names.index(decision["top"]))
    return {**decision, "probabilities": {n: float(p) for n, p in zip(names, probabilities,
                                                                       strict=True)},
            "log_mel": scan.log_mel, "windows": windows, "starts": starts, "cam": cam.cpu(),
            "cam_start": starts[best], "loudness_db": scan.info.loudness_db}


def answer_text(result: dict[str, Any], threshold: float | None) -> str:
    """Return the page's one-line answer (Markdown)."""
    if "message" in result:
        return result["message"]
    if result["label"] != UNKNOWN:
        return f"## {result['label']}  \nprobability {result['probability']:.2f}"
    if result["reason"] == "silence":
        level = result["loudness_db"]
        shown = "digital silence" if level == -math.inf else f"{level:.0f} dBFS"
        return f"## None of these  \n{REASONS['silence']} ({shown}): nothing to classify."
    return (f"## None of these  \n{REASONS['low confidence']}: its best guess, "
            f"{result['top']} at {result['probability']:.2f}, is below the threshold "
            f"{threshold:.2f} calibrated on the validation set.")


def figure_png(predictor: Predictor, result: dict[str, Any]) -> bytes | None:
    """Draw the log-Mel, the per-window strip and the Grad-CAM map; return PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # the page's server has no display
    from matplotlib.figure import Figure

    log_mel = result.get("log_mel")
    if log_mel is None:
        return None
    feature = predictor.recipe.feature
    seconds = feature.hop_length / feature.sample_rate  # per frame
    frames = log_mel.shape[-1]
    panels = 3 if result["cam"] is not None else 1
    figure = Figure(figsize=(10, 2.6 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    extent = (0, frames * seconds, 0, log_mel.shape[0])
    image = axes[0].imshow(log_mel.numpy(), origin="lower", aspect="auto", cmap=CMAP,
                           extent=extent)
    axes[0].set(title="Log-Mel spectrogram", xlabel="time (s)", ylabel="Mel bin")
    figure.colorbar(image, ax=axes[0], label="dB")
    if panels == 1:
        return _png(figure)
    names, width = predictor.class_names, predictor.num_frames * seconds
    windows = result["windows"].numpy().T  # (classes, windows)
    centres = [(start + predictor.num_frames / 2) * seconds for start in result["starts"]]
    hop = predictor.hop_frames * seconds
    # each window's column runs halfway to its neighbours' centres, so it sits on its own centre
    edges = [centres[0] - hop / 2, *np.add(centres[:-1], centres[1:]) / 2, centres[-1] + hop / 2]
    strip = axes[1].pcolormesh(edges, np.arange(len(names) + 1) - 0.5, windows, cmap="Blues",
                               vmin=0, vmax=1)
    axes[1].set_xlim(0, frames * seconds)
    axes[1].set_yticks(range(len(names)), names)
    axes[1].set(title=f"Probability of each class along the clip ({len(centres)} windows of "
                      f"{width:.1f} s)", xlabel="window centre (s)")
    figure.colorbar(strip, ax=axes[1], label="probability")
    start = result["cam_start"] * seconds
    segment = log_mel[:, result["cam_start"]:result["cam_start"] + predictor.num_frames]
    box = (start, start + segment.shape[-1] * seconds, 0, log_mel.shape[0])
    axes[2].imshow(segment.numpy(), origin="lower", aspect="auto", cmap="gray", extent=box)
    cam = axes[2].imshow(result["cam"][:, :segment.shape[-1]].numpy(), origin="lower",
                         aspect="auto", cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=box)
    axes[2].set(title=f"Grad-CAM: where the evidence for {result['top']} is (the window most "
                      "sure of it)", xlabel="time (s)", ylabel="Mel bin")
    figure.colorbar(cam, ax=axes[2], label="Grad-CAM")
    return _png(figure)


def _png(figure: Any) -> bytes:
    """Return a Matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def build_app(predictor: Predictor):  # noqa: ANN201 - a gradio.Blocks
    """Return the Gradio page for `predictor` (not started: `launch` it)."""
    gr = import_gradio()
    from PIL import Image

    threshold = predictor.threshold if predictor.reject else None
    note = (f"Clips whose top probability is below {threshold:.2f} (calibrated on the validation "
            "set) and silent clips get \"none of these\"." if threshold is not None else
            "This model has no saved threshold: only silent clips get \"none of these\".")

    def classify(path: str | None) -> tuple[str, dict[str, float] | None, Any, dict[str, Any]]:
        try:
            result = analyse(predictor, path)
        except AudioclsError as error:  # a damaged model: say so in the page
            result = {"message": str(error)}
        png = figure_png(predictor, result) if "message" not in result else None
        summary = {key: result.get(key) for key in ("label", "top", "probability", "reason",
                                                    "probabilities", "message")}
        return (answer_text(result, threshold), result.get("probabilities") or None,
                Image.open(io.BytesIO(png)) if png else None, summary)

    with gr.Blocks(title="audiocls") as page:
        gr.Markdown(f"# audiocls: classify a clip\nModel `{predictor.source}`, classes: "
                    f"{', '.join(predictor.class_names)}. {note}")
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                label="Clip (upload, or record)")
                button = gr.Button("Classify", variant="primary")
                answer = gr.Markdown()
                top = gr.Label(num_top_classes=min(5, len(predictor.class_names)),
                               label="Probabilities (clip)")
            with gr.Column(scale=2):
                picture = gr.Image(label="Log-Mel, probabilities along the clip, Grad-CAM",
                                   type="pil")
        with gr.Accordion("Details (JSON)", open=False):
            details = gr.JSON()
        outputs = [answer, top, picture, details]
        button.click(classify, inputs=clip, outputs=outputs, api_name="classify")
        clip.change(classify, inputs=clip, outputs=outputs, api_name=False)
    return page


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          device: str | None = None, block: bool = True):  # noqa: ANN201 - a gradio.Blocks
    """Load `model` and serve its page on `host:port` (public only with `share`) until Ctrl+C."""
    import_gradio()  # before loading the model: the missing extra is the first thing to say
    page = build_app(Predictor.from_file(model, device=device))
    page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                max_file_size="1gb", show_error=False, quiet=True)
    return page
