"""``python -m api``: the same as ``tollway api serve`` (see api/cli.py)."""

import argparse
import sys

from api import cli

parser = argparse.ArgumentParser(prog="python -m api", description=cli.__doc__)
cli.add_serve_flags(parser)
sys.exit(cli.run(parser.parse_args()))
