"""The compose deployment, checked without a Docker engine.

``docker-compose config`` (Debian's package validates offline) with the
placeholder values of ``compose/.env.example``, and static checks of what the
compose file refers to: mounted files, image pins, `kappa` subcommands, KAPPA_*
setting names, SASL users, secrets, and Prometheus scrape targets.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic_settings import BaseSettings

from cli import _register, cli
from kappa import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
PROMETHEUS_CONFIG = ROOT / "monitoring" / "prometheus" / "prometheus.compose.yml"
KAFKA_SETUP = COMPOSE_DIR / "kafka" / "setup.py"

# ${VAR}, ${VAR:-default}, ${VAR:?message}, as compose interpolates them
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_VERSION_TAG = re.compile(r"^v?\d+\.\d+")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET")


def _env_defaults() -> dict[str, str]:
    values: dict[str, str] = {}
    for raw_line in ENV_EXAMPLE.read_text().splitlines():
        line = raw_line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _interpolate(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return arg
        return ""

    return _VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The compose file as written (anchors and merge keys resolved by PyYAML)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = raw["services"]
    assert isinstance(svcs, dict)
    return svcs


@pytest.fixture(scope="module")
def resolved(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services with .env.example's values interpolated (like `config` does)."""
    env = _env_defaults()
    return yaml.safe_load(_interpolate(yaml.safe_dump({"s": services}), env))["s"]  # type: ignore[no-any-return]


