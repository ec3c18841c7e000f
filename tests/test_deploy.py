"""deploy/: the compose file, the systemd units, the Prometheus rules and the Grafana dashboard.

The rules are checked by Prometheus's own `promtool` (Debian's `prometheus` package: installed
here where it is missing and apt-get can run as root; otherwise the tests FAIL, naming the
package, never skip).  Every metric the rules and the dashboard name is looked up in the
/metrics of a running gateway (a drill node as a child process).  The compose file and the units
must name only files, modules and commands that exist, and the emulators' units must run as a
service runs them (stdin /dev/null, the secret from a credential file).
"""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests._debian import ensure_tools

from tests._gateway_process import GatewayProcess, pause
from tests.secrets import UNIT_AMI_SECRET, WRONG_AMI_SECRET

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "yihu.json"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_DRILL = DEPLOY / "compose.drill.yaml"
UNITS = [DEPLOY / "yihu.service", *sorted((DEPLOY / "systemd").glob("*.service"))]
TEST_SECRET = UNIT_AMI_SECRET        # not the emulators' default: a secret file that were ignored would show


# --- promtool ----------------------------------------------------------------------------------

def promtool() -> str:
    ensure_tools({"promtool": "prometheus"}, "the deploy tests", recommends=False)
    return shutil.which("promtool")


