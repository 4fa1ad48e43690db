import json

import pytest
import torch
from click.testing import CliRunner

from medmem.cli import main


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from medmem.data.synth import generate

    return generate(tmp_path_factory.mktemp("synth"), seed=0, size=48, noise=0.5, cases_per_task=3,
                    tasks=["xray_chest", "ct_kidney"])


def test_train_command_registered_with_options():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in ("--data", "--config", "--init", "--steps", "--batch-size", "--clip-len", "--lr", "--warmup",
                "--freeze", "--layer-decay", "--accum", "--amp", "--memory", "--val-every", "--resume", "--seed",
                "--device", "--schedule", "--tasks", "--noisy-labels", "--adapter-frames", "--full-clip-prob"):
        assert opt in r.output


def test_train_cli_run_and_resume(manifest, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(manifest), "--config", "test_tiny", "--out", str(out), "--steps", "3",
            "--batch-size", "2", "--clip-len", "2", "--warmup", "1", "--no-progress", "--noisy-labels",
            "--freeze", "prompt_encoder", "--stop-at", "2"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "stopped at step 2" in r.output
    r = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--no-progress", "--lr", "1"])
    assert r.exit_code == 0, r.output
    assert "trained 3 steps" in r.output and "validation: Dice" in r.output
    assert "ignoring --lr" in r.output                     # settings come from the checkpoint
    cfg = torch.load(out / "checkpoint.pt", weights_only=True)["train_config"]
    assert cfg["noisy_labels"] and cfg["freeze"] == ("prompt_encoder",) and cfg["lr"] == 1e-4
    assert cfg["steps"] == 3 and cfg["stop_at"] is None
    assert json.loads((out / "train_config.json").read_text())["stop_at"] == 2
    assert (out / "model.safetensors").is_file()


def test_train_cli_errors(tmp_path):
    r = CliRunner().invoke(main, ["train", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "--data is required" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--freeze", "trunk", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "unknown freeze group" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--full-clip-prob", "1.5", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "full_clip_prob must be a probability" in r.output


def test_train_cli_two_data_sources(manifest, tmp_path):
    from medmem.data.synth import generate

    extra = generate(tmp_path / "extra", seed=3, size=48, cases_per_task=3, tasks=["us_breast_lesion"])
    out = tmp_path / "run2"
    r = CliRunner().invoke(main, ["train", "--data", str(manifest), "--data", str(extra), "--config", "test_tiny",
                                  "--out", str(out), "--steps", "1", "--batch-size", "2", "--clip-len", "2",
                                  "--warmup", "0", "--no-progress", "--val-cases", "0"])
    assert r.exit_code == 0, r.output
    assert "us_breast_lesion" in r.output and "xray_chest" in r.output  # validated on both sources' tasks
    assert json.loads((out / "train_config.json").read_text())["data"] == [str(manifest), str(extra)]
