"""The customer portal: pricing, Checkout and free sign-up, the key shown once, sign-in by
emailed link, the dashboard (usage, keys, usage alerts) and Stripe's Customer Portal."""
