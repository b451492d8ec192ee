#!/usr/bin/env bash
# GCE startup script for a Stream Platform GPU VM. Idempotent: safe on every boot.
#  1. checks the NVIDIA driver          4. fetches runtime secrets from Secret Manager into a root-only env file
#  2. installs Docker + NVIDIA toolkit  5. installs and starts systemd units for the collector and the
#  3. pulls the platform image             auto-shutdown agent
set -euo pipefail

readonly METADATA=http://metadata.google.internal/computeMetadata/v1
readonly CONF_DIR=/etc/stream-platform
readonly ENV_FILE=${CONF_DIR}/secrets.env
readonly UNIT_DIR=/etc/systemd/system

log() { echo "stream-platform-startup: $*" | systemd-cat -t stream-platform-startup -p info 2>/dev/null || echo "$*"; }

metadata() {
  curl -fsS -H "Metadata-Flavor: Google" "${METADATA}/$1"
}

check_driver() {
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    log "NVIDIA driver not working: the collector will report it; use an image with the driver (Deep Learning VM)"
    return 1
  fi
  log "NVIDIA driver OK: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
}

install_runtime() {
  if ! command -v docker >/dev/null 2>&1; then
    log "installing Docker"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io
  fi
  if [[ "${1}" == gpu ]] && ! command -v nvidia-ctk >/dev/null 2>&1; then
    log "installing the NVIDIA container toolkit"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nvidia-container-toolkit
    nvidia-ctk runtime configure --runtime=docker
  fi
  systemctl enable --now docker
}

access_token() {
  metadata "instance/service-accounts/default/token" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# Every secret named PREFIX<name> becomes NAME=value (upper case, '-' → '_') in a root-only file.
fetch_secrets() {
  local project prefix token secrets name value tmp key
  project=$(metadata "project/project-id")
  prefix=$(metadata "instance/attributes/platform-secret-prefix")
  token=$(access_token)
  secrets=$(curl -fsS -H "Authorization: Bearer ${token}" \
    "https://secretmanager.googleapis.com/v1/projects/${project}/secrets?filter=name:${prefix}" |
    python3 -c 'import json, sys; [print(s["name"].rsplit("/", 1)[1]) for s in json.load(sys.stdin).get("secrets", [])]')
  install -d -m 0700 "${CONF_DIR}"
  tmp=$(mktemp "${CONF_DIR}/.secrets.XXXXXX")
  chmod 0600 "${tmp}"
  for name in ${secrets}; do
    if value=$(curl -fsS -H "Authorization: Bearer ${token}" \
      "https://secretmanager.googleapis.com/v1/projects/${project}/secrets/${name}/versions/latest:access" |
      python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode())'); then
      key=${name#"${prefix}"}
      key=${key//-/_}
      printf '%s=%s\n' "${key^^}" "${value}" >>"${tmp}"
    else
      log "secret ${name} has no enabled version yet: skipped"
    fi
  done
  mv -f "${tmp}" "${ENV_FILE}"
  log "runtime secrets written to ${ENV_FILE} (names only are logged)"
}

write_unit() {
  local name=$1 description=$2 docker_args=$3 command=$4 image=$5
  local unit=${UNIT_DIR}/${name}.service content
  content="[Unit]
Description=${description}
After=docker.service network-online.target
Requires=docker.service

[Service]
Restart=always
RestartSec=10
ExecStartPre=-/usr/bin/docker rm -f ${name}
ExecStart=/usr/bin/docker run --rm --name ${name} --env-file ${ENV_FILE} ${docker_args} ${image} ${command}
ExecStop=/usr/bin/docker stop -t 30 ${name}

[Install]
WantedBy=multi-user.target
"
  if [[ ! -f "${unit}" ]] || [[ "$(cat "${unit}")" != "${content}" ]]; then
    printf '%s' "${content}" >"${unit}"
    systemctl daemon-reload
  fi
  systemctl enable "${name}.service" >/dev/null
  systemctl restart "${name}.service"
}

main() {
  local image gpu=gpu agent_args="--network host --pid host -v /var/run/utmp:/var/run/utmp:ro"
  image=$(metadata "instance/attributes/platform-image")
  check_driver || gpu=none
  install_runtime "${gpu}"
  log "pulling ${image}"
  docker pull -q "${image}"
  fetch_secrets
  if [[ "${gpu}" == gpu ]]; then
    write_unit stream-platform-collector "Stream Platform NVML collector" "--gpus all" \
      "pipeline produce --source nvml --interval 10" "${image}"
    agent_args+=" --gpus all"
  fi
  write_unit stream-platform-autoshutdown "Stream Platform auto-shutdown agent" "${agent_args}" \
    "autoshutdown run --action gcp" "${image}"
  log "startup complete"
}

main "$@"
