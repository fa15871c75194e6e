"""Figures for the course: waveforms, spectrograms, filterbanks, training curves, confusions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import swanlab
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .audio import load_audio
from .config import FeatureConfig, Recipe
from .features import LogMel
from .metrics import misclassified

CMAP = "magma"  # one colormap for every spectrogram in the course


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return (figure, axes), making a new figure when `ax` is None."""
    if ax is None:
        figure, ax = plt.subplots(figsize=figsize)
        return figure, ax
    return ax.figure, ax  # type: ignore[return-value]


def plot_waveform(waveform: torch.Tensor | np.ndarray, sample_rate: int, title: str = "Waveform",
                  ax: Axes | None = None, start: float = 0.0, peak: float | None = None,
                  milliseconds: bool = False) -> Figure:
    """Plot amplitude against time in seconds (or ms).

    `start`: the time of the first sample, in s; `peak`: draw from -peak to +peak, so that
    several waveforms drawn with one peak can be compared by height.
    """
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    figure, ax = _axes(ax, (8, 2.5))
    scale, unit = (1000.0, "ms") if milliseconds else (1.0, "s")
    times = (start + np.arange(samples.size) / sample_rate) * scale
    ax.plot(times, samples, linewidth=0.5)
    ax.set(title=title, xlabel=f"Time ({unit})", ylabel="Amplitude",
           xlim=(start * scale, (start + samples.size / sample_rate) * scale))
    if peak is not None:
        ax.set_ylim(-peak, peak)
    return figure


def plot_spectrogram(
    spectrogram: torch.Tensor | np.ndarray,
    config: FeatureConfig,
    title: str = "Log-Mel spectrogram",
    ax: Axes | None = None,
    mel: bool = True,
    colorbar_label: str = "dB",
    vmin: float | None = None,
    vmax: float | None = None,
    start: float = 0.0,
) -> Figure:
    """Plot a (bins, frames) spectrogram with time in seconds and frequency in Hz.

    Frame m is drawn centred on its time, `start` + m * hop_length / sample_rate (torchaudio
    centres its frames), so spectrograms with different hops line up in time.
    """
    values = np.asarray(spectrogram, dtype=np.float32)
    figure, ax = _axes(ax, (8, 3))
    frame = config.hop_length / config.sample_rate  # seconds between frames
    top = config.f_max or config.sample_rate / 2
    first, last = start - frame / 2, start + (values.shape[1] - 0.5) * frame
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=CMAP, vmin=vmin, vmax=vmax,
                      extent=(first, last, 0, values.shape[0]))
    ax.set_xlim(max(first, 0.0), last)  # no negative time before the first frame's centre
    if mel:
        ticks = np.linspace(0, values.shape[0], 5)
        ax.set_yticks(ticks, [f"{hz:.0f}" for hz in mel_bin_frequencies(config, ticks)])
    else:
        ax.set_yticks(np.linspace(0, values.shape[0], 5), [f"{hz:.0f}" for hz in
                                                           np.linspace(0, top, 5)])
    ax.set(title=title, xlabel="Time (s)", ylabel="Frequency (Hz)")
    figure.colorbar(image, ax=ax, label=colorbar_label)
    return figure


