"""The Kafka adapter (confluent-kafka): works against Apache Kafka and the tansu broker alike."""
