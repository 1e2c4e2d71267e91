"""Lifelong-editing evaluation: metrics, editors and the sequential protocol."""
