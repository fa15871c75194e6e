"""The engine: what runs the course's code at scale, kept apart from what a learner reads.

- `cache`: log-Mels computed once and kept on disk (memory-mapped);
- `runner`: `run_experiment`, the chapters' training loop plus checkpoints, resume, AMP, DDP
  and tracking (what `audiocls train` runs);
- `distributed`, `tracking`: several GPUs (DDP under torchrun); SwanLab that never stops training;
- `cli`, `download`, `export`, `dashboard`: the `audiocls` command and what it calls;
- `synth`: the built-in synthetic dataset; `notebooks`, `demo`: `make demo` and `make demo-cli`.

The engine imports the core (`audiocls_utils.*`); the core never imports the engine.
"""
