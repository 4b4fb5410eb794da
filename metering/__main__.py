"""``python -m metering``: the same command as ``tollway metering`` (see metering/cli.py)."""

import sys

from metering import cli
from tollway.process import standalone

sys.exit(standalone(cli, "metering"))
