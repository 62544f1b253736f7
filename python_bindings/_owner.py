"""Owner: a Python-side object that holds device objects it created (arrays, images, recorders) and
closes them, newest first, when it closes. The one lifetime protocol lives in ``vkbands.engine``
(``engine/resource.py``); this module only re-exports it for the layers above the engine."""
from vkbands.engine.resource import Owner

__all__ = ["Owner"]
