"""`attn.training.distributed`: two processes on this machine joined over loopback with gloo CPU
collectives compute a psum and a jitted global reduction and share one checkpoint; settings come
from arguments or the environment, and bad settings are clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from attn.training import distributed

SCRIPT = Path(__file__).with_name("two_process_check.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_reduce_and_checkpoint_over_both(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), address, str(i), str(tmp_path / "ckpt")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    # Process i holds rows [i+1, i+1]: the global array is [1, 1, 2, 2] on 4 devices.
    for i, result in enumerate(results):
        assert result["process_index"] == i
        assert result["process_count"] == 2
        assert result["device_count"] == 4
        assert result["local_device_count"] == 2
        assert result["psum"] == 6.0
        assert result["sum_of_squares"] == 10.0
        assert result["gathered"] == [1.0, 1.0, 2.0, 2.0]
        assert result["restored_step"] == 1
        assert result["restored"] == [10.0, 10.0, 20.0, 20.0]
        assert result["restored_data"] == {"process_count": 2}


def test_without_coordinator_runs_single_process():
    info = distributed.initialize(environ={}, cpu_collectives=None)
    assert (info.process_index, info.process_count) == (0, 1)
    assert info.is_primary
    assert info.coordinator_address is None


def test_address_from_environment_needs_process_count_and_id():
    with pytest.raises(ValueError, match="num_processes and process_id"):
        distributed.initialize(
            environ={"ATTN_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, cpu_collectives=None
        )
    with pytest.raises(ValueError, match="num_processes and process_id"):
        distributed.initialize(
            environ={"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2"},
            cpu_collectives=None,
        )


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="host:port"):
        distributed.initialize("localhost", 2, 0, cpu_collectives=None, environ={})
    with pytest.raises(ValueError, match=r"process_id must be in \[0, num_processes\)"):
        distributed.initialize("127.0.0.1:1", 2, 2, cpu_collectives=None, environ={})
    with pytest.raises(ValueError, match="num_processes must be an integer"):
        distributed.initialize(
            environ={"ATTN_COORDINATOR_ADDRESS": "127.0.0.1:1", "ATTN_NUM_PROCESSES": "two"},
            cpu_collectives=None,
        )
    with pytest.raises(ValueError, match="cpu_collectives"):
        distributed.initialize(cpu_collectives="nccl", environ={})
