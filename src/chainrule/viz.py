"""The graph drawings' former place: `chainrule.insight.graph` holds them now (this name keeps working)."""
from .insight.graph import INSTALL_HINT, GraphvizWarning, draw_graph, render

__all__ = ["INSTALL_HINT", "GraphvizWarning", "draw_graph", "render"]
