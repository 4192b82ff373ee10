"""``python -m conformance`` runs the command line."""

import sys

if __name__ == "__main__":  # guarded: worker processes (multiprocessing spawn) import this module again
    from .cli import main

    sys.exit(main())
