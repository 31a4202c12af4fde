"""Representations of an analysis: camelCase JSON (the wire shape), a text summary, a plot."""
