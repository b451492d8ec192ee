"""Virtual machines: the inactivity auto-shutdown agent, VM status (GCP or this host) and containers (Docker)."""