def mel_bin_frequencies(config: FeatureConfig, bins: np.ndarray) -> np.ndarray:
    """Return the centre frequency in Hz of (fractional) Mel bin positions (HTK scale)."""
    top = config.f_max or config.sample_rate / 2

    def to_mel(hz: float) -> float:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    low, high = to_mel(config.f_min), to_mel(top)
    mels = low + (np.asarray(bins, dtype=float) / config.n_mels) * (high - low)
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def plot_filterbank(filterbank: torch.Tensor | np.ndarray, sample_rate: int,
                    zoom_hz: float = 400.0) -> Figure:
    """Plot every Mel filter against frequency in Hz, then a zoom on the filters below `zoom_hz`.

    Left: all the triangles, narrow and crowded at low frequencies, wide at high ones. Right: the
    lowest filters with a dot at each STFT bin, and the sum of all weights (1 where two overlap).
    """
    weights = np.asarray(filterbank, dtype=np.float32)  # (n_freqs, n_mels)
    n_freqs, n_mels = weights.shape
    frequencies = np.linspace(0, sample_rate / 2, n_freqs)  # the STFT bins' frequencies
    figure, (whole, zoom) = plt.subplots(1, 2, figsize=(13, 3.4))
    for band in range(n_mels):  # two alternating colours, so that neighbours can be told apart
        whole.plot(frequencies, weights[:, band], color=f"C{band % 2}", linewidth=0.7)
    whole.axvspan(0, zoom_hz, color="0.85", zorder=0, label=f"zoomed on the right (0-{zoom_hz:g} Hz)")
    whole.set(title=f"All {n_mels} Mel filters on a linear frequency axis", xlabel="Frequency (Hz)",
              ylabel="Weight", xlim=(0, sample_rate / 2), ylim=(0, 1.3))
    whole.legend(loc="upper right", fontsize=8)
    low = frequencies <= zoom_hz
    bands = [b for b in range(n_mels) if weights[:, b].max() > 0
             and frequencies[weights[:, b].argmax()] <= zoom_hz]
    empty = int((weights.max(axis=0) == 0).sum())  # filters that fall between two STFT bins
    for band in bands:
        zoom.plot(frequencies[low], weights[low, band], marker=".", markersize=4, linewidth=1)
    zoom.plot(frequencies[low], weights[low].sum(axis=1), color="black", linestyle="--",
              linewidth=1, label="sum of all filters")
    zoom.set(title=f"The {len(bands)} filters peaking below {zoom_hz:g} Hz (dots: STFT bins, "
                   f"{frequencies[1]:.1f} Hz apart)" + (f"\n{empty} more are all zeros" if empty else ""),
             xlabel="Frequency (Hz)", ylabel="Weight", xlim=(0, zoom_hz), ylim=(0, 1.3))
    zoom.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def plot_history(history: pd.DataFrame) -> Figure:
    """Plot training and validation loss and accuracy per epoch."""
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = history["epoch"]
    loss_ax.plot(epochs, history["train_loss"], marker="o", label="train")
    acc_ax.plot(epochs, history["train_acc"], marker="o", label="train")
    if history["val_loss"].notna().any():
        loss_ax.plot(epochs, history["val_loss"], marker="o", label="validation")
        acc_ax.plot(epochs, history["val_acc"], marker="o", label="validation")
    loss_ax.set(title="Loss (mean cross-entropy)", xlabel="Epoch", ylabel="Loss")
    acc_ax.set(title="Accuracy", xlabel="Epoch", ylabel="Accuracy", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.5
    figure.tight_layout()
    return figure


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                          title: str = "Confusion matrix (test)", ax: Axes | None = None) -> Figure:
    """Plot counts with true classes as rows and predicted classes as columns."""
    counts = np.asarray(matrix)
    figure, ax = _axes(ax, (6, 5))
    image = ax.imshow(counts, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    for row, column in np.ndindex(counts.shape):
        color = "white" if counts[row, column] > counts.max() / 2 else "black"
        ax.text(column, row, str(counts[row, column]), ha="center", va="center", color=color,
                fontsize=8)
    ax.set(title=title, xlabel="Predicted class", ylabel="True class")
    figure.colorbar(image, ax=ax, label="Clips")
    figure.tight_layout()
    return figure


def plot_class_counts(manifest: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Plot the number of clips per class, stacked by split when there is a split column."""
    figure, ax = _axes(ax, (8, 3))
    if "split" in manifest:
        counts: Any = manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
        order = [s for s in ("train", "val", "test") if s in counts] + [
            s for s in counts if s not in ("train", "val", "test")]
        counts[order].plot.bar(stacked=True, ax=ax)
        ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        manifest["label"].value_counts().sort_index().plot.bar(ax=ax)
    ax.set(title="Clips per class", xlabel="Class", ylabel="Clips")
    figure.tight_layout()
    return figure


def plot_durations(manifest: pd.DataFrame) -> Figure:
    """Plot histograms of clip durations (s) and of sample rates (Hz)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
    left.hist(manifest["duration"], bins=30, color="tab:blue")
    left.set(title="Clip durations", xlabel="Duration (s)", ylabel="Clips")
    rates = manifest["sample_rate"].value_counts().sort_index()
    right.bar([f"{rate:,}" for rate in rates.index], rates.to_numpy(), color="tab:orange")
    right.set(title="Sample rates", xlabel="Sample rate (Hz)", ylabel="Clips")
    figure.tight_layout()
    return figure


def plot_spectrogram_grid(
    panels: Sequence[tuple[str, torch.Tensor | np.ndarray, FeatureConfig]],
    ncols: int = 3,
    mel: bool = True,
    colorbar_label: str = "dB",
    title: str | None = None,
    shared_scale: bool = True,
    starts: Sequence[float] | None = None,
) -> Figure:
    """Plot several (bins, frames) spectrograms, each with its own config, in a grid.

    `starts`: the time in s of each panel's first frame (default 0).
    """
    nrows = -(-len(panels) // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
    arrays = [np.asarray(values, dtype=np.float32) for _, values, _ in panels]
    low = min(float(a.min()) for a in arrays) if shared_scale else None
    high = max(float(a.max()) for a in arrays) if shared_scale else None
    starts = list(starts) if starts is not None else [0.0] * len(panels)
    for ax, (name, _, config), values, start in zip(axes.flat, panels, arrays, starts, strict=False):
        plot_spectrogram(values, config, title=name, ax=ax, mel=mel, colorbar_label=colorbar_label,
                         vmin=low, vmax=high, start=start)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_parameter_sweep(waveform: torch.Tensor, config: FeatureConfig, name: str,
                         values: Sequence[int], window: tuple[float, float] | None = None) -> Figure:
    """Plot the log-Mel of one waveform for each value of one FeatureConfig setting, side by side.

    `window`: draw only the frames that cover these seconds, the same stretch in every panel
    (each log-Mel is computed on the whole waveform first).
    """
    from dataclasses import replace

    from .features import LogMel

    panels, starts = [], []
    for value in values:
        changed = replace(config, **{name: value})
        log_mel = LogMel(changed)(waveform)  # (n_mels, frames)
        title = f"{name}={value}: {log_mel.shape[0]} bands x {log_mel.shape[1]} frames"
        frame = changed.hop_length / changed.sample_rate  # seconds between frame centres
        first = 0
        if window is not None:  # the frames that cover some of the window
            centres = np.arange(log_mel.shape[1]) * frame
            inside = np.flatnonzero((centres + frame / 2 > window[0]) & (centres - frame / 2 < window[1]))
            if inside.size == 0:
                raise ValueError(f"window {window} s holds no frame of this "
                                 f"{waveform.shape[-1] / config.sample_rate:.2f} s waveform")
            first, log_mel = int(inside[0]), log_mel[:, inside[0] : inside[-1] + 1]
            title += f"\n{len(inside)} frames cover the {window[1] - window[0]:g} s shown"
        panels.append((title, log_mel, changed))
        starts.append(first * frame)
    fixed = ", ".join(f"{key}={getattr(config, key)}" for key in ("n_fft", "hop_length", "n_mels")
                      if key != name)
    if window is not None:
        fixed += f"; the same {window[0]:g}-{window[1]:g} s in every panel"
    figure = plot_spectrogram_grid(panels, ncols=len(panels), title=f"Changing {name} ({fixed})",
                                   starts=starts)
    if window is not None:
        for ax in figure.axes:
            if ax.images:  # the spectrograms, not their colour bars
                ax.set_xlim(*window)
                ax.images[0].set_interpolation("nearest")  # one block per frame, not a blur
    return figure


def plot_mfcc(mfcc: torch.Tensor | np.ndarray, config: FeatureConfig, title: str = "MFCC",
              ax: Axes | None = None) -> Figure:
    """Plot (coefficients, frames) MFCCs with time in seconds."""
    values = np.asarray(mfcc, dtype=np.float32)
    figure, ax = _axes(ax, (8, 2.5))
    seconds = values.shape[1] * config.hop_length / config.sample_rate
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=CMAP,
                      extent=(0, seconds, -0.5, values.shape[0] - 0.5))
    ax.set(title=title, xlabel="Time (s)", ylabel="Coefficient")
    figure.colorbar(image, ax=ax, label="Value (dB-scaled cosine weights)")
    return figure


def plot_framing(waveform: torch.Tensor | np.ndarray, sample_rate: int, n_fft: int, hop_length: int,
                 start: float = 0.0, frames: int = 4) -> Figure:
    """Plot a stretch of waveform with the first `frames` Hann windows the STFT cuts from it."""
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    first = int(start * sample_rate)
    span = n_fft + hop_length * (frames - 1)
    excerpt = samples[first : first + span]
    times = (first + np.arange(excerpt.size)) / sample_rate * 1000
    figure, ax = plt.subplots(figsize=(10, 3))
    ax.plot(times, excerpt, color="0.6", linewidth=0.6, label="waveform")
    scale = float(np.abs(excerpt).max()) or 1.0
    window = np.hanning(n_fft) * scale
    for frame in range(frames):
        offset = first + frame * hop_length
        ax.plot((offset + np.arange(n_fft)) / sample_rate * 1000, window, linewidth=1.5,
                label=f"frame {frame} window")
    ax.set(title=f"STFT frames: windows of n_fft={n_fft} samples every hop_length={hop_length}",
           xlabel="Time (ms)", ylabel="Amplitude")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    return figure


def plot_mel_scale(max_hz: float) -> Figure:
    """Plot the Mel scale (HTK formula) against frequency in Hz."""
    hz = np.linspace(0, max_hz, 500)
    figure, ax = plt.subplots(figsize=(5, 3))
    ax.plot(hz, 2595.0 * np.log10(1.0 + hz / 700.0))
    ax.set(title="The Mel scale: fine at low pitch, coarse at high", xlabel="Frequency (Hz)",
           ylabel="Mel")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_lr_schedule(recipes: Mapping[str, Recipe]) -> Figure:
    """Plot the learning rate per epoch that `train.make_scheduler` gives each recipe, on a log scale."""
    from .train import scheduled_rates  # training code: imported only when this figure is drawn

    figure, ax = plt.subplots(figsize=(7, 3))
    for name, recipe in recipes.items():
        ax.step(np.arange(1, recipe.epochs + 1), scheduled_rates(recipe, recipe.lr), where="mid",
                marker="o", markersize=3, label=name)
    ax.set(title="Learning rate per epoch", xlabel="Epoch", ylabel="Learning rate", yscale="log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure


def plot_run_comparison(histories: Mapping[str, pd.DataFrame], test_accuracy: Mapping[str, float]
                        ) -> Figure:
    """Plot validation accuracy per epoch of several runs, and their test accuracies as bars."""
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 3.5),
                                          gridspec_kw={"width_ratios": [2, 1]})
    for name, history in histories.items():
        line = curves.plot(history["epoch"], history["val_acc"], marker="o", label=f"{name} (val)")
        curves.plot(history["epoch"], history["train_acc"], linestyle="--",
                    color=line[0].get_color(), label=f"{name} (train)")
    curves.set(title="Accuracy per epoch", xlabel="Epoch", ylabel="Accuracy", ylim=(0, 1.02))
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    names = list(test_accuracy)
    values = [test_accuracy[name] for name in names]
    bars.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
    bars.set_xticks(range(len(names)), names, rotation=20, ha="right")
    for position, value in enumerate(values):
        bars.text(position, value + 0.02, f"{value:.3f}", ha="center")
    bars.set(title="Test accuracy", xlabel="Recipe", ylabel="Accuracy", ylim=(0, 1.1))
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def plot_before_after(before: torch.Tensor | np.ndarray, after: torch.Tensor | np.ndarray,
                      config: FeatureConfig, title: str, unit: str = "dB") -> Figure:
    """Plot a (n_mels, frames) segment before and after a change, on one scale, and their difference."""
    before, after = (np.asarray(v, dtype=np.float32) for v in (before, after))
    figure, axes = plt.subplots(1, 3, figsize=(14, 3.2))
    low, high = float(min(before.min(), after.min())), float(max(before.max(), after.max()))
    plot_spectrogram(before, config, "before", ax=axes[0], colorbar_label=unit, vmin=low, vmax=high)
    plot_spectrogram(after, config, "after", ax=axes[1], colorbar_label=unit, vmin=low, vmax=high)
    difference = after - before
    reach = float(np.abs(difference).max()) or 1.0  # a symmetric scale: 0 is white
    seconds = before.shape[1] * config.hop_length / config.sample_rate
    image = axes[2].imshow(difference, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-reach,
                           vmax=reach, extent=(0, seconds, 0, before.shape[0]))
    ticks = np.linspace(0, before.shape[0], 5)
    axes[2].set_yticks(ticks, [f"{hz:.0f}" for hz in mel_bin_frequencies(config, ticks)])
    axes[2].set(title="after - before", xlabel="Time (s)", ylabel="Frequency (Hz)")
    figure.colorbar(image, ax=axes[2], label=f"Change ({unit})")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_cnn_input(image: torch.Tensor, title: str = "What the CNN receives") -> Figure:
    """Plot one channel of a (3, height, width) model input (the three are copies), in pixels."""
    values = np.asarray(image.detach().cpu(), dtype=np.float32)
    figure, ax = plt.subplots(figsize=(5, 4))
    shown = ax.imshow(values[0], origin="lower", cmap=CMAP)
    ax.set(title=f"{title}\nchannel 0 of {values.shape[0]}, {values.shape[1]}x{values.shape[2]} px",
           xlabel="Time (px)", ylabel="Mel band (px)")
    figure.colorbar(shown, ax=ax, label="Standardized value (std units)")
    figure.tight_layout()
    return figure


def swanlab_test_media(paths, targets, probabilities, class_names, config, max_clips=4,  #@save
                       seconds=10.0):
    """Return SwanLab's confusion-matrix chart of a test set, and its most confident mistakes as
    `swanlab.Audio` (their first `seconds`) and `swanlab.Image` (their log-Mels)."""
    predictions = probabilities.argmax(dim=1).tolist()  # (clips,) the top class of each clip
    media = {}
    if set(targets) == set(range(len(class_names))):  # SwanLab's chart needs every class present
        # Rows are the true classes, each as fractions of its clips (SwanLab normalizes them).
        media["test/confusion_matrix"] = swanlab.echarts.confusion_matrix(
            list(targets), predictions, list(class_names))
    to_log_mel, sounds, images = LogMel(config), [], []
    for i in misclassified(targets, probabilities, max_clips):
        waveform = load_audio(paths[i], config.sample_rate)[: int(seconds * config.sample_rate)]
        caption = (f"{Path(paths[i]).name}: {class_names[targets[i]]} taken for "
                   f"{class_names[predictions[i]]} ({float(probabilities[i].max()):.2f})")
        sounds.append(swanlab.Audio(waveform.numpy(), sample_rate=config.sample_rate, caption=caption))
        figure = plot_spectrogram(to_log_mel(waveform), config, title=caption,
                                  colorbar_label="dB" if config.to_db else "power")
        figure.tight_layout()  # keep the axis labels inside the image
        images.append(swanlab.Image(figure, caption=caption))
        plt.close(figure)
    if sounds:
        media["test/misclassified_audio"], media["test/misclassified_log_mel"] = sounds, images
    return media
