# shellcheck shell=sh
# $1: 1 on first install, 2 or more on upgrade.
# The service user and the docker group, from the shipped sysusers.d file.
systemd-sysusers /usr/lib/sysusers.d/container-manager-agent.conf
if [ "$1" -eq 1 ]; then
    # Enabled, not started: the shipped config is the documented example; the installer
    # (install-agent.sh) writes the real one and starts the service.
    systemctl --no-reload enable container-manager-agent.service >/dev/null 2>&1 || :
    systemctl --no-reload enable container-manager-save.service >/dev/null 2>&1 || :
fi
