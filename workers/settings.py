"""Knobs of the prefork worker, from environment variables (``CAD2GLTF_WORKER_*``).

They belong to the worker process (how many warm children it keeps and when it recycles
them), not to a flow run, so they are settings of the process that runs
``prefect worker start --type cad2gltf-prefork`` rather than job variables of the pool.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEFAULT_PRELOAD", "GPU_PRELOAD", "GPU_WARMUP", "WorkerSettings"]

#: Modules imported once in the fork server, so that every child starts with them: the
#: engine, the flows, and what their tasks import lazily (measured: a conversion in a
#: process that imported only the flows spends 0.1-0.2 s importing on its first run).
DEFAULT_PRELOAD = (
    "prefect.flow_engine",
    "prefect.flows",
    "prefect.tasks",
    "prefect.deployments.steps",
    "flows.convert",
    "flows.pdf",
    "flows.maintenance",
    "flows.sweep",
    "numpy.ma",
    "ezdxf",
    "ezdxf.recover",
    "cv2",
    "shapely",
    "mapbox_earcut",
    "orjson",
    "fsspec",
    "s3fs",
    "psycopg2",
    "pymupdf",
    "cad2gltf.dxf.reader",
    "cad2gltf.dxf.semantics",
    "cad2gltf.geometry.polygons",
    "cad2gltf.geometry.boxes",
    "cad2gltf.gltf",
    "cad2gltf.preview",
    "tasks.storage",
)

#: The GPU pool's children (``CAD2GLTF_WORKER_STACK=gpu``) also hold torch and the symbol
#: detector. The detector is loaded by each child after the fork (:data:`GPU_WARMUP`):
#: CUDA must never be initialised in the fork server.
GPU_PRELOAD = (*DEFAULT_PRELOAD, "torch", "ultralytics", "cad2gltf.pdf", "cad2gltf.detect")
GPU_WARMUP = ("cad2gltf.detect:load_detector",)

class WorkerSettings(BaseSettings):
    """Prefork worker configuration. Every field can be set as ``CAD2GLTF_WORKER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CAD2GLTF_WORKER_", extra="ignore")

    children: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=256,
                          description="Warm child processes kept by the worker; also its "
                                      "default concurrency limit.")
    max_runs_per_child: int = Field(100, ge=1, le=1_000_000,
                                    description="A child is replaced after this many runs.")
    max_memory_mb: int = Field(2048, ge=64, le=1_048_576,
                               description="A child whose resident memory exceeds this "
                                           "after a run is replaced.")
    preload: Annotated[tuple[str, ...], NoDecode] = Field(DEFAULT_PRELOAD,
                                     description="Modules imported once in the fork server "
                                                 "(comma separated in the environment).")
    warmup: Annotated[tuple[str, ...], NoDecode] = Field((), description="module:function callables each child "
                                                    "runs once after it starts (e.g. loading "
                                                    "a detector on the GPU).")
    stack: str = Field("cpu", pattern="^(cpu|gpu)$",
                       description="Which stack the children hold when preload/warmup are not "
                                   "set: cpu (DXF, PDF without detector) or gpu (also torch "
                                   "and the symbol detector, loaded once per child).")
    start_method: str = Field("forkserver", pattern="^(forkserver|spawn)$",
                              description="How children start: forked from a warm fork "
                                          "server, or spawned fresh (slower, for debugging).")
    ready_timeout_seconds: float = Field(180.0, gt=0,
                                         description="Time allowed for a child to import the "
                                                     "stack and report ready.")
    wakeup_events: bool = Field(True, description="Wake up on the API's flow-run events "
                                                  "instead of waiting for the next poll.")
    poll_seconds: float = Field(5.0, ge=0.1, le=600,
                                description="Fallback polling interval for scheduled runs.")
    drain_timeout_seconds: float = Field(600.0, ge=0,
                                         description="On SIGTERM, how long in-flight runs may "
                                                     "take to finish before they are killed.")

    @model_validator(mode="after")
    def _stack_defaults(self) -> WorkerSettings:
        if self.stack == "gpu":
            if "preload" not in self.model_fields_set:
                self.preload = GPU_PRELOAD
            if "warmup" not in self.model_fields_set:
                self.warmup = GPU_WARMUP
        return self

    @field_validator("preload", "warmup", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value
