"""The module componentize-py builds: implements the ``migration`` world by calling
``upgrade()`` and ``downgrade()`` of the revision's ``migration.py``.

An exception becomes the world's error string (type, message, and where it was raised), so
wasmig reports it and rolls the step back; it never traps the component.
"""

import wit_world
from componentize_py_types import Err

import migration


def _run(name):
    function = getattr(migration, name, None)
    if not callable(function):
        raise Err(f"migration.py defines no function `{name}()`")
    try:
        function()
    except BaseException as e:  # noqa: BLE001 - every failure (`sys.exit` too) must reach wasmig as a message
        raise Err(_message(e)) from None


def _message(e):
    """The error string for ``e``: its type, message and where, as text the host takes (a
    lone surrogate becomes U+FFFD), even when ``str(e)`` itself raises."""
    try:
        text = str(e)
    except BaseException:  # noqa: BLE001 - a broken __str__ must not trap the component
        text = "(its message could not be made)"
    message = f"{type(e).__name__}: {text}{_where(e)}"
    return message.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _where(e):
    """` (at migration.py:12)`: the innermost frame of the migration's own code.

    Read from the traceback objects, not with the `traceback` module: that one opens the
    source files, and the sandbox has no file system (with `--stub-wasi` it traps).
    """
    where = ""
    tb = e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.endswith("/wasmig/__init__.py") or filename.endswith("wasmig_entry.py")):
            where = f" (at {filename.rsplit('/', 1)[-1]}:{tb.tb_lineno})"
        tb = tb.tb_next
    return where


class WitWorld(wit_world.WitWorld):
    def upgrade(self) -> None:
        _run("upgrade")

    def downgrade(self) -> None:
        _run("downgrade")
