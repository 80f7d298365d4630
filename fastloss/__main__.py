"""``python -m fastloss``: the command line (see :mod:`fastloss.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
