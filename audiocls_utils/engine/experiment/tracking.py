"""Track runs with SwanLab, without ever letting tracking stop training.

Mode: the `mode` argument, else $SWANLAB_MODE, else `offline`: SwanLab's maintained flow with no
account, each run saved in <log_dir>/run-*, uploaded later with `swanlab sync` (a free account).
`local` keeps SwanLab's older local dashboard (`swanlab watch`, deprecated upstream, still served
by `make dashboard` while it works); `online` logs to the cloud with a key. Tests use `disabled`.
SwanLab's start and finish banners are kept out of the output (`quiet_swanlab`): one line per
run says where it is logged (`swanlab_line`). A run's test set is logged as SwanLab's own chart
and media (`plots.swanlab_test_media`, written in chapter 03).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ...config import FeatureConfig
from ...errors import AudioclsError
from ...plots import swanlab_test_media

MODES = ("disabled", "local", "offline", "online", "cloud")


def resolve_mode(mode: str | None = None) -> str:
    """Return the tracking mode from the argument, $SWANLAB_MODE, or `offline`."""
    source = "--tracking" if mode else "SWANLAB_MODE"
    given = mode or os.environ.get("SWANLAB_MODE") or "offline"
    chosen = given.strip().lower()
    if chosen not in MODES:
        what = "unset it" if source == "SWANLAB_MODE" else "leave --tracking out for offline"
        raise AudioclsError(f"{source}={given!r} is not a SwanLab mode: choose offline, online, "
                            f"local or disabled (or {what})")
    return "online" if chosen == "cloud" else chosen


def swanlab_line(name: str, mode: str, log_dir: str | Path, why_off: str) -> str:
    """Return the one line printed for a SwanLab run: where it goes and how to view it, or why not.

    `why_off` says why a disabled run is not logged, e.g. "tracking is off in the smoke profile".
    """
    if mode == "disabled":
        return f"SwanLab run {name!r} not logged ({why_off})"
    view = {"local": f"view: swanlab watch {log_dir}, deprecated upstream",
            "offline": f"upload with swanlab sync {Path(log_dir) / 'run-*'} to see it online",
            "online": "view it on SwanLab's website"}.get(mode, "")
    return f"SwanLab run {name!r} logged to {log_dir} ({mode} mode; {view})"


def _swanlab_console() -> Any:
    """Return the rich Console SwanLab prints its banners with, or None if this version has none."""
    try:
        from swanlab.sdk.internal.pkg import console
    except ImportError:
        return None
    return getattr(console, "c", None)


@contextmanager
def quiet_swanlab() -> Iterator[None]:
    """Keep SwanLab's start and finish banners out of the output inside the block; runs log as usual.

    SwanLab (0.10) has no setting for them: they go through one rich Console, muted here.
    """
    console = _swanlab_console()
    if console is None:
        yield
        return
    was_quiet, console.quiet = console.quiet, True
    try:
        yield
    finally:
        console.quiet = was_quiet


class Tracker:
    """Log metrics and figures to SwanLab; any SwanLab failure becomes one warning."""

    def __init__(
        self,
        project: str = "audiocls",
        experiment: str | None = None,
        config: dict[str, Any] | None = None,
        mode: str | None = None,
        log_dir: str | Path = "swanlog",
        run_id: str | None = None,
    ) -> None:
        self.mode = resolve_mode(mode)
        self.log_dir = Path(log_dir)
        self.experiment = experiment
        self._why_off = ("tracking is off: SWANLAB_MODE=disabled" if mode is None
                         else "tracking is disabled")
        self.run: Any = None
        self._failed = False
        if self.mode == "disabled":
            return
        try:
            import swanlab

            self._swanlab = swanlab
            self.log_dir.mkdir(parents=True, exist_ok=True)
            resume = {"id": run_id, "resume": "allow"} if run_id else {}
            with quiet_swanlab():
                self.run = swanlab.init(project=project, name=experiment, config=config or {},
                                        mode=self.mode, log_dir=str(self.log_dir), reinit=True,
                                        **resume)
        except Exception as error:  # noqa: BLE001 - tracking must never stop training
            self._fail("start", error)

    @property
    def active(self) -> bool:
        """Return True while runs are being recorded."""
        return self.run is not None and not self._failed

    @property
    def run_id(self) -> str | None:
        """Return the run's id (to resume it later), or None when not tracking."""
        return getattr(self.run, "id", None) if self.active else None

    def line(self) -> str:
        """Return the one line that says where this run is logged, or why it is not."""
        if self._failed:
            return swanlab_line(self.experiment or "run", "disabled", self.log_dir,
                                "SwanLab failed: see the warning above")
        return swanlab_line(self.experiment or "run", self.mode, self.log_dir, self._why_off)

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        """Log values at `step`: scalars, or SwanLab's media and charts."""
        if self.active:
            try:
                self.run.log(values, step=step)
            except Exception as error:  # noqa: BLE001
                self._fail("log", error)

    def log_test_set(self, paths: Sequence[str | Path], targets: Sequence[int],
                     probabilities: torch.Tensor, class_names: Sequence[str],
                     config: FeatureConfig, figure: Any = None) -> None:
        """Log the test confusion matrix as SwanLab's chart and the worst mistakes as audio.

        `figure`, the matrix drawn with matplotlib, is logged too in local mode: SwanLab's local
        dashboard (0.10) draws lines, images, audio and text but not its own charts.
        """
        if self.active:
            try:
                media = {}  # the image first: the dashboard shows charts in the order they came
                if figure is not None and self.mode == "local":
                    media["test/confusion_matrix_image"] = self._swanlab.Image(figure)
                media.update(swanlab_test_media(paths, targets, probabilities, class_names,
                                                config))
                self.run.log(media)
            except Exception as error:  # noqa: BLE001
                self._fail("log the test set", error)

    def finish(self) -> None:
        """Close the run (safe to call twice)."""
        if self.run is not None:
            try:
                with quiet_swanlab():
                    self.run.finish()
            except Exception as error:  # noqa: BLE001
                self._fail("finish", error)
            self.run = None

    def _fail(self, action: str, error: Exception) -> None:
        """Warn once and stop tracking; training goes on."""
        if not self._failed:
            warnings.warn(f"SwanLab could not {action} ({error}); training continues without "
                          "tracking", RuntimeWarning, stacklevel=3)
        self._failed = True
