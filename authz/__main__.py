"""``python -m authz``: the same command as ``tollway authz`` (see authz/cli.py)."""

import sys

from authz import cli
from tollway.process import standalone

sys.exit(standalone(cli, "authz"))
