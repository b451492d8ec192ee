"""Secrets: Google Cloud Secret Manager or a local encrypted store, admin-only and audited.

Entry points: `service.SecretsService` (console, CLI, API), `system.get_or_create` (secrets the platform itself
needs) and `references.resolve_references` (`secret:NAME[#VERSION]` in settings).
"""
