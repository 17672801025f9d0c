"""The msst startup hook under its old name; it now lives in `msst_integration.hook`.

Kept because a bsmamba2_plugin_msst.pth written by an older install says
`import bsmamba2_plugin._msst_hook`. It runs at every Python start, so it stays silent
(no DeprecationWarning) and imports only the hook itself.
"""

from .msst_integration.hook import MsstPatchFinder, register

__all__ = ["MsstPatchFinder", "register"]
