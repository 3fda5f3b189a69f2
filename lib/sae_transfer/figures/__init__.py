"""Figures, one module per chapter (``figures.residuals``, ...), helpers in ``figures.common``. Every function
takes plain data from a study module and returns a matplotlib Figure; nothing here measures."""

from . import common  # noqa: F401  (sets the theme)
