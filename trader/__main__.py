"""`python -m trader` runs the command line."""

import sys

from trader.cli import main

sys.exit(main())
