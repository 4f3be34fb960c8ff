# shellcheck shell=sh
# $1: 0 on erase, 1 or more on upgrade.
if [ "$1" -ge 1 ]; then
    # Upgrade: a running agent moves to the new binary; a stopped one stays stopped.
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl try-restart container-manager-agent.service >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ]; then
    # Erase: rpm has removed the unmodified config (a modified one is kept as .rpmsave). The
    # agent owns no files, so its user can go; the docker group stays for Docker.
    rm -f /etc/container-manager/keep-awake
    rmdir /etc/container-manager 2>/dev/null || :
    if getent passwd container-manager >/dev/null; then userdel container-manager || :; fi
    if getent group container-manager >/dev/null; then groupdel container-manager || :; fi
fi
