"""Veil: an outbound proxy that decides what an image reveals before it reaches an AI service."""

__version__ = "0.1.0"
