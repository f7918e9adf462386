"""Old name of :mod:`ferkeras.inference` (video and photo inference), kept so that existing scripts keep working."""

from ferkeras.inference import *  # noqa: F401,F403  (every public name, the same objects)
from ferkeras.inference import __all__  # noqa: F401
