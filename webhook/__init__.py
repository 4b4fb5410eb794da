"""The Stripe webhook service. Not built yet: the key state it will drive already exists."""
