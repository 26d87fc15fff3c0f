"""Thin Prefect tasks and the I/O they need: object storage, the job ledger, callbacks.

Tasks load and store through blocks, call the pure ``cad2gltf`` core and pass keys,
hashes and small metadata between each other, never file bytes or parsed documents.
"""
