"""``python -m devkit.standin``: the same command as ``tollway stripe-standin``."""

import sys

from devkit.standin import cli
from tollway.process import standalone

sys.exit(standalone(cli, "stripe-standin"))
