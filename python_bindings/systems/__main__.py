"""``python -m vkbands.systems > docs/SYSTEMS.md``: the systems' parameter tables, from the specs."""
import sys

from . import markdown

sys.stdout.write(markdown())
