"""`python -m audiocls_utils` runs the `audiocls` command (torchrun needs a module to start)."""

from .engine.commands.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
