"""Track runs with SwanLab, without ever letting tracking stop training.

Mode: the `mode` argument, else $SWANLAB_MODE, else `local` (no account; view the runs with
`swanlab watch <log_dir>`). Tests use `disabled`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

MODES = ("disabled", "local", "offline", "online", "cloud")


def resolve_mode(mode: str | None = None) -> str:
    """Return the tracking mode from the argument, $SWANLAB_MODE, or `local`."""
    chosen = (mode or os.environ.get("SWANLAB_MODE") or "local").lower()
    if chosen not in MODES:
        raise ValueError(f"Unknown SwanLab mode {chosen!r}; choose one of {MODES}")
    return "online" if chosen == "cloud" else chosen


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
        self.run: Any = None
        self._failed = False
        if self.mode == "disabled":
            return
        try:
            import swanlab

            self._swanlab = swanlab
            self.log_dir.mkdir(parents=True, exist_ok=True)
            resume = {"id": run_id, "resume": "allow"} if run_id else {}
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

    def log(self, values: dict[str, float], step: int | None = None) -> None:
        """Log scalar values at `step`."""
        if self.active:
            try:
                self.run.log(values, step=step)
            except Exception as error:  # noqa: BLE001
                self._fail("log", error)

    def log_figure(self, key: str, figure: Any, step: int | None = None) -> None:
        """Log a matplotlib figure as an image."""
        if self.active:
            try:
                self.run.log({key: self._swanlab.Image(figure)}, step=step)
            except Exception as error:  # noqa: BLE001
                self._fail("log an image", error)

    def finish(self) -> None:
        """Close the run (safe to call twice)."""
        if self.run is not None:
            try:
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
