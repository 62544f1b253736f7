"""Matplotlib without global state: the pyplot subset vkbands' plots use, on bare ``Figure`` s.

``import matplotlib.pyplot`` after ``matplotlib.use("Agg")`` would switch the backend of the whole
process: in a notebook, the user's inline plots would stop showing and their open figures close. Plots
made here never touch pyplot: a ``Figure`` is created directly and saved with the Agg canvas
(``Figure.savefig``), so vkbands can draw inside any program whatever backend it uses.

``plt = _plotting.plt()`` then ``fig, ax = plt.subplots(...)``, ``plt.cm.viridis(...)``,
``plt.get_cmap(name, n)``, ``plt.close(fig)`` (a no-op kept for symmetry) as with pyplot.
"""
from __future__ import annotations

__all__ = ["plt"]


class _Pyplot:
    """The few pyplot functions used by vkbands, stateless."""

    def __init__(self):
        import matplotlib
        import matplotlib.cm
        from matplotlib.figure import Figure
        self._matplotlib, self._Figure = matplotlib, Figure
        self.cm = matplotlib.cm

    _FIGURE_KWARGS = ("constrained_layout", "layout", "facecolor", "edgecolor", "frameon", "tight_layout")

    def subplots(self, nrows=1, ncols=1, *, figsize=None, dpi=None, **kwargs):
        """``(Figure, axes)`` as ``pyplot.subplots``: figure options go to the Figure, the rest to
        ``Figure.subplots`` (sharex, squeeze, subplot_kw, gridspec_kw...)."""
        fig_kw = {k: kwargs.pop(k) for k in self._FIGURE_KWARGS if k in kwargs}
        fig = self._Figure(figsize=figsize, dpi=dpi, **fig_kw)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    def get_cmap(self, name, lut=None):
        cmap = self._matplotlib.colormaps[name]
        return cmap.resampled(lut) if lut is not None else cmap

    def close(self, fig):
        """Nothing to release: a bare Figure is not registered with pyplot; dropped, it is collected."""


_instance = None


def plt() -> _Pyplot:
    global _instance
    if _instance is None:
        _instance = _Pyplot()
    return _instance
