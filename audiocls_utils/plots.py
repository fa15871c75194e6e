"""Figures for the course: waveforms, spectrograms, filterbanks, training curves, confusions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .config import FeatureConfig

CMAP = "magma"  # one colormap for every spectrogram in the course


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """Return (figure, axes), making a new figure when `ax` is None."""
    if ax is None:
        figure, ax = plt.subplots(figsize=figsize)
        return figure, ax
    return ax.figure, ax  # type: ignore[return-value]


def plot_waveform(waveform: torch.Tensor | np.ndarray, sample_rate: int, title: str = "Waveform",
                  ax: Axes | None = None) -> Figure:
    """Plot amplitude against time in seconds."""
    samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
    figure, ax = _axes(ax, (8, 2.5))
    ax.plot(np.arange(samples.size) / sample_rate, samples, linewidth=0.5)
    ax.set(title=title, xlabel="Time (s)", ylabel="Amplitude", xlim=(0, samples.size / sample_rate))
    return figure


def plot_spectrogram(
    spectrogram: torch.Tensor | np.ndarray,
    config: FeatureConfig,
    title: str = "Log-Mel spectrogram",
    ax: Axes | None = None,
    mel: bool = True,
    colorbar_label: str = "dB",
) -> Figure:
    """Plot a (bins, frames) spectrogram with time in seconds and frequency in Hz."""
    values = np.asarray(spectrogram, dtype=np.float32)
    figure, ax = _axes(ax, (8, 3))
    seconds = values.shape[1] * config.hop_length / config.sample_rate
    top = config.f_max or config.sample_rate / 2
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=CMAP,
                      extent=(0, seconds, 0, values.shape[0]))
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


def plot_filterbank(filterbank: torch.Tensor, sample_rate: int, every: int = 8,
                    ax: Axes | None = None) -> Figure:
    """Plot every `every`-th triangular Mel filter against frequency in Hz."""
    weights = np.asarray(filterbank)  # (n_freqs, n_mels)
    frequencies = np.linspace(0, sample_rate / 2, weights.shape[0])
    figure, ax = _axes(ax, (8, 3))
    for column in range(0, weights.shape[1], every):
        ax.plot(frequencies, weights[:, column], linewidth=1)
    ax.set(title=f"Mel filterbank (every {every}th of {weights.shape[1]} filters)",
           xlabel="Frequency (Hz)", ylabel="Weight")
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
        counts.plot.bar(stacked=True, ax=ax)
    else:
        manifest["label"].value_counts().sort_index().plot.bar(ax=ax)
    ax.set(title="Clips per class", xlabel="Class", ylabel="Clips")
    figure.tight_layout()
    return figure
