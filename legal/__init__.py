"""Versioned legal documents (terms, privacy, DPA) and the model licence catalogue, with their loaders:
pure data and rules, importing at most ``policies``.
"""
