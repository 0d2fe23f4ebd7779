"""Figures and notebooks: plotting, the notebooks' setup, the figure runs, animations, the
explorer, the forecast view, the site."""
