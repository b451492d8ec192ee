#!/usr/bin/env bash
# Healthcheck stand-in for Kafka's kafka-broker-api-versions.sh: the broker answers a metadata request.
set -euo pipefail
server=localhost:9092
while (($#)); do
  case "$1" in
    --bootstrap-server) server=$2; shift 2 ;;
    *) shift ;;
  esac
done
tansu topic list --broker "tcp://${server}" >/dev/null
