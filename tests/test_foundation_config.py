"""Configuration is validated as a whole; bad input is one line per problem, exit 2, no traceback."""
import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_config


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def write(tmp_path, text, name="yihu.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_embedded_default_needs_no_file():
    cfg = load_config(None)
    assert cfg.drill and cfg.mode == "drill"
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("/drill.sqlite")
    assert cfg.http.port == 8080


def test_data_dir_is_relative_to_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, '[gateway]\ndata_dir = "state"\n'))
    assert cfg.database_url == f"sqlite:///{tmp_path / 'state' / 'yihu.sqlite'}"


def test_every_problem_is_reported_at_once(tmp_path):
    p = write(tmp_path, '[gateway]\nnode = "x"\n[http]\nport = "8080"\n[nosuch]\na = 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = "\n".join(e.value.problems)
    assert "gateway.node: unknown key" in text
    assert "http.port: expected integer" in text
    assert "nosuch: unknown section" in text


@pytest.mark.parametrize("body, expected", [
    ('[gateway]\nnode_nam = "x"\n', "config error: gateway.node_nam: unknown key"),
    ('[http]\nport = "eighty"\n', "config error: http.port: expected integer, got str 'eighty'"),
    ('[gateway]\nembedded = "yes"\n', "config error: gateway.embedded: expected true/false"),
    ('[log]\nformat = "xml"\n', "config error: log.format: must be 'text' or 'json'"),
    ('[gateway]\ntime_zone = "Mars/Olympus"\n', "config error: gateway.time_zone: unknown time zone"),
    ('[http\nport = 1\n', "not valid TOML"),
])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, body, expected):
    p = write(tmp_path, body)
    for command in (["check-config"], ["run"]):
        r = run_cli(*command, "--config", str(p))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert expected in lines[0]
        assert "Traceback" not in r.stderr


def test_unreachable_database_names_the_url_without_its_password(tmp_path):
    p = write(tmp_path, '[gateway]\ndatabase_url = "postgresql+psycopg://yihu:s3cret@127.0.0.1:1/yihu"\n')
    r = run_cli("run", "--config", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("yihu: database unreachable: postgresql+psycopg://yihu:***@127.0.0.1:1/yihu")
    assert "s3cret" not in r.stderr and "Traceback" not in r.stderr


def test_missing_config_file_is_named(tmp_path):
    r = run_cli("check-config", "--config", str(tmp_path / "absent.toml"))
    assert r.returncode == 2
    assert "absent.toml: cannot read the configuration file" in r.stderr
    assert "Traceback" not in r.stderr


def test_secrets_are_never_echoed_in_config_errors(tmp_path):
    p = write(tmp_path, '[ami]\nsecret = 918273645\nauth = "rot13"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = "\n".join(e.value.problems)
    assert "ami.secret: expected string, got int (value hidden)" in text
    assert "918273645" not in text
    assert "ami.auth: must be 'md5' or 'plain'" in text


def test_part_sections_are_checked_too(tmp_path):
    p = write(tmp_path, '[ivr]\nport = 4573\ncall_attempts = 0\n[webhooks]\nurls = ["ftp://x"]\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = "\n".join(e.value.problems)
    assert "ivr.call_attempts: must be at least 1" in text
    assert "webhooks.urls: 'ftp://x' is not an http(s) URL" in text
