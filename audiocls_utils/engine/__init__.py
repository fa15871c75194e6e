"""The engine: what runs the course's code at scale, kept apart from what a learner reads.

One folder per job, each importing only the core and the ones before it:

- `synth`: the built-in synthetic dataset;
- `experiment/`: `runner.run_experiment`, the chapters' training loop plus the feature `cache`,
  checkpoints and resume in a `run_folder`, AMP, DDP (`distributed`), `tracking` that never
  stops training, and the reject threshold calibrated after training (`rejection`);
- `commands/`: the `audiocls` command (`cli`) and what only it calls: `download`, `export`,
  `dashboard`, `app`.
"""