def run_promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_alert_rules_pass_promtool_check():
    res = run_promtool("check", "rules", ALERTS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_prometheus_config_passes_promtool_check_and_loads_the_rules():
    res = run_promtool("check", "config", PROMETHEUS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout and "alerts.yml" in res.stdout


def test_alert_rules_fire_as_their_unit_tests_expect():
    """Node down, heartbeat stale, modem down, AMI link down, a lease flapping (alerts_test.yml)."""
    res = run_promtool("test", "rules", ALERTS_TEST)
    assert res.returncode == 0, res.stdout + res.stderr
    names = {t["alertname"] for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
             for t in case["alert_rule_test"]}
    assert {"YihuNodeDown", "YihuNodeHeartbeatStale", "YihuModemDown", "YihuAmiLinkDown",
            "YihuLeaseFlapping"} <= names


def test_a_broken_rule_is_refused_by_the_same_check(tmp_path):
    """The check above can fail: a rule with a bad expression does not pass."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: up{ == 0\n        for: 1m\n")
    assert run_promtool("check", "rules", bad).returncode != 0


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_every_alert_waits_has_a_severity_and_names_what_is_down():
    for r in rules():
        name = r["alert"]
        assert r.get("for"), f"{name}: no for:"
        assert r["labels"]["severity"] in ("critical", "warning"), name
        ann = r["annotations"]
        assert ann.get("summary") and ann.get("description"), name
        kept = set(re.findall(r"by \(([^)]*)\)", r["expr"]))     # labels an aggregation keeps
        aggregated = bool(re.search(r"\b(min|max|sum)\b", r["expr"]))
        if aggregated and not kept:
            continue        # e.g. "no node alive": nothing to name
        assert "$labels." in ann["summary"], f"{name}: the summary names no node, modem, lease or target"
        for label in re.findall(r"\$labels\.(\w+)", ann["summary"] + ann["description"]):
            if aggregated:
                assert label in {x.strip() for k in kept for x in k.split(",")}, \
                    f"{name}: {label} is aggregated away by the expression"


def test_the_rules_cover_every_failure_of_issue_13():
    exprs = " ".join(r["expr"] for r in rules())
    for metric in ("up", "yihu_node_heartbeat_age_seconds", "yihu_sms_modem_state", "yihu_ami_connected",
                   "yihu_outbox_oldest_seconds", "yihu_escalation_lateness_seconds_bucket",
                   "yihu_webhook_backlog", "yihu_lease_changes_total"):
        assert re.search(rf"\b{metric}\b", exprs), metric
    heartbeat = next(r for r in rules() if "yihu_node_heartbeat_age_seconds" in r["expr"])
    from gateway.cluster.config import ClusterSection
    assert f"> {ClusterSection().node_timeout_s:g}" in heartbeat["expr"], "the rule's threshold is node_timeout_s"


# --- every metric named exists in a running gateway's /metrics --------------------------------------

def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_names(exprs) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\b(yihu_[a-z0-9_]+)\b", e)}


def exposed(text: str) -> set[str]:
    """Sample names /metrics can carry: each `# TYPE` line's name, with a histogram's series."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_the_dashboard_shows_what_the_engineers_watch():
    names = metric_names(dashboard_exprs())
    for m in ("yihu_node_heartbeat_age_seconds", "yihu_lease_held", "yihu_sms_modem_state",
              "yihu_sms_modem_signal_dbm", "yihu_sms_modem_queue_depth", "yihu_sms_segments_sent_total",
              "yihu_sms_segments_failed_total", "yihu_ami_connected", "yihu_hotline_calls_total",
              "yihu_order_calls_total", "yihu_escalation_lateness_seconds_bucket", "yihu_escalation_pending",
              "yihu_outbox_oldest_seconds", "yihu_webhook_backlog", "yihu_db_query_seconds_bucket",
              "yihu_db_write_retries_total"):
        assert m in names, m
    dash = json.loads(DASHBOARD.read_text())
    ds_uid = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]["uid"]
    for p in dash["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == ds_uid, p["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # No panel hides another on the 24-column grid.
    cells = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for cx in range(g["x"], g["x"] + g["w"]):
            for cy in range(g["y"], g["y"] + g["h"]):
                assert (cx, cy) not in cells, f"{p['title']} overlaps {cells[(cx, cy)]}"
                cells[(cx, cy)] = p["title"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/yihu.yml").read_text())["providers"][0]
    mounts = dict((t, s) for s, t in bind_mounts(load_compose(COMPOSE)["services"]["grafana"]))
    assert mounts[provider["options"]["path"] + "/yihu.json"] == DASHBOARD


def test_every_metric_the_rules_and_dashboard_name_is_in_a_running_gateways_metrics(tmp_path, migrated_url):
    port = free_port()
    gw = GatewayProcess(tmp_path, migrated_url, http={"port": port}, gateway={"node_name": "deploy-check"})
    gw.start()
    try:
        # Once the modems are up their state series are there too, with the label values the rules use.
        deadline = time.monotonic() + 30
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            if re.search(r'^yihu_sms_modem_state\{[^}]*state="ready"[^}]*\} 1\.0$', text, re.M) \
                    or time.monotonic() > deadline:
                break
            pause(0.2)
    finally:
        gw.terminate()
    have = exposed(text)
    named = metric_names([r["expr"] for r in rules()]) | metric_names(dashboard_exprs())
    missing = sorted(named - have)
    assert not missing, f"named by deploy/ but not in /metrics: {missing}"
    assert re.search(r'^yihu_sms_modem_state\{[^}]*state="ready"[^}]*\} 1\.0$', text, re.M), "no modem ready"
    assert re.search(r'^yihu_sms_modem_state\{[^}]*state="benched"[^}]*\} 0\.0$', text, re.M)
    # The rules' le="5.0" is a bucket the histogram really has.
    for e in [r["expr"] for r in rules()] + dashboard_exprs():
        for name, le in re.findall(r'(yihu_\w+)_bucket\{le="([^"]+)"\}', e):
            assert re.search(rf'^{name}_bucket\{{le="{re.escape(le)}"\}}', text, re.M), (name, le)


# --- the compose file ------------------------------------------------------------------------------

class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (!reset, !override) read as plain values."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node)
                              if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node))


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default}: the default (the tests' environment sets none of them)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    out = []
    for v in service.get("volumes") or []:
        spec = f"{v['source']}:{v['target']}" if isinstance(v, dict) else v
        src, target = interpolate(spec).split(":")[:2]
        if src.startswith((".", "/")):
            out.append(((DEPLOY / src).resolve(), target))
    return out


def test_compose_parses_and_names_only_files_that_exist():
    base = load_compose(COMPOSE)
    drill = load_compose(COMPOSE_DRILL)
    assert {"postgres", "yihu-1", "yihu-2", "prometheus", "grafana", "asterisk"} <= set(base["services"])
    for name, svc in base["services"].items():
        assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"
        build = svc.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for src, target in bind_mounts(svc):
            assert src.exists(), f"{name}: mounts {src}, which is not in the repository"
        for f in svc.get("env_file") or []:
            assert (DEPLOY / f).is_file(), f
        for s in svc.get("secrets") or []:
            assert s in base["secrets"], f"{name}: secret {s} is not declared"
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0] if isinstance(vol, str) else vol["source"]
            if not src.startswith((".", "/", "$")):
                assert src in base["volumes"], f"{name}: volume {src} is not declared"
    for key in ("secrets", "configs"):
        for name, spec in (base.get(key) or {}).items():
            if "file" in spec:
                assert (DEPLOY / spec["file"]).exists(), name
    # Every COPY of the Dockerfile names something in the build context.
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), line
    # The drill override only changes services that exist, and its configurations exist too.
    assert set(drill["services"]) <= set(base["services"])