def _kafka_setup() -> Any:
    spec = importlib.util.spec_from_file_location("compose_kafka_setup", KAFKA_SETUP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


OVERRIDES = sorted(COMPOSE_DIR.glob("docker-compose.*.yml"))


@pytest.mark.parametrize(
    "files",
    [[COMPOSE_FILE], *([COMPOSE_FILE, o] for o in OVERRIDES)],
    ids=lambda files: "+".join(f.name for f in files),
)
def test_docker_compose_config_passes(files: list[Path]) -> None:
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    flags = [arg for f in files for arg in ("-f", str(f))]
    proc = subprocess.run(
        [*cmd, "--env-file", str(ENV_EXAMPLE), *flags, "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stdout}\n{proc.stderr}"


def test_config_needs_the_secrets(tmp_path: Path) -> None:
    """Without values for them, the passwords are required (no silent defaults)."""
    cmd = _compose_command()
    if cmd is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [*cmd, "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "set it in compose/.env" in proc.stdout + proc.stderr


def _bind_sources(service: dict[str, Any]) -> Iterator[tuple[str, Path]]:
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                yield str(vol["source"]), COMPOSE_DIR / str(vol["source"])
            continue
        source = str(vol).split(":", 1)[0]
        if source.startswith((".", "/", "~")):
            yield source, COMPOSE_DIR / source


def test_every_mounted_path_exists(services: dict[str, dict[str, Any]]) -> None:
    overridden = {
        f"{o.name}/{name}": svc
        for o in OVERRIDES
        for name, svc in (yaml.safe_load(o.read_text()).get("services") or {}).items()
    }
    missing = [
        f"{name}: {source}"
        for name, svc in {**services, **overridden}.items()
        for source, path in _bind_sources(svc)
        if not path.resolve().exists()
    ]
    assert not missing, "mounted paths missing from the repository:\n" + "\n".join(missing)


def test_named_volumes_are_declared(
    raw: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(raw.get("volumes") or {})
    used = {
        str(vol).split(":", 1)[0]
        for svc in services.values()
        for vol in svc.get("volumes", [])
        if isinstance(vol, str) and not vol.startswith((".", "/", "~"))
    }
    assert used <= declared, f"undeclared named volumes: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused volumes: {sorted(declared - used)}"


def test_build_context_and_dockerfile_exist(services: dict[str, dict[str, Any]]) -> None:
    builds = [svc["build"] for svc in services.values() if "build" in svc]
    assert builds, "no service builds the project image"
    for build in builds:
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile, flags=re.M):
        for src in copied.split():
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    assert "-Pspark" in dockerfile
    assert "compose/local/pom.xml" in dockerfile


def test_the_image_gets_every_package() -> None:
    """Every package the project installs is copied into the image and not ignored."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.M))
    ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text()
    allowed = set(re.findall(r"^!(\w+)/$", ignore, flags=re.M))
    assert set(packages) <= copied, set(packages) - copied
    assert set(packages) <= allowed, set(packages) - allowed


def test_every_image_is_pinned(resolved: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, svc in resolved.items():
        image = svc.get("image")
        if not image:
            problems.append(f"{name}: no image")
            continue
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        if not repo or "/" in tag:
            problems.append(f"{name}: {image} has no tag")
        elif tag == "latest" or not _VERSION_TAG.match(tag):
            problems.append(f"{name}: {image} is not pinned to a version (major.minor at least)")
    assert not problems, "\n".join(problems)


def _kappa_cli() -> click.Group:
    _register()
    return cli


def _resolve_kappa(args: list[str]) -> str | None:
    """None when ``kappa <args>`` parses; else what is wrong with it."""
    cmd: click.Command = _kappa_cli()
    path = ["kappa"]
    rest = list(args)
    while isinstance(cmd, click.Group):
        if not rest or rest[0].startswith("-"):
            return f"`{' '.join(path)}` needs a subcommand"
        sub = cmd.get_command(click.Context(cmd), rest[0])
        if sub is None:
            return f"`{' '.join(path)}` has no subcommand {rest[0]!r}"
        path.append(rest.pop(0))
        cmd = sub
    try:
        cmd.make_context(" ".join(path), rest)
    except click.ClickException as exc:
        return f"`{' '.join(path)}`: {exc.format_message()}"
    return None


def _project_services(resolved: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    built = {svc["image"] for svc in resolved.values() if "build" in svc}
    return {n: s for n, s in resolved.items() if s.get("image") in built}


def test_project_services_run_real_kappa_subcommands(resolved: dict[str, dict[str, Any]]) -> None:
    project = _project_services(resolved)
    kappa_services = {
        n: s for n, s in project.items() if (s.get("command") or [None])[0] == "kappa"
    }
    assert {"producer", "validator", "aggregator"} <= set(kappa_services)
    problems = []
    for name, svc in kappa_services.items():
        command = svc["command"]
        assert isinstance(command, list), f"{name}: give the command as a list"
        error = _resolve_kappa([str(a) for a in command[1:]])
        if error:
            problems.append(f"{name}: {error}")
    assert not problems, "\n".join(problems)


def test_compose_scripts_run_real_kappa_subcommands() -> None:
    """`kappa ...` lines of the scripts compose runs (e.g. the scheduler's exporter)."""
    problems = []
    for script in sorted(COMPOSE_DIR.glob("*/*.sh")):
        for line in script.read_text().splitlines():
            words = line.strip().rstrip("&").split()
            if words[:1] == ["kappa"]:
                error = _resolve_kappa(words[1:])
                if error:
                    problems.append(f"{script.relative_to(ROOT)}: {error}")
    assert not problems, "\n".join(problems)


def _setting_names() -> set[str]:
    names = set()
    for cls in vars(settings).values():
        if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
            prefix = str(cls.model_config.get("env_prefix", ""))
            names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def test_kappa_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every KAPPA_* variable a container gets is a field of kappa/settings.py."""
    known = _setting_names() | {"KAPPA_LOG_LEVEL"}  # the root group's --log-level
    unknown = sorted(
        f"{name}: {var}"
        for name, svc in services.items()
        for var in (svc.get("environment") or {})
        if var.startswith("KAPPA_") and var not in known
        # kafka-init reads the topic layout and group with the same names
    )
    assert not unknown, "unknown KAPPA_* settings:\n" + "\n".join(unknown)


def test_project_services_use_their_own_sasl_user(resolved: dict[str, dict[str, Any]]) -> None:
    users = set(_kafka_setup().USERS)
    assert {"producer", "validator", "aggregate", "replay", "kafka-ui"} <= users
    for name, svc in _project_services(resolved).items():
        env = svc.get("environment") or {}
        if "KAPPA_KAFKA_BOOTSTRAP" not in env or name == "airflow-metrics":
            continue
        assert env.get("KAPPA_KAFKA_SECURITY_PROTOCOL") == "SASL_PLAINTEXT", name
        assert env.get("KAPPA_KAFKA_SASL_USERNAME") in users, f"{name}: no SASL user of its own"
        assert env.get("KAPPA_KAFKA_SASL_PASSWORD"), name


def test_no_secret_in_the_repository(services: dict[str, dict[str, Any]]) -> None:
    # compose: every secret comes from .env and is required (${VAR:?...})
    for name, svc in services.items():
        for var, value in (svc.get("environment") or {}).items():
            if var.endswith("_FILE"):
                continue
            if _SECRET_NAME.search(var) or "JAAS" in var or var.endswith("SQL_ALCHEMY_CONN"):
                refs = _VAR.findall(str(value))
                assert refs, f"{name}: {var} holds a literal value"
                assert all(op == ":?" for _, op, _ in refs), f"{name}: {var} needs ${{VAR:?...}}"
    # .env.example: placeholders only
    for key, value in _env_defaults().items():
        if _SECRET_NAME.search(key) or key.endswith("_KEY"):
            assert value.startswith("change-me"), f".env.example: {key} is not a placeholder"
    # the placeholders are refused at start
    assert 'startswith("change-me")' in KAFKA_SETUP.read_text()
    assert "change-me*" in (COMPOSE_DIR / "airflow" / "init.sh").read_text()


def test_depends_on_uses_conditions(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep}, which has no healthcheck"
                )
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is one-shot; restart: 'no'"
            else:
                pytest.fail(f"{name} -> {dep}: condition {condition!r}")


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    missing = [
        n for n, s in services.items() if s.get("restart") != "no" and "healthcheck" not in s
    ]
    assert not missing, f"no healthcheck: {missing}"


def test_predecessor_ports(resolved: dict[str, dict[str, Any]]) -> None:
    published = {
        name: {str(p).rsplit(":", 2)[-2] for p in svc.get("ports", [])}
        for name, svc in resolved.items()
    }
    assert "8088" in published["airflow-api-server"]
    assert "8080" in published["spark-master"]
    assert "8081" in published["spark-worker-1"]
    assert "8082" in published["kafka-ui"]
    assert "8085" in published["schema-registry"]
    assert "9870" in published["namenode"]


def _prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_targets_name_compose_services(resolved: dict[str, dict[str, Any]]) -> None:
    config = _prometheus_config()
    jobs = config.get("scrape_configs") or []
    assert jobs, f"{PROMETHEUS_CONFIG} has no scrape_configs"
    problems = []
    seen = set()
    for job in jobs:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                if host in ("localhost", "127.0.0.1") and port == "9090":
                    host = "prometheus"  # Prometheus scraping itself
                if host not in resolved:
                    problems.append(f"job {job.get('job_name')}: {target} is no compose service")
                    continue
                seen.add(host)
                env = resolved[host].get("environment") or {}
                ports = {str(v) for k, v in env.items() if k.endswith("METRICS_PORT")}
                if ports and port not in ports:
                    problems.append(
                        f"job {job.get('job_name')}: {target}, but {host} serves metrics on {ports}"
                    )
    assert not problems, "\n".join(problems)
    assert {"producer", "validator", "aggregator"} <= seen, f"scraped: {sorted(seen)}"


def test_prometheus_rule_files_are_mounted() -> None:
    rules_dir = ROOT / "monitoring" / "prometheus" / "rules"
    patterns = _prometheus_config().get("rule_files") or []
    assert patterns, "prometheus.compose.yml loads no rule files"
    for pattern in patterns:
        # inside the container: /etc/prometheus/prometheus.yml, rules under /etc/prometheus/rules
        rel = str(pattern).removeprefix("/etc/prometheus/")
        assert rel.startswith("rules/"), f"rule_files {pattern} is outside the mounted rules folder"
        assert list(rules_dir.glob(rel.removeprefix("rules/"))), (
            f"rule_files {pattern} matches nothing"
        )


def test_kafka_setup_refuses_placeholders_and_unsafe_passwords() -> None:
    setup = _kafka_setup()
    good = {var: "s3cret-" + "x" * 12 for var in ("BROKER_ADMIN_PASSWORD", *setup.USERS.values())}
    assert set(setup.passwords(good)) == {"admin", *setup.USERS}
    for bad in ("change-me-producer", "short", 'quote"d-password-123', ""):
        with pytest.raises(setup.SetupError):
            setup.passwords({**good, "PRODUCER_PASSWORD": bad})


def test_kafka_grants_cover_every_user_and_topic() -> None:
    setup = _kafka_setup()
    grants = setup.grants({})
    assert {g.user for g in grants} == set(setup.USERS)
    topics = {n for g in grants if g.kind.name == "TOPIC" for n in g.names}
    pipeline = setup.Topics.from_env({})
    # plus the validator's repartition topics, <raw>.by-call-id.<group>, by prefix
    internal = f"{pipeline.raw}.by-call-id."
    assert topics == {*pipeline.all(), internal}
    assert all(g.prefixed for g in grants if internal in g.names)
