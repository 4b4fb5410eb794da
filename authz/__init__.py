"""tollway's ext_authz gRPC server: Envoy's Check calls become decisions in one Redis round trip."""
