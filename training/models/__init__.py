"""Classifier models with an injected norm layer."""
