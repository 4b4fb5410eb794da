"""tollway's ext_authz server, in Envoy's gRPC and HTTP modes: each check becomes a decision
in one Redis round trip."""

# The gRPC service authz serves, and the name its health status is reported under
# (tests/unit/test_responses.py checks it against Envoy's compiled descriptor).
AUTH_SERVICE = "envoy.service.auth.v3.Authorization"
