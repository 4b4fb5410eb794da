"""The management API: the operator's own backend creates, verifies, limits and audits keys."""
