"""Running experiments: the runner and what it keeps on disk (cache, run folders), DDP,
tracking and the reject threshold; `audiocls train` and the notebooks' session both call it."""
