"""Drill nodes sharing one emulated Asterisk (embedded.asterisk): loopback only, its secret from a
file, and a node that cannot read it does not start."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_config
from tests._gateway_process import ROOT


def write(tmp_path, embedded: str):
    p = tmp_path / "yihu.toml"
    p.write_text(f'[gateway]\nmode = "drill"\ndata_dir = "{tmp_path / "data"}"\n'
                 f'database_url = "sqlite:///{tmp_path / "y.sqlite"}"\n[http]\nport = 0\n[ivr]\nport = 0\n'
                 f'[embedded]\n{embedded}\n')
    return p


@pytest.mark.parametrize("value", ["10.0.0.5:5038", "asterisk.example.org:5038", "127.0.0.1", "127.0.0.1:0"])
def test_a_shared_emulated_asterisk_must_be_on_loopback(tmp_path, value):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f'asterisk = "{value}"\nasterisk_secret_file = "s"'), {})
    assert "embedded.asterisk" in str(e.value) and "loopback" in str(e.value)


def test_a_shared_emulated_asterisk_needs_its_secret_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, 'asterisk = "127.0.0.1:15038"'), {})
    assert "asterisk_secret_file" in str(e.value)


def test_a_node_whose_secret_file_is_missing_stops_with_one_line(tmp_path):
    cfg = write(tmp_path, f'asterisk = "127.0.0.1:15038"\nasterisk_secret_file = "{tmp_path / "missing.secret"}"')
    assert load_config(cfg, {}).embedded.shared_asterisk == ("127.0.0.1", 15038)
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("yihu:")]
    assert len(lines) == 1 and "embedded.asterisk_secret_file" in lines[0] and "missing.secret" in lines[0], out.stderr
