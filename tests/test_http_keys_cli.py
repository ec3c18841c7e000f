"""`yihu apikey create|list|revoke`, and the refusal to start off loopback with no key."""
import hashlib

import pytest
from sqlalchemy import create_engine, select, text

from adapters.apikeys import verify_key_tx
from gateway.cli import main
from gateway.storage.schema import api_keys, audit_log


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_the_key_once_and_only_its_hash_is_kept(migrated_url, capsys):
    code, out, err = run(capsys, "apikey", "create", "--name", "cad-1", "--scope", "dispatch",
                         "--database-url", migrated_url)
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("yihu_") and len(key) > 50 and "shown once" in err
    engine = create_engine(migrated_url)
    try:
        with engine.begin() as conn:
            row = conn.execute(select(api_keys)).one()
            assert row.key_hash == hashlib.sha256(key.encode()).hexdigest() and row.scope == "dispatch"
            dump = " ".join(str(v) for r in conn.execute(select(api_keys)).all() for v in r)
            dump += " ".join(str(v) for r in conn.execute(select(audit_log)).all() for v in r)
            assert key not in dump and key.rsplit("_", 1)[1] not in dump
            assert verify_key_tx(conn, key).name == "cad-1"
            assert verify_key_tx(conn, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        code, out, err = run(capsys, "apikey", "list", "--database-url", migrated_url)
        assert code == 0 and "cad-1" in out and "dispatch" in out and "never" in out and key not in out
        code, out, err = run(capsys, "apikey", "create", "--name", "cad-1", "--scope", "read",
                             "--database-url", migrated_url)
        assert code == 2 and "taken" in err and out == ""
        code, out, err = run(capsys, "apikey", "create", "--name", "bad name!", "--scope", "read",
                             "--database-url", migrated_url)
        assert code == 2 and "key name" in err
        code, out, err = run(capsys, "apikey", "revoke", "cad-1", "--database-url", migrated_url)
        assert code == 0 and "revoked" in out
        with engine.begin() as conn:
            assert verify_key_tx(conn, key) is None
            actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars().all()
            assert actions == ["apikey.created", "apikey.revoked"]
        code, out, err = run(capsys, "apikey", "list", "--database-url", migrated_url)
        assert "REVOKED" in out
        code, out, err = run(capsys, "apikey", "revoke", "cad-1", "--database-url", migrated_url)
        assert code == 2 and "no active API key" in err
    finally:
        engine.dispose()


def test_gateway_refuses_to_start_off_loopback_without_a_key(migrated_url, tmp_path, capsys):
    cfg = tmp_path / "yihu.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\nembedded = false\ndatabase_url = "{migrated_url}"\n'
                   '[http]\ninterface = "0.0.0.0"\nport = 0\n', encoding="utf-8")
    code, out, err = run(capsys, "run", "--config", str(cfg))
    lines = [line for line in err.splitlines() if line.startswith("yihu:")]
    assert code == 2 and len(lines) == 1
    assert "http.interface 0.0.0.0 is not loopback and no API key is defined" in lines[0]
    assert "yihu apikey create" in lines[0]
