"""The ``tollway`` command: the dispatcher and the operator's commands (keys, tiers, stripe,
usage, reconcile, health). Services and the dev kit add their own through ``register``/``run``."""
