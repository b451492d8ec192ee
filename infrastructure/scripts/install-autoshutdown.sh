#!/usr/bin/env bash
# Install the auto-shutdown agent as a systemd service on a host that runs the platform from a Python venv.
# (Container hosts get the same agent from startup.sh as a docker-run unit.)
#
#   install-autoshutdown.sh [--venv DIR] [--action dry-run|command|gcp] [--no-start]
#
# --venv     a venv with stream-platform installed (default: /opt/stream-platform/.venv; created from this
#            checkout when missing)
# --action   written to the env file on first install only (default: dry-run, so a new host records first)
# --no-start install and enable, but do not start now
# Environment: UNIT_DIR (default /etc/systemd/system), CONF_DIR (default /etc/stream-platform) and
# SYSTEMCTL (default systemctl) exist so the script can be exercised without touching the host.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(cd "${SCRIPT_DIR}/../.." && pwd)
readonly SCRIPT_DIR SOURCE_DIR
readonly UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
readonly CONF_DIR=${CONF_DIR:-/etc/stream-platform}
readonly SYSTEMCTL=${SYSTEMCTL:-systemctl}
readonly UNIT=stream-platform-autoshutdown.service

venv=/opt/stream-platform/.venv
action=dry-run
start=yes

die() { echo "install-autoshutdown: $*" >&2; exit 2; }

while (($#)); do
  case "$1" in
    --venv) venv=${2:?--venv needs a directory}; shift 2 ;;
    --action) action=${2:?--action needs a value}; shift 2 ;;
    --no-start) start=no; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "${action}" in
  dry-run | command | gcp) ;;
  *) die "--action must be dry-run, command or gcp, not ${action}" ;;
esac

if [[ ! -x "${venv}/bin/stream-platform" ]]; then
  echo "creating ${venv} from ${SOURCE_DIR}"
  python3 -m venv "${venv}"
  "${venv}/bin/pip" install -q "${SOURCE_DIR}"
fi
"${venv}/bin/python" -c "import backend.vm.agent" || die "${venv} does not hold a working stream-platform install"

install -d -m 0700 "${CONF_DIR}"
env_file=${CONF_DIR}/autoshutdown.env
if [[ ! -f "${env_file}" ]]; then
  umask 077
  {
    echo "# auto-shutdown settings (see secrets.env.example and docs/autoshutdown.md)"
    echo "AUTOSHUTDOWN_ACTION=${action}"
  } >"${env_file}"
  echo "wrote ${env_file} (action ${action})"
else
  echo "kept ${env_file}"
fi

install -d "${UNIT_DIR}"
sed -e "s|@VENV@|${venv}|g" -e "s|@CONF_DIR@|${CONF_DIR}|g" "${SCRIPT_DIR}/${UNIT}" >"${UNIT_DIR}/${UNIT}"
chmod 0644 "${UNIT_DIR}/${UNIT}"
"${SYSTEMCTL}" daemon-reload
"${SYSTEMCTL}" enable "${UNIT}"
if [[ "${start}" == yes ]]; then
  "${SYSTEMCTL}" restart "${UNIT}"
  echo "started ${UNIT}: follow it with journalctl -u ${UNIT} -f"
else
  echo "installed ${UNIT} (not started)"
fi
