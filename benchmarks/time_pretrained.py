"""Time chapter 05's pretrained models at their real size on this machine's device, no weights needed.

The models are built from their default configurations (the checkpoints' architectures: AST 86 M
parameters, CLAP 154 M, DistilHuBERT 24 M) with random weights: the computation, and so the time,
is the same as with the real weights. It prints, per model, seconds per 10 s window for
`embed_windows` (the processor included), and for AST one fine-tuning step of
`PretrainedClassifier` (forward, backward, AdamW) per batch; then what those rates mean for GTZAN
(1,000 clips of 30 s, 3 windows each; 700 training clips in the course's 70/10/20 split, one
10.24 s crop each per epoch).

    python benchmarks/time_pretrained.py                 # the best device: CUDA, MPS, else CPU
    python benchmarks/time_pretrained.py --device cpu --windows 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from audiocls_utils.devices import pick_device
from audiocls_utils.pretrained import PretrainedClassifier, byte_tokenizer, embed_windows, model_classes


def build(kind: str, device: torch.device):  # noqa: ANN201 - a model and its processor
    """Return a real-size model of `kind` with random weights, and its default processor."""
    import transformers as tf

    config = {"ast": tf.ASTConfig(), "clap": tf.ClapConfig(),
              "hubert": tf.HubertConfig(num_hidden_layers=2)}[kind]  # DistilHuBERT: 2 layers
    model_class, processor_class = model_classes(kind)
    if kind == "clap":  # the tokenizer is not timed: any will do
        tokenizer = byte_tokenizer(Path(tempfile.mkdtemp(prefix="audiocls-tokenizer-")))
        processor = processor_class(feature_extractor=tf.ClapFeatureExtractor(truncation="rand_trunc"),
                                    tokenizer=tokenizer)
    else:
        processor = processor_class()
    return model_class(config).eval().to(device), processor


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_embeddings(kind: str, device: torch.device, windows: int, batch: int) -> float:
    """Return seconds per 10 s window for `embed_windows` on `device` (after one warm-up batch)."""
    model, processor = build(kind, device)
    rate = getattr(processor, "feature_extractor", processor).sampling_rate
    rng = np.random.default_rng(0)
    audio = [rng.normal(0, 0.1, 10 * rate).astype(np.float32) for _ in range(batch)]
    embed_windows(kind, model, processor, audio)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(max(1, windows // batch)):
        embed_windows(kind, model, processor, audio)
    synchronize(device)
    return (time.perf_counter() - started) / (max(1, windows // batch) * batch)


def time_fine_tuning(device: torch.device, steps: int, batch: int, amp: bool) -> float:
    """Return seconds per training step of AST with a new head, on batches of AST inputs."""
    model, _ = build("ast", device)
    classifier = PretrainedClassifier(model, num_classes=10).to(device).train()
    optimizer = torch.optim.AdamW([{"params": classifier.encoder.parameters(), "lr": 1e-5},
                                   {"params": classifier.head.parameters(), "lr": 1e-3}])
    segments = torch.randn(batch, 128, 1024, device=device)  # (batch, n_mels, frames)
    targets = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(classifier(segments), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def main() -> None:
    """Time every model on the chosen device and print the rates and what they mean for GTZAN."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best there is)")
    parser.add_argument("--windows", type=int, default=64, help="10 s windows embedded per model")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="AST fine-tuning steps timed")
    args = parser.parse_args()
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"device {name}; torch {torch.__version__}; random weights at the checkpoints' real size")
    for kind in ("ast", "clap", "hubert"):
        seconds = time_embeddings(kind, device, args.windows, args.batch)
        print(f"{kind:>6} embeddings: {seconds * 1000:.1f} ms per 10 s window (batch {args.batch}); "
              f"GTZAN's 3,000 windows: {3000 * seconds / 60:.1f} min")
    amps = (False, True) if device.type == "cuda" else (False,)
    for amp in amps:
        seconds = time_fine_tuning(device, args.steps, args.batch, amp)
        print(f"AST fine-tuning ({'bf16 autocast' if amp else 'float32'}): {seconds:.3f} s per step of "
              f"{args.batch}; one epoch of GTZAN's 700 training clips: {700 / args.batch * seconds:.0f} s")


if __name__ == "__main__":
    main()
