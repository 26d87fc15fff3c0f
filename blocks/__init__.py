"""Prefect blocks and settings: credentials, connections and non-secret knobs (config).

Imports only downwards (``cad2gltf``); never from ``tasks`` or ``flows``.
"""
