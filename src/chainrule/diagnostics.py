"""Gradient flow through time's former place: `chainrule.insight.flow` holds it now (this name keeps working)."""
from .insight.flow import (SATURATED_SIGMOID, SATURATED_TANH, GradientFlow, format_table, gradient_flow, plot,
                           scale_recurrent_weights, singular_values)

__all__ = ["SATURATED_SIGMOID", "SATURATED_TANH", "GradientFlow", "format_table", "gradient_flow", "plot",
           "scale_recurrent_weights", "singular_values"]
