"""The module componentize-py builds: implements the ``migration`` world by calling
``upgrade()`` and ``downgrade()`` of the revision's ``migration.py``.

An exception becomes the world's error string (type, message, and where it was raised), so
wasmig reports it and rolls the step back; it never traps the component.
"""

import traceback

import wit_world
from componentize_py_types import Err

import migration


def _run(name):
    function = getattr(migration, name, None)
    if not callable(function):
        raise Err(f"migration.py defines no function `{name}()`")
    try:
        function()
    except Exception as e:  # noqa: BLE001 - every failure must reach wasmig as a message
        frames = traceback.extract_tb(e.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        raise Err(f"{type(e).__name__}: {e}{where}") from None


class WitWorld(wit_world.WitWorld):
    def upgrade(self) -> None:
        _run("upgrade")

    def downgrade(self) -> None:
        _run("downgrade")
