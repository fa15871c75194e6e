"""Figures: what is drawn matches the numbers given, with units on the axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from audiocls_utils.config import FeatureConfig, apply_profile, get_recipe
from audiocls_utils.plots import (
    plot_before_after,
    plot_cnn_input,
    plot_durations,
    plot_filterbank,
    plot_framing,
    plot_history,
    plot_lr_schedule,
    plot_mel_scale,
    plot_mfcc,
    plot_parameter_sweep,
    plot_run_comparison,
    plot_spectrogram,
    plot_spectrogram_grid,
    plot_waveform,
)

CONFIG = FeatureConfig(n_fft=512, hop_length=128, n_mels=32)


@pytest.fixture(autouse=True)
def _close_figures():  # noqa: ANN202
    yield
    plt.close("all")


def test_durations_and_sample_rates_are_counted() -> None:
    manifest = pd.DataFrame({"duration": [30.0, 30.0, 29.9], "sample_rate": [22050, 22050, 44100]})
    figure = plot_durations(manifest)
    hist_ax, rate_ax = figure.axes
    assert [p.get_height() for p in rate_ax.patches] == [2, 1]
    assert sum(p.get_height() for p in hist_ax.patches) == 3
    assert hist_ax.get_xlabel() == "Duration (s)" and rate_ax.get_xlabel() == "Sample rate (Hz)"


def test_spectrogram_color_limits_are_respected_and_the_grid_shares_them() -> None:
    figure = plot_spectrogram(np.zeros((32, 10)), CONFIG, vmin=-80, vmax=0)
    assert figure.axes[0].images[0].get_clim() == (-80, 0)
    panels = [("a", torch.full((32, 10), -10.0), CONFIG), ("b", torch.full((32, 10), -50.0), CONFIG),
              ("c", torch.full((32, 10), -30.0), CONFIG)]
    grid = plot_spectrogram_grid(panels, ncols=2, title="t")
    images = [ax.images[0] for ax in grid.axes if ax.images]
    assert len(images) == 3 and all(image.get_clim() == (-50.0, -10.0) for image in images)
    assert not grid.axes[3].axison  # the empty fourth cell is hidden


def test_parameter_sweep_titles_give_each_shape() -> None:
    waveform = torch.randn(22050)
    figure = plot_parameter_sweep(waveform, CONFIG, "hop_length", [128, 256])
    titles = [ax.get_title() for ax in figure.axes if ax.images]
    assert titles == ["hop_length=128: 32 bands x 173 frames", "hop_length=256: 32 bands x 87 frames"]


def test_mfcc_framing_and_mel_scale_label_their_axes() -> None:
    assert plot_mfcc(np.zeros((20, 50)), CONFIG).axes[0].get_ylabel() == "Coefficient"
    figure = plot_framing(np.sin(np.arange(4000) / 10), 22050, n_fft=512, hop_length=128, frames=3)
    assert len(figure.axes[0].lines) == 4 and figure.axes[0].get_xlabel() == "Time (ms)"
    line = plot_mel_scale(8000).axes[0].lines[0]
    assert line.get_ydata()[-1] == pytest.approx(2595 * np.log10(1 + 8000 / 700))


def test_cnn_input_shows_one_channel_in_standardized_units() -> None:
    image = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(3, 4, 5)
    figure = plot_cnn_input(image)
    [ax] = [ax for ax in figure.axes if ax.images]
    np.testing.assert_array_equal(ax.images[0].get_array(), image[0].numpy())
    assert "channel 0 of 3, 4x5 px" in ax.get_title()


def test_before_after_shares_one_scale_and_shows_the_difference() -> None:
    before = np.zeros((8, 20), np.float32)
    after = before.copy()
    after[2:4] = 6.0  # a 6 dB rise in two bands
    figure = plot_before_after(before, after, CONFIG, "gain")
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert [image.get_clim() for image in images[:2]] == [(0.0, 6.0), (0.0, 6.0)]
    np.testing.assert_array_equal(images[2].get_array(), after - before)
    assert images[2].get_clim() == (-6.0, 6.0)  # symmetric: no change is the middle colour


def test_lr_schedule_plots_the_recipe_rates() -> None:
    recipe = apply_profile(get_recipe("advanced"), "cpu")
    # The cpu profile: 10 epochs, warmup ceil(5 / 3) = 2 epochs, a step every round(10 / 3) = 3.
    assert (recipe.epochs, recipe.warmup_epochs, recipe.step_size) == (10, 2, 3)
    line = plot_lr_schedule({"cpu": recipe}).axes[0].lines[0]
    factors = [0.5, 1.0] + [1.0] * 3 + [0.1] * 3 + [0.01] * 2
    assert list(line.get_xdata()) == list(range(1, 11))
    assert list(line.get_ydata()) == pytest.approx([recipe.lr * f for f in factors])


def test_run_comparison_bars_are_the_test_accuracies() -> None:
    history = pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.8], "val_acc": [0.4, 0.6]})
    figure = plot_run_comparison({"a": history, "b": history.assign(val_acc=history["val_acc"] + 0.1)},
                                 {"a": 0.61, "b": 0.72})
    bars = figure.axes[1].patches
    assert [b.get_height() for b in bars] == [0.61, 0.72]
    assert len(figure.axes[0].lines) == 4


def test_waveform_can_share_a_scale_and_start_later_in_ms() -> None:
    figure = plot_waveform(np.full(100, 0.1), 1000, start=2.0, peak=0.5, milliseconds=True)
    ax = figure.axes[0]
    assert ax.get_xlim() == (2000.0, 2100.0) and ax.get_ylim() == (-0.5, 0.5)
    assert ax.get_xlabel() == "Time (ms)" and ax.lines[0].get_xdata()[0] == 2000.0


def test_spectrogram_frames_are_centred_on_their_times() -> None:
    frame = CONFIG.hop_length / CONFIG.sample_rate
    ax = plot_spectrogram(np.zeros((32, 10)), CONFIG, start=1.0).axes[0]
    left, right, _, _ = ax.images[0].get_extent()
    assert (left, right) == pytest.approx((1.0 - frame / 2, 1.0 + 9.5 * frame))
    assert plot_spectrogram(np.zeros((32, 10)), CONFIG).axes[0].get_xlim()[0] == 0.0


def test_filterbank_draws_every_filter_and_counts_the_empty_ones() -> None:
    # Five STFT bins at 0..4 Hz (sample rate 8 Hz), three filters, the last one all zeros.
    weights = np.array([[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0], [0, 0, 0]], np.float32)
    whole, zoom = plot_filterbank(weights, 8, zoom_hz=2.5).axes
    assert len(whole.lines) == 3  # every filter, the empty one included
    triangles, total = zoom.lines[:-1], zoom.lines[-1]
    assert len(triangles) == 2  # filters 0 and 1 peak below 2.5 Hz
    assert list(total.get_ydata()) == [1.0, 1.0, 1.0]  # overlapping weights add up to 1
    assert "1 more are all zeros" in zoom.get_title()


def test_sweep_window_draws_the_same_seconds_with_each_hop() -> None:
    waveform = torch.randn(22050)
    figure = plot_parameter_sweep(waveform, CONFIG, "hop_length", [128, 512], window=(0.2, 0.4))
    axes = [ax for ax in figure.axes if ax.images]
    assert all(ax.get_xlim() == (0.2, 0.4) for ax in axes)
    # Frames cover the window when centre +- half a hop reaches into it: by hand, frames 34-69
    # at hop 128 (5.8 ms) and 9-17 at hop 512 (23.2 ms).
    assert [ax.images[0].get_array().shape[1] for ax in axes] == [36, 9]
    assert "36 frames cover the 0.2 s shown" in axes[0].get_title()
    assert axes[1].images[0].get_extent()[0] == pytest.approx(8.5 * 512 / 22050)
    with pytest.raises(ValueError, match="holds no frame"):
        plot_parameter_sweep(waveform, CONFIG, "hop_length", [128], window=(5.0, 6.0))


def test_epoch_axes_tick_whole_epochs_only() -> None:
    # Two epochs left matplotlib free to tick 1.25, 1.5, ...: an epoch has no halves.
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "train_acc": [0.5, 0.8],
                            "val_loss": [2.1, 1.5], "val_acc": [0.4, 0.6]})
    figures = [plot_history(history), plot_run_comparison({"a": history}, {"a": 0.5}),
               plot_lr_schedule({"smoke": apply_profile(get_recipe("course"), "smoke")})]
    for figure in figures:
        ax = figure.axes[0]
        figure.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        plt.close(figure)
