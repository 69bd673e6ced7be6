"""Reactor backends: one module each."""
