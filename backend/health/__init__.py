"""GPU health: DCGM-grade rules over recent telemetry, alerts with flap suppression, webhook notifications and a
failure-risk model. The console and the CLI call `service.py`; the evaluation loop is `evaluator.py`."""
