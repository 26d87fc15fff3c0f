"""Prefect worker types of cad2gltf.

Importing this package registers the ``cad2gltf-prefork`` worker type with Prefect
(Prefect imports it through the ``prefect.collections`` entry point, see
``tools/prefect-plugin``), so that ``prefect work-pool create --type cad2gltf-prefork``
and ``prefect worker start --type cad2gltf-prefork`` find it.
"""

from __future__ import annotations

from workers.prefork import WORKER_TYPE, PreforkWorker

__all__ = ["WORKER_TYPE", "PreforkWorker"]
