"""The `audiocls` command line: synth, prepare, train, evaluate, predict."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .errors import AudioclsError


def _progress() -> bool:
    """Return True when progress bars help: an interactive terminal, not a CI log."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def cmd_synth(args: argparse.Namespace) -> None:
    """Generate the built-in synthetic dataset."""
    from .synth import generate_dataset

    root = generate_dataset(args.out, clips_per_class=args.clips_per_class, seconds=args.seconds,
                            seed=args.seed, difficulty=args.difficulty, progress=_progress())
    print(f"Synthetic dataset in {root}")


def _manifest_with_splits(args: argparse.Namespace):  # noqa: ANN202 - pandas type
    """Build the manifest of --data-dir, report exclusions, and add the --split column."""
    from .data import build_manifest, make_splits

    manifest, excluded = build_manifest(args.data_dir, label_pattern=args.label_pattern,
                                        progress=_progress())
    for item in excluded:
        print(f"Excluded {item}")
    return make_splits(manifest, args.split, seed=args.seed), excluded


def cmd_prepare(args: argparse.Namespace) -> None:
    """Write the manifest with a split column and print the class counts."""
    from .data import check_splits, save_manifest

    manifest, excluded = _manifest_with_splits(args)
    save_manifest(manifest, args.out)
    counts = manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
    print(counts.reindex(columns=[c for c in ("train", "val", "test") if c in counts]).to_string())
    for warning in check_splits(manifest):
        print(f"Warning: {warning}")
    print(f"{len(manifest)} clips in {manifest['label'].nunique()} classes, {len(excluded)} "
          f"excluded; manifest written to {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a recipe and write metrics.json, model.pt and history.csv (DDP under torchrun)."""
    from .config import apply_profile, default_profile, get_recipe
    from .data import load_manifest, make_splits
    from .distributed import quiet_unless_main
    from .train import pick_device, run_experiment

    with quiet_unless_main():
        device = pick_device(args.device)
        profile = args.profile or default_profile(str(device))
        recipe = apply_profile(get_recipe(args.recipe), profile)
        if args.manifest:
            manifest = make_splits(load_manifest(args.manifest), "existing")
        else:
            manifest, _ = _manifest_with_splits(args)
        print(f"Profile {profile}; {len(manifest)} clips; output in {args.output_dir}")
        result = run_experiment(
            manifest, recipe, args.output_dir, device=device, seed=args.seed,
            tracking_mode=args.tracking, progress=_progress(), resume=args.resume,
            num_workers=args.workers, cache=False if args.no_cache else (args.cache_dir or True),
            amp=not args.no_amp, channels_last=False if args.no_channels_last else None,
            pin_memory=False if args.no_pin_memory else None,
        )
        test = result.metrics.get("test")
        if test:
            print(f"Test accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} "
                  f"({test['num_clips']} clips)")
        print(f"Wrote {args.output_dir}/metrics.json, model.pt, history.csv")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a saved model on a split of a dataset (clip level) and write the metrics as JSON."""
    from .files import write_json
    from .metrics import classification_metrics, format_report
    from .predict import Predictor

    predictor = Predictor.from_file(args.model, device=args.device)
    manifest, _ = _manifest_with_splits(args)
    rows = manifest if args.subset == "all" else manifest[manifest["split"] == args.subset]
    unknown = sorted(set(rows["label"]) - set(predictor.class_names))
    if unknown:
        raise AudioclsError(f"Labels {unknown} are not among the model's classes "
                            f"{predictor.class_names}")
    if rows.empty:
        raise AudioclsError(f"The {args.subset} split is empty; choose another with --subset")
    probabilities = predictor.probabilities(rows["path"].tolist())
    targets = [predictor.class_names.index(label) for label in rows["label"]]
    metrics = classification_metrics(targets, probabilities.argmax(1).tolist(),
                                     predictor.class_names)
    print(format_report(metrics, predictor.class_names))
    out = Path(args.out or Path(args.model).with_name(f"evaluation_{args.subset}.json"))
    write_json(out, {"model": str(args.model), "split": args.split, "subset": args.subset,
                     "classes": predictor.class_names, **metrics})
    print(f"Wrote {out}")


def cmd_predict(args: argparse.Namespace) -> None:
    """Print the top-k labels of each file."""
    from .predict import Predictor

    results = Predictor.from_file(args.model, device=args.device).predict(args.files, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        ranked = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top"])
        print(f"{result['path']}: {ranked}")


EXAMPLES = {
    "synth": "audiocls synth --out data/synth --clips-per-class 30 --seconds 6",
    "prepare": "audiocls prepare --data-dir data/synth --out data/manifest.csv --split group",
    "train": "audiocls train --data-dir data/synth --recipe baseline --profile cpu "
             "--output-dir runs/baseline",
    "evaluate": "audiocls evaluate --model runs/baseline/model.pt --data-dir data/synth",
    "predict": "audiocls predict --model runs/baseline/model.pt song.wav --top-k 3",
}


def _add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add --data-dir, --label-pattern, --split and --seed."""
    parser.add_argument("--data-dir", required=required,
                        help="folder with one sub-folder per class (GTZAN layouts are found)")
    parser.add_argument("--label-pattern", default=None,
                        help="read labels from file names: 'fsdd' or a regex with (?P<label>...)")
    parser.add_argument("--split", default="random", choices=["random", "group"],
                        help="random: per-class stratified (seed 42); group: no speaker/artist "
                             "in two splits")
    parser.add_argument("--seed", type=int, default=42)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-command per step."""
    parser = argparse.ArgumentParser(
        prog="audiocls", description="Audio classification with log-Mel spectrograms and CNNs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES.values()),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_text, description=help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=textwrap.dedent(f"example:\n  {EXAMPLES[name]}"),
        )

    synth = command("synth", "Generate the built-in synthetic GTZAN-shaped dataset.")
    synth.add_argument("--out", required=True, help="folder to create (genres/ goes inside)")
    synth.add_argument("--clips-per-class", type=int, default=20)
    synth.add_argument("--seconds", type=float, default=5.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--difficulty", type=float, default=0.5, help="0 easy ... 1 hard")
    synth.set_defaults(run=cmd_synth)

    prepare = command("prepare", "Check every clip and write the manifest with a split column.")
    _add_data_arguments(prepare)
    prepare.add_argument("--out", required=True, help="manifest CSV to write")
    prepare.set_defaults(run=cmd_prepare)

    train = command("train", "Train a recipe; writes metrics.json, model.pt and history.csv.")
    _add_data_arguments(train, required=False)
    train.add_argument("--manifest", help="use this manifest (with its split) instead of --data-dir")
    train.add_argument("--recipe", default="baseline",
                       help="baseline, advanced, seed-baseline or seed-advanced")
    train.add_argument("--profile", choices=["smoke", "cpu", "full"], default=None,
                       help="full: the recipe as written (GPU); cpu: minutes on a laptop; "
                            "smoke: seconds (default: full with CUDA, else cpu)")
    train.add_argument("--output-dir", required=True)
    train.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    train.add_argument("--tracking", default=None,
                       help="SwanLab mode: local (default), offline, online or disabled")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUTPUT_DIR/checkpoints/last.pt")
    speed = train.add_argument_group(
        "speed", "all on by default; for several GPUs, launch with "
                 "`torchrun --nproc_per_node=N -m audiocls_utils train ...`")
    speed.add_argument("--cache-dir", default=None,
                       help="feature cache folder (default: $AUDIOCLS_CACHE, else "
                            "~/.cache/audiocls/features)")
    speed.add_argument("--no-cache", action="store_true",
                       help="compute log-Mels every run and keep them in RAM")
    speed.add_argument("--workers", type=int, default=None,
                       help="DataLoader worker processes (default: by CPU count)")
    speed.add_argument("--no-amp", action="store_true", help="no bf16/fp16 autocast on CUDA")
    speed.add_argument("--no-channels-last", action="store_true",
                       help="keep NCHW tensors on CUDA")
    speed.add_argument("--no-pin-memory", action="store_true",
                       help="no pinned host memory for CUDA copies")
    train.set_defaults(run=cmd_train)

    evaluate = command("evaluate", "Score a saved model on a dataset split (clip level).")
    evaluate.add_argument("--model", required=True)
    _add_data_arguments(evaluate)
    evaluate.add_argument("--subset", default="test", choices=["train", "val", "test", "all"])
    evaluate.add_argument("--out", default=None, help="JSON to write (default: beside the model)")
    evaluate.add_argument("--device", default=None)
    evaluate.set_defaults(run=cmd_evaluate)

    predict = command("predict", "Print the most likely labels of audio files of any length.")
    predict.add_argument("--model", required=True)
    predict.add_argument("files", nargs="+")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    predict.add_argument("--device", default=None)
    predict.set_defaults(run=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; expected user mistakes print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    if args.command == "train" and not (args.data_dir or args.manifest):
        print("audiocls train: error: give --data-dir or --manifest", file=sys.stderr)
        return 2
    try:
        args.run(args)
    except AudioclsError as error:
        print(f"audiocls {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiocls {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
