"""`device: auto | cpu | cuda`: the GPU the job was given, CPU fallback with a warning, a clear error for cuda."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from helpers import make_image_folder, run_snakemake, snakemake_env, tiny_config
from sieve.devices import DeviceError, resolve_device, resolve_dtype


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_cpu_is_always_the_cpu(one_gpu):
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_uses_the_gpu_when_one_is_visible(one_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_auto_falls_back_to_cpu_with_a_warning(no_gpu, caplog):
    with caplog.at_level(logging.WARNING, logger="sieve.devices"):
        device = resolve_device("auto")
    assert device == torch.device("cpu")
    assert any("no CUDA GPU" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert resolve_dtype("auto", device) == torch.float32


def test_cuda_without_a_gpu_is_a_clear_error(no_gpu, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    msg = str(err.value)
    assert "config key 'device'" in msg and "'cuda'" in msg
    assert "CUDA_VISIBLE_DEVICES=''" in msg and "device: auto" in msg


def test_unknown_device_names_the_config_key():
    with pytest.raises(DeviceError, match=r"config key 'device': unknown device 'tpu'"):
        resolve_device("tpu")


def test_explicit_dtypes_win_over_auto():
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    assert resolve_dtype("float32", torch.device("cuda")) == torch.float32


def test_cuda_visible_devices_hides_every_gpu_in_a_fresh_process():
    """What SLURM does for a job without a GPU: CUDA itself then sees none, and auto runs on the CPU."""
    code = (
        "import logging; logging.basicConfig(); from sieve.devices import resolve_device; "
        "print(resolve_device('auto'))"
    )
    env = {**snakemake_env(), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cpu"
    assert "running on the CPU" in proc.stderr


@pytest.mark.workflow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_fails_the_probe_job_with_the_message(tmp_path):
    images = make_image_folder(tmp_path / "images", n_per_class=2, size=16, corrupt=0)
    config = tiny_config(images, device="cuda")
    proc = run_snakemake(tmp_path / "work", config, ("results/tiny/pics/activations.h5",), check=False)
    assert proc.returncode != 0
    log = (tmp_path / "work" / "logs" / "tiny" / "pics" / "probe_activations.log").read_text()
    assert "config key 'device' is 'cuda' but no CUDA GPU is usable in this job" in log
    assert not (tmp_path / "work" / "results" / "tiny" / "pics" / "activations.h5").exists()


def test_target_models_default_to_float32_on_a_gpu_and_the_generator_to_bf16(one_gpu):
    """Issue 16: a model spec without `dtype` is measured in float32 even on a GPU (probe and Verify read the
    same default); the generator's default `auto` keeps bf16 there."""
    from sieve.config import with_defaults

    gpu = resolve_device("auto")
    model = with_defaults({"source": "torchvision", "arch": "resnet18"}, "models.*")
    assert resolve_dtype(model["dtype"], gpu) == torch.float32
    assert resolve_dtype(with_defaults({}, "generator")["dtype"], gpu) == torch.bfloat16
