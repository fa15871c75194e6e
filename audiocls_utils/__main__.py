"""Run the command line with `python -m audiocls_utils`."""

import sys

from .cli import main

sys.exit(main())
