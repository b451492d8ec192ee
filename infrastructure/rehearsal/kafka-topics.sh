#!/usr/bin/env bash
# The subset of Kafka's kafka-topics.sh that the compose file's kafka-init job uses, on tansu:
#   --bootstrap-server HOST:PORT --create --if-not-exists --topic NAME --partitions N --replication-factor N
set -euo pipefail
server=localhost:9092 topic='' partitions=1
while (($#)); do
  case "$1" in
    --bootstrap-server) server=$2; shift 2 ;;
    --topic) topic=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    --replication-factor) shift 2 ;;
    --create | --if-not-exists) shift ;;
    *) echo "kafka-topics.sh (tansu stand-in): unsupported argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "${topic}" ]] || { echo "kafka-topics.sh (tansu stand-in): --topic is required" >&2; exit 2; }
if tansu topic list --broker "tcp://${server}" | grep -qF "\"name\":\"${topic}\""; then
  exit 0
fi
tansu topic create "${topic}" --broker "tcp://${server}" --partitions "${partitions}" >/dev/null
