"""Usage → Stripe Billing Meter Events. Not built yet: authz already counts usage per window."""
