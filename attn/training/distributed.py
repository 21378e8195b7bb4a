"""Multi-host initialisation: one JAX process per host, joined through a coordinator.

Every process runs the same program; `jax.distributed.initialize` connects process i of n to the
coordinator (process 0's host:port), after which `jax.devices()` lists the devices of all
processes and a `jax.jit` over a mesh of them runs SPMD across hosts (the multi-controller model
of JAX, Bradbury et al. 2018; GSPMD, Xu et al. 2021). Each process feeds its own rows of the
batch (`attn.training.sharding.shard_batch`).

The settings come from the arguments, else from the environment:

  ATTN_COORDINATOR_ADDRESS or JAX_COORDINATOR_ADDRESS   host:port of process 0
  ATTN_NUM_PROCESSES       or JAX_NUM_PROCESSES         n
  ATTN_PROCESS_ID          or JAX_PROCESS_ID            i in [0, n)
  ATTN_LOCAL_DEVICE_IDS                                 comma-separated local device ids

Without a coordinator address a run is single-process and nothing is initialised, unless
`auto_detect=True`, which lets JAX find the cluster itself (Cloud TPU pods, SLURM, Open MPI).
On CPU the processes talk through gloo collectives (`jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

import jax

logger = logging.getLogger(__name__)

_ENV = {
    "coordinator_address": ("ATTN_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("ATTN_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("ATTN_PROCESS_ID", "JAX_PROCESS_ID"),
    "local_device_ids": ("ATTN_LOCAL_DEVICE_IDS",),
}


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands among the processes of a run.

    Attributes:
      process_index: i, this process.
      process_count: n processes.
      local_device_count: devices attached to this process.
      device_count: devices of all processes.
      coordinator_address: host:port of process 0, or None for a single-process run.
    """

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int
    coordinator_address: str | None

    @property
    def is_primary(self) -> bool:
        """Whether this is process 0 (the one that logs and writes summaries)."""
        return self.process_index == 0


def _from_env(field: str, environ: Mapping[str, str]) -> str | None:
    for name in _ENV[field]:
        if environ.get(name):
            return environ[name]
    return None


def _as_int(value: int | str | None, argument: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{argument} must be an integer, got {value!r}") from None


def process_info(coordinator_address: str | None = None) -> ProcessInfo:
    """The `ProcessInfo` of the current process (after `initialize`, or single-process)."""
    return ProcessInfo(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        device_count=jax.device_count(),
        coordinator_address=coordinator_address,
    )


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    *,
    auto_detect: bool = False,
    cpu_collectives: str | None = "gloo",
    initialization_timeout: int = 300,
    environ: Mapping[str, str] | None = None,
) -> ProcessInfo:
    """Join the processes of a multi-host run (`jax.distributed.initialize`); call it first.

    Must run before any JAX computation in the process. Arguments left None are read from the
    environment (module docstring).

    Args:
      coordinator_address: "host:port" of process 0's coordinator service.
      num_processes: n, the number of processes.
      process_id: i in [0, n), this process.
      local_device_ids: the local devices this process uses (default: all).
      auto_detect: without an address, let JAX detect the cluster (TPU pods, SLURM, MPI) instead
        of running single-process.
      cpu_collectives: implementation of cross-process collectives on CPU ("gloo" or "mpi"),
        None to leave the setting alone.
      initialization_timeout: seconds to wait for all processes to join.
      environ: the environment to read (default `os.environ`).

    Returns:
      The `ProcessInfo` of this process.
    """
    environ = os.environ if environ is None else environ
    coordinator_address = coordinator_address or _from_env("coordinator_address", environ)
    num_processes = _as_int(
        num_processes if num_processes is not None else _from_env("num_processes", environ),
        "num_processes",
    )
    process_id = _as_int(
        process_id if process_id is not None else _from_env("process_id", environ), "process_id"
    )
    if local_device_ids is None and _from_env("local_device_ids", environ):
        text = _from_env("local_device_ids", environ)
        local_device_ids = [_as_int(part, "ATTN_LOCAL_DEVICE_IDS") for part in text.split(",")]
    if cpu_collectives is not None:
        if cpu_collectives not in ("gloo", "mpi"):
            raise ValueError(
                f"cpu_collectives must be 'gloo', 'mpi' or None, got {cpu_collectives!r}"
            )
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if coordinator_address is None and not auto_detect:
        logger.info("no coordinator address: single-process run")
        return process_info()
    if coordinator_address is not None:
        if ":" not in coordinator_address:
            raise ValueError(
                f"coordinator_address must be 'host:port', got {coordinator_address!r}"
            )
        if num_processes is None or process_id is None:
            raise ValueError(
                "with a coordinator_address, num_processes and process_id are needed too (or "
                f"ATTN_NUM_PROCESSES / ATTN_PROCESS_ID); got {num_processes=}, {process_id=}"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id must be in [0, num_processes); got {process_id=}, {num_processes=}"
            )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )
    info = process_info(coordinator_address)
    logger.info(
        "process %d of %d: %d local devices, %d in all",
        info.process_index,
        info.process_count,
        info.local_device_count,
        info.device_count,
    )
    return info
