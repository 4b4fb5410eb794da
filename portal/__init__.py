"""The customer portal: pricing, sign-in by emailed link, and (to come) the dashboard."""
