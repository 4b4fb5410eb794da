"""tollway's shared kernel: settings, tiers, key format, Redis schema and scripts, the CLI."""

__version__ = "0.1.0"
