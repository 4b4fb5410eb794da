"""Usage → Stripe Billing Meter Events, exactly once, surviving crashes and Stripe's faults."""
