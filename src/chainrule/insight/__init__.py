"""Seeing what the gradients do: graph drawings (`graph`) and gradient flow through time (`flow`).

Built on the engine's and `nn`'s public names only; `import chainrule` does not load it (the first
`chainrule.insight` does).
"""
from .flow import GradientFlow, format_table, gradient_flow, plot, scale_recurrent_weights, singular_values
from .graph import GraphDrawing, GraphvizWarning, draw_graph, render

__all__ = ["GradientFlow", "GraphDrawing", "GraphvizWarning", "draw_graph", "format_table", "gradient_flow", "plot",
           "render", "scale_recurrent_weights", "singular_values"]
