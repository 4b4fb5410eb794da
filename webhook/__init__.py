"""The Stripe webhook service: signed events become key state; Checkout issues keys."""
