"""Checkpoints load safely in every accepted layout; mismatches and pickled objects are refused."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from quantlens.errors import CheckpointError
from quantlens.models.checkpoints import load_weights, read_state_dict, save_weights


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=False))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "lightning", "dataparallel", "model_state_dict"])
def test_layouts(tmp_path, wrap):
    src = _net()
    sd = src.state_dict()
    obj = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3, "best_prec1": 91.7},
        # Lightning: the LightningModule holds the network as `self.model`, plus training state.
        "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 9, "global_step": 100,
                      "pytorch-lightning_version": "2.4.0", "optimizer_states": [], "lr_schedulers": []},
        "dataparallel": {f"module.{k}": v for k, v in sd.items()},
        "model_state_dict": {"model_state_dict": sd, "optimizer_state_dict": {}},
    }[wrap]
    path = tmp_path / ("x.ckpt" if wrap == "lightning" else "x.pt")
    torch.save(obj, path)
    dst = load_weights(_net(), path)
    assert _same(src, dst)


def test_safetensors_round_trip(tmp_path):
    src = _net()
    path = save_weights(src, tmp_path / "w.safetensors")
    assert _same(src, load_weights(_net(), path))


def test_shared_resnet20_checkpoint_keys(shared_path):
    sd = read_state_dict(shared_path("models/resnet20-cifar10/resnet20-12fca82f.th"))
    assert "conv1.weight" in sd and "linear.weight" in sd and not any(k.startswith("module.") for k in sd)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _net().state_dict(), "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"pickled Python objects.*needs print.*weights_only=True"):
        read_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_saved_training_arguments_refused(tmp_path):
    # Old training scripts often saved their argparse Namespace beside the weights.
    path = tmp_path / "args.pt"
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": _net().state_dict()}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects.*argparse.Namespace"):
        read_state_dict(path)


def test_shape_mismatch_lists_keys(tmp_path):
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    path = tmp_path / "w.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: 0\.weight \(8, 1, 3, 3\) vs model \(4, 1, 3, 3\)"):
        load_weights(_net(), path)


def test_missing_and_unexpected_keys(tmp_path):
    sd = _net().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["3.bias"]
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"missing keys: 3\.bias; unexpected keys: extra\.weight"):
        load_weights(_net(), path)


def test_non_finite_weights_refused_naming_the_tensor(tmp_path):
    sd = _net().state_dict()
    sd["0.weight"].view(-1)[:2] = torch.tensor([float("nan"), float("inf")])
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"non-finite values \(NaN/Inf\) in: 0\.weight \(2 of 36\)"):
        load_weights(_net(), path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "none.pt")
    bad_st = tmp_path / "w.safetensors"
    bad_st.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_state_dict(bad_st)
