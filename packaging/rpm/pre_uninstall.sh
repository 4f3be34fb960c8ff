# shellcheck shell=sh
# $1: 0 on erase, 1 or more on upgrade.
if [ "$1" -eq 0 ]; then
    # Stopping runs the agent's graceful drain (TimeoutStopSec in the unit).
    systemctl --no-reload disable --now container-manager-agent.service >/dev/null 2>&1 || :
    # Not stopped: stopping the save unit would stop the game (it is what it does at shutdown).
    systemctl --no-reload disable container-manager-save.service >/dev/null 2>&1 || :
fi
