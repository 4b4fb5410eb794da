"""The local stack: ``tollway dev`` and the end-to-end tests start the same processes."""
