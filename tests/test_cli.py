"""The `medmem` command line."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from medmem.cli import main


def test_models_lists_every_config_with_parameter_counts():
    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines()[1:] if ln.strip()}
    expected = {"sam2_hiera_tiny": "38.95M", "sam2.1_hiera_tiny": "38.96M", "sam2_hiera_small": "46.04M",
                "sam2.1_hiera_base_plus": "80.85M", "sam2.1_hiera_large": "224.45M", "sam2.1_hiera_tiny_512": "38.96M"}
    for name, count in expected.items():
        assert count in lines[name], lines[name]
    assert "512" in lines["sam2.1_hiera_tiny_512"]


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "medmem.cli", "models"], capture_output=True, encoding="utf-8", timeout=120)
    assert out.returncode == 0 and "sam2.1_hiera_large" in out.stdout


def test_subpackages_reachable_from_the_top_level():
    import medmem

    assert callable(medmem.io.read_volume) and callable(medmem.eval.metrics.dice)
    assert medmem.VolumeSession.__name__ == "VolumeSession" and medmem.ImageSetSession.__name__ == "ImageSetSession"


def test_every_command_names_the_intensity_option_alike():
    """One name (--intensity, the API's ``intensity=``) and one help text wherever scaling is chosen."""
    import click

    def walk(cmd, path=()):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    found = {}
    for path, cmd in walk(main):
        for p in cmd.params:
            assert "--window" not in p.opts, path
            if "--intensity" in p.opts:
                found[" ".join(path)] = (p.name, p.help)
    assert {"segment", "train", "eval-interactive"} <= set(found), found
    assert len(set(found.values())) == 1 and next(iter(found.values()))[0] == "intensity", found
