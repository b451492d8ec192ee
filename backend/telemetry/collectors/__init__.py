"""Sources of telemetry: NVML, dcgm-exporter scrapes, DCGM CSV replay and simulated token usage.

Each collector only turns its source into `backend.telemetry.messages` structs; `backend.telemetry.producer`
puts them on Kafka.
"""
