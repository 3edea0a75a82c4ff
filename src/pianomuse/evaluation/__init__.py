"""Scoring models and their music: likelihood on data, and statistics of continuations."""
