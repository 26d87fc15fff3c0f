"""``python -m cad2gltf`` is the ``cad2gltf`` command."""

from __future__ import annotations

import sys

from cad2gltf.cli import main

sys.exit(main())
