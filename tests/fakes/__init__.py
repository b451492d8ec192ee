"""Wire-level fakes of external services (GCE, Docker Engine, Secret Manager) for the official clients."""
