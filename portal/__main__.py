"""``python -m portal``: the same command as ``tollway portal`` (see portal/cli.py)."""

import sys

from portal import cli
from tollway.process import standalone

sys.exit(standalone(cli, "portal"))
