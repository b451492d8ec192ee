#!/usr/bin/env bash
# tansu listening on 9092 and advertising the PLAINTEXT address of KAFKA_ADVERTISED_LISTENERS (as Kafka does).
set -euo pipefail
advertised=${KAFKA_ADVERTISED_LISTENERS:-PLAINTEXT://localhost:9092}
advertised=${advertised#*://}
exec tansu broker --listener-url tcp://0.0.0.0:9092 --advertised-listener-url "tcp://${advertised%%,*}" \
  --storage-engine memory://tansu/
