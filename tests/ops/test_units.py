"""The example systemd units (deploy/systemd) and the Procfile name real commands: each
executable exists (in the venv, the units' /opt/relapp being this checkout, or on PATH), the
gunicorn configuration module and WSGI module import, `flask --app relapp db upgrade` exists,
worker.py accepts every `--queues` kind used, the environment file names only real settings,
and systemd itself finds nothing wrong in the units (`systemd-analyze verify`, when present)."""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relapp.extensions import QUEUE_KINDS
from tests.conftest import ROOT

UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/relapp"  # where the units expect the checkout and its .venv
VENV_BIN = Path(sys.executable).parent


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def _commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command the units and the Procfile run, here."""
    found = []
    for path in sorted(UNITS.glob("*.service")):
        unit = _unit(path)
        for key in ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload"):
            line = unit.get("Service", key, fallback=None)
            if not line:
                continue
            instances = QUEUE_KINDS if "%i" in line else ("",)
            for kind in instances:
                text = line.replace(INSTALLED, str(ROOT)).replace("%i", kind).replace("$MAINPID", "1")
                found.append((f"{path.name} {key}", shlex.split(text.lstrip("-@+!"))))
    for number, line in enumerate((ROOT / "Procfile").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        assert match, f"Procfile line {number} is not `name: command`: {line!r}"
        found.append((f"Procfile {match.group(1)}", shlex.split(match.group(2))))
    return found


def _executable(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


def test_the_units_and_procfile_cover_web_workers_and_migrations() -> None:
    names = {path.name for path in UNITS.glob("*.service")}
    assert {"relapp-web.service", "relapp-worker@.service", "relapp-migrate.service"} <= names
    assert "--queues %i" in (UNITS / "relapp-worker@.service").read_text()
    procfile = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert {"web", "release", *(f"worker_{kind}" for kind in QUEUE_KINDS)} <= procfile.keys()
    for kind in QUEUE_KINDS:
        assert procfile[f"worker_{kind}"].split() == ["python", "worker.py", "--queues", kind]


@pytest.mark.parametrize(("where", "argv"), _commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_command_names_a_real_program(where: str, argv: list[str]) -> None:
    assert _executable(argv[0]), f"{where}: {argv[0]} is not an executable here"
    program = Path(argv[0]).name
    if program == "gunicorn":
        config = argv[argv.index("-c") + 1]
        assert config.startswith("python:")
        assert importlib.util.find_spec(config.removeprefix("python:")), f"{where}: {config}"
        module = argv[-1].split(":")[0]
        assert importlib.util.find_spec(module), f"{where}: no module {module}"
    elif program.startswith("python"):
        script = ROOT / argv[1]
        assert script.is_file(), f"{where}: {argv[1]} is not a file of the checkout"
        if argv[1] == "worker.py":
            sys.path.insert(0, str(ROOT))
            try:
                import worker
            finally:
                sys.path.remove(str(ROOT))
            parsed = worker.parse_args(argv[2:])  # an unknown kind or flag exits 2
            assert parsed.kinds
    elif program == "flask":
        assert argv[1:3] == ["--app", "relapp"], where


def test_worker_help_names_the_flags_the_units_use() -> None:
    help_text = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=True).stdout
    assert "--queues" in help_text and "--burst" in help_text


def test_flask_db_upgrade_and_the_gunicorn_settings_are_valid(tmp_path: Path) -> None:
    env = {**os.environ, "RELAPP_INSTANCE": str(tmp_path), "SECRET_KEY": "x" * 64,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    env = {k: v for k, v in env.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "RELAPP_ENV"))}
    upgrade = subprocess.run([str(VENV_BIN / "flask"), "--app", "relapp", "db", "upgrade", "--help"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert upgrade.returncode == 0 and "Upgrade to a later version" in upgrade.stdout, upgrade.stderr
    web = shlex.split(_unit(UNITS / "relapp-web.service").get("Service", "ExecStart")
                      .replace(INSTALLED, str(ROOT)))
    checked = subprocess.run([*web[:-1], "--check-config", web[-1]], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_environment_file_names_only_real_settings() -> None:
    config = (ROOT / "config.py").read_text()
    example = (UNITS / "relapp.env.example").read_text()
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE)
    assert "SECRET_KEY" in names and "DATABASE_URL" in names
    for name in names:
        assert f'"{name}"' in config, f"relapp.env.example names {name}, which config.py never reads"
    assert re.search(r"^SECRET_KEY=$", example, flags=re.MULTILINE), "the example must not ship a key"
    for path in UNITS.glob("*.service"):
        assert "EnvironmentFile=/etc/relapp/relapp.env" in path.read_text(), path.name


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong(tmp_path: Path) -> None:
    files = []
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace(INSTALLED, str(ROOT))
        for kind in QUEUE_KINDS if path.name.endswith("@.service") else ("",):
            name = path.name.replace("@.service", f"@{kind}.service")
            (tmp_path / name).write_text(text)
            files.append(str(tmp_path / name))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *files], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line or "not executable" in line or "Failed" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
