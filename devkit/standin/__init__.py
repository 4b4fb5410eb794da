"""A local stand-in for the Stripe API endpoints tollway calls, for tests and `make run`."""