def node_configs(compose: dict, base: dict) -> dict[str, Path]:
    """service -> the configuration file its $YIHU_CONFIG names (the image runs `yihu run`), found
    through the service's /etc/yihu mount; `compose` may be an override file of `base`."""
    out = {}
    for name, svc in compose["services"].items():
        env = {**(base["services"][name].get("environment") or {}), **(svc.get("environment") or {})}
        if "YIHU_CONFIG" not in env:
            continue
        command = svc.get("command") or base["services"][name].get("command")
        assert command == ["run"], f"{name}: {command}"
        path = env["YIHU_CONFIG"]
        for src, target in bind_mounts(base["services"][name]):
            if path.startswith(target.rstrip("/") + "/"):
                out[name] = src / path[len(target.rstrip("/")) + 1:]
    return out


def test_the_two_nodes_share_postgresql_and_only_yihu_1_has_the_modems(tmp_path):
    from gateway.config import load_config
    from sqlalchemy.engine import make_url
    base = load_compose(COMPOSE)
    secret = tmp_path / "ami_secret"
    secret.write_text(TEST_SECRET + "\n")
    live = node_configs(base, base)
    assert set(live) == {"yihu-1", "yihu-2"}
    names, urls = set(), set()
    for service, path in live.items():
        assert path.is_file(), path
        raw = tomllib.loads(path.read_text())
        assert "secret" not in raw.get("ami", {}) and "sim_pin" not in raw.get("sms", {}), \
            f"{path.name}: a secret in a committed file"
        assert raw["ami"]["secret_file"] == "/run/secrets/ami_secret"
        cfg = load_config(path, {"ami": {"secret_file": str(secret)}})
        assert cfg.sections["gateway"].mode == "live"
        assert cfg.sections["ami"].secret == TEST_SECRET
        url = make_url(cfg.sections["gateway"].database_url)
        assert url.host == "postgres" and url.password is None and url.get_backend_name() == "postgresql"
        names.add(cfg.sections["gateway"].node_name)
        urls.add(str(url))
        devices = [d.split(":")[1] for d in base["services"][service].get("devices") or []]
        assert sorted(cfg.sections["sms"].ports) == sorted(devices), service
        assert base["services"][service]["environment"]["PGPASSWORD"] == "${YIHU_DB_PASSWORD:?set YIHU_DB_PASSWORD in deploy/.env}"
    assert names == {"yihu-1", "yihu-2"} and len(urls) == 1
    assert [s for s, svc in base["services"].items() if svc.get("devices")] == ["yihu-1"]
    # The asterisk service's address is the nodes' ami.host and FastAGI peer.
    ast_ip = base["services"]["asterisk"]["networks"]["yihu"]["ipv4_address"]
    for path in live.values():
        raw = tomllib.loads(path.read_text())
        assert raw["ami"]["host"] == ast_ip and raw["ivr"]["allowed_peers"] == [f"{ast_ip}/32"]
    # No secret value in the compose file: they come from the environment.
    for name, spec in base["secrets"].items():
        assert set(spec) == {"environment"}, name
    # Prometheus scrapes both nodes on their HTTP port.
    prom = yaml.safe_load(PROMETHEUS.read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    ports = {s: tomllib.loads(p.read_text())["http"]["port"] for s, p in live.items()}
    assert sorted(targets) == sorted(f"{s}:{port}" for s, port in ports.items())


def test_the_drill_variant_runs_both_nodes_on_the_emulators():
    base, drill = load_compose(COMPOSE), load_compose(COMPOSE_DRILL)
    from gateway.config import load_config
    configs = node_configs(drill, base)
    assert set(configs) == {"yihu-1", "yihu-2"}
    for service, path in configs.items():
        cfg = load_config(path)
        assert cfg.sections["gateway"].mode == "drill" and cfg.sections["gateway"].node_name == service
    assert "devices" in drill["services"]["yihu-1"] and drill["services"]["yihu-1"]["devices"] is None  # !reset


# --- systemd units -----------------------------------------------------------------------------------

def exec_lines(unit: Path) -> list[list[str]]:
    out = []
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecStartPre", "ExecStop"):
            out.append(shlex.split(value.lstrip("-@+!")))
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_names_only_existing_commands(unit):
    lines = exec_lines(unit)
    assert lines, unit
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for argv in lines:
        exe = Path(argv[0])
        assert exe.parent == Path("/opt/yihu/.venv/bin"), argv     # where the units say Yihu is installed
        if exe.name == "yihu":
            assert scripts["yihu"] == "gateway.cli:main"
            res = subprocess.run([sys.executable, "-m", "gateway.cli", argv[1], "--help"],
                                 capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert res.returncode == 0, f"{unit.name}: yihu {argv[1]}: {res.stderr}"
            assert "--config" in res.stdout
        else:
            assert exe.name == "python" and argv[1] == "-m", argv
            assert importlib.util.find_spec(argv[2]) is not None, f"{unit.name}: no module {argv[2]}"
    text = unit.read_text()
    assert re.search(r"^\[Install\]\nWantedBy=multi-user.target$", text, re.M)


def unit_command(unit: str, **replace) -> list[str]:
    (argv,) = exec_lines(DEPLOY / "systemd" / unit)
    argv = [sys.executable if a == "/opt/yihu/.venv/bin/python" else a for a in argv]
    return [replace.get(a, a) for a in argv]


def test_emulated_modems_unit_runs_as_a_service(tmp_path):
    """stdin is /dev/null under systemd: the bank keeps serving its ports."""
    argv = unit_command("yihu-emulated-modems.service", **{"/run/yihu-modems": str(tmp_path / "modems")})
    out = tmp_path / "out.log"
    with out.open("w") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while "READY" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            pause(0.05)
        assert [line.split()[1] for line in out.read_text().splitlines()[:4]] == \
               [str(tmp_path / "modems" / f"modem{i}") for i in range(4)]
        import serial
        port = serial.Serial(str(tmp_path / "modems" / "modem3"), 115200, timeout=1)
        try:
            answer = b""
            deadline = time.monotonic() + 20     # the emulated modem boots first (--boot-time)
            while b"OK" not in answer and time.monotonic() < deadline:
                port.write(b"AT\r")
                answer += port.read(64)
            assert b"OK" in answer, answer
        finally:
            port.close()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ami_login(port: int, secret: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        f.readline()                                     # the banner
        f.write(f"Action: Login\r\nUsername: yihu\r\nSecret: {secret}\r\nActionID: t1\r\n\r\n".encode())
        f.flush()
        lines = []
        while (line := f.readline().decode().strip()):
            lines.append(line)
        return "\n".join(lines)


def test_emulated_asterisk_unit_takes_its_secret_from_the_credential(tmp_path):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "ami_secret").write_text(TEST_SECRET + "\n")
    argv = unit_command("yihu-emulated-asterisk.service", **{"5038": "0", "%d/ami_secret": str(creds / "ami_secret")})
    assert TEST_SECRET not in " ".join(argv)
    err = tmp_path / "err.log"
    with err.open("w") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"AMI on 127\.0\.0\.1:(\d+) \(user yihu\)", err.read_text())):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            pause(0.05)
        port = int(m.group(1))
        assert "Response: Success" in ami_login(port, TEST_SECRET)
        assert "Response: Error" in ami_login(port, WRONG_AMI_SECRET)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert TEST_SECRET not in err.read_text()


