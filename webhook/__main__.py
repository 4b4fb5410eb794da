"""``python -m webhook``: the same command as ``tollway webhook`` (see webhook/cli.py)."""

import sys

from tollway.process import standalone
from webhook import cli

sys.exit(standalone(cli, "webhook"))
