#!/usr/bin/env bash
# GCE startup script for a Stream Platform GPU VM. Idempotent: safe on every boot.
#  1. checks the NVIDIA driver          4. fetches runtime secrets from Secret Manager into a root-only env file
#  2. installs Docker + NVIDIA toolkit  5. installs and starts systemd units for the collector and the
#  3. pulls the platform image             auto-shutdown agent
# A step that cannot finish is logged and the rest still runs: the auto-shutdown agent is installed on every boot.
# Environment: METADATA_URL, SECRET_MANAGER_URL, CONF_DIR and UNIT_DIR exist so the script can be exercised
# without a VM (tests/test_deploy.py); on a VM they keep their defaults.
set -euo pipefail

readonly METADATA=${METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}
readonly SECRET_MANAGER=${SECRET_MANAGER_URL:-https://secretmanager.googleapis.com/v1}
readonly CONF_DIR=${CONF_DIR:-/etc/stream-platform}
readonly ENV_FILE=${CONF_DIR}/secrets.env
readonly UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}

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
  local body
  body=$(metadata "instance/service-accounts/default/token") || return 1
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])' <<<"${body}"
}

secret_value() {
  local project=$1 name=$2 token=$3 body
  body=$(curl -fsS -H "Authorization: Bearer ${token}" \
    "${SECRET_MANAGER}/projects/${project}/secrets/${name}/versions/latest:access") || return 1
  python3 -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["payload"]["data"]).decode())' \
    <<<"${body}"
}

# The secrets Terraform created, named in the `platform-secret-ids` metadata: PREFIX<id> becomes ID=value (upper
# case, '-' → '_') in a root-only file. Only these ids are read: the service account may access each of them,
# but it may not list secrets.
fetch_secrets() {
  local project prefix ids token id value tmp key
  project=$(metadata "project/project-id") || return 1
  prefix=$(metadata "instance/attributes/platform-secret-prefix") || return 1
  ids=$(metadata "instance/attributes/platform-secret-ids") || return 1
  token=$(access_token) || return 1
  install -d -m 0700 "${CONF_DIR}" || return 1
  tmp=$(mktemp "${CONF_DIR}/.secrets.XXXXXX") || return 1
  chmod 0600 "${tmp}"
  for id in ${ids//,/ }; do
    if value=$(secret_value "${project}" "${prefix}${id}" "${token}"); then
      key=${id//-/_}
      printf '%s=%s\n' "${key^^}" "${value}" >>"${tmp}"
    else
      log "secret ${prefix}${id} has no enabled version or cannot be read: skipped"
    fi
  done
  mv -f "${tmp}" "${ENV_FILE}" || return 1
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
  install -d "${UNIT_DIR}"
  if [[ ! -f "${unit}" ]] || [[ "$(cat "${unit}")" != "${content}" ]]; then
    printf '%s' "${content}" >"${unit}"
    systemctl daemon-reload
  fi
  systemctl enable "${name}.service" >/dev/null
  systemctl restart "${name}.service"
}

main() {
  # Both containers share the VM's network and so its hostname: the collector reports the GPUs under the name
  # the agent looks its own telemetry up by.
  local image gpu=gpu agent_args="--network host --pid host -v /var/run/utmp:/var/run/utmp:ro"
  image=$(metadata "instance/attributes/platform-image")
  check_driver || gpu=none
  install_runtime "${gpu}"
  log "pulling ${image}"
  docker pull -q "${image}" || log "pulling ${image} failed: the units start with the image already on disk"
  if ! fetch_secrets; then
    log "could not read the runtime secrets: the units keep the previous ${ENV_FILE}"
    install -d -m 0700 "${CONF_DIR}"
    [[ -f "${ENV_FILE}" ]] || install -m 0600 /dev/null "${ENV_FILE}"
  fi
  if [[ "${gpu}" == gpu ]]; then
    write_unit stream-platform-collector "Stream Platform NVML collector" "--gpus all --network host" \
      "pipeline produce --source nvml --interval 10" "${image}"
    agent_args+=" --gpus all"
  fi
  write_unit stream-platform-autoshutdown "Stream Platform auto-shutdown agent" "${agent_args}" \
    "autoshutdown run --action gcp" "${image}"
  log "startup complete"
}

main "$@"
