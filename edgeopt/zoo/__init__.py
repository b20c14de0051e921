"""Embedded default models: factories referenced as ``edgeopt.zoo.<module>:<factory>``.

Importing this package is light; each model module imports torch itself.
"""
