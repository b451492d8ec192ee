"""GPU health: DCGM-grade rules over recent telemetry, alerts with flap suppression, webhook notifications and a
failure-risk model. Console pages and the API call `backend.health.service`."""
