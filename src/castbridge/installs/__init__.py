"""Installing and uninstalling the app: OAuth, agency location tokens, INSTALL/UNINSTALL."""

from castbridge.installs.lifecycle import EventOutcome, handle_event
from castbridge.installs.oauth import InstallError, InstallOutcome, complete_install, start_install

__all__ = [
    "EventOutcome",
    "InstallError",
    "InstallOutcome",
    "complete_install",
    "handle_event",
    "start_install",
]