# --- ami.secret_file ---------------------------------------------------------------------------------

def test_ami_secret_file_keeps_the_secret_out_of_the_configuration(tmp_path):
    from gateway.config import ConfigError, load_config
    secret = tmp_path / "ami_secret"
    secret.write_text(TEST_SECRET + "\nignored second line\n")
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[gateway]\nmode = "live"\n[ami]\nsecret_file = "{secret}"\n')
    assert load_config(cfg).sections["ami"].secret == TEST_SECRET

    cfg.write_text(f'[gateway]\nmode = "live"\n[ami]\nsecret = "{TEST_SECRET}"\nsecret_file = "{secret}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.problems == ["ami.secret_file: give ami.secret or ami.secret_file, not both"]

    for content, problem in ((None, f"ami.secret_file: cannot read {tmp_path / 'none'} (No such file or directory)"),
                             ("\n", f"ami.secret_file: {tmp_path / 'none'} is empty")):
        if content is not None:
            (tmp_path / "none").write_text(content)
        cfg.write_text(f'[gateway]\nmode = "live"\n[ami]\nsecret_file = "{tmp_path / "none"}"\n')
        with pytest.raises(ConfigError) as e:
            load_config(cfg)
        assert e.value.problems == [problem]

    # A drill names no real Asterisk, its secret file included.
    cfg.write_text(f'[gateway]\nmode = "drill"\n[ami]\nsecret_file = "{secret}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert len(e.value.problems) == 1 and e.value.problems[0].startswith("ami.secret_file: names a file with a real AMI secret")
    assert TEST_SECRET not in str(e.value)
