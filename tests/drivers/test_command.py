"""Command driver (plus the shared driver helpers and the manual driver): real processes."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from relapp.drivers import (
    DeployContext,
    DriverConfigError,
    Outcome,
    build_driver,
    mask,
    secrets_of,
)
from relapp.drivers.command import CommandDriver
from relapp.drivers.manual import ManualDriver
from tests.processes import alive

SECRET = "TOPSECRETVALUE42"

# Writes its arguments and environment as JSON to the file named by its first argument.
RECORDER = """
import json, os, sys
with open(sys.argv[1], "w") as fh:
    json.dump({"argv": sys.argv[2:], "env": dict(os.environ)}, fh)
"""

# Starts a grandchild that ignores SIGTERM, writes both pids, then ignores SIGTERM itself and
# sleeps: only a SIGKILL to the whole process group ends this tree.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild through exec
grandchild = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()} {grandchild.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("started", flush=True)
time.sleep(300)
"""


def make_ctx(**overrides: Any) -> DeployContext:
    values: dict[str, Any] = {
        "deployment_id": 42,
        "attempt": 1,
        "project": "shop",
        "environment": "qa",
        "version": "1.4.0",
        "tag": "v1.4.0",
        "sha": "0123456789abcdef0123456789abcdef01234567",
    }
    values.update(overrides)
    return DeployContext(**values)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def run(driver: Any, ctx: DeployContext | None = None, stop: Any = None) -> tuple[Any, list[str]]:
    lines: list[str] = []
    result = driver.run(ctx or make_ctx(), lines.append, stop or (lambda: False))
    return result, lines


def test_hostile_values_reach_the_program_as_single_literal_arguments(tmp_path: Path) -> None:
    recorder = script(tmp_path, "rec.py", RECORDER)
    out = tmp_path / "out.json"
    workdir = tmp_path / "work"
    workdir.mkdir()
    driver = build_driver(
        {
            "kind": "command",
            "argv": [
                sys.executable, recorder, str(out),
                "{tag}", "{version}", "{sha}", "{environment}", "{project}",
                "--target={environment}/{deployment_id}", "{unrelated json}", "{{tag}}",
            ],
            "cwd": str(workdir),
        }
    )  # fmt: skip
    ctx = make_ctx(
        tag="; touch pwned",
        version="$(id)",
        sha="--opt",
        environment="{tag}",  # must stay literal: substitution is one pass
        project="a b\nc",
    )
    result, lines = run(driver, ctx)
    assert result.outcome is Outcome.SUCCEEDED, lines
    assert json.loads(out.read_text())["argv"] == [
        "; touch pwned",
        "$(id)",
        "--opt",
        "{tag}",
        "a b\nc",
        "--target={tag}/42",
        "{unrelated json}",
        "{; touch pwned}",
    ]
    assert not (workdir / "pwned").exists()
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_environment_has_relapp_fields_extras_and_secrets_but_not_the_worker_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://relapp:hunter22@db/relapp")
    monkeypatch.setenv("DEPLOY_REGION", "eu-west-1")
    recorder = script(tmp_path, "rec.py", RECORDER)
    out = tmp_path / "out.json"
    driver = build_driver(
        {
            "kind": "command",
            "argv": [sys.executable, recorder, str(out)],
            "env": {"DEPLOY_MODE": "blue-green"},
            "secrets": {"DEPLOY_TOKEN": SECRET},
            "pass_env": ["DEPLOY_REGION"],
        }
    )
    result, _ = run(driver, make_ctx(tag="v{version}"))
    assert result.outcome is Outcome.SUCCEEDED
    env = json.loads(out.read_text())["env"]
    assert {k: v for k, v in env.items() if k.startswith("RELAPP_")} == {
        "RELAPP_VERSION": "1.4.0",
        "RELAPP_TAG": "v{version}",
        "RELAPP_SHA": "0123456789abcdef0123456789abcdef01234567",
        "RELAPP_ENVIRONMENT": "qa",
        "RELAPP_PROJECT": "shop",
        "RELAPP_DEPLOYMENT_ID": "42",
    }
    assert env["DEPLOY_MODE"] == "blue-green"
    assert env["DEPLOY_TOKEN"] == SECRET
    assert env["DEPLOY_REGION"] == "eu-west-1"
    assert "DATABASE_URL" not in env
    assert env["PATH"] == os.environ["PATH"]


def test_secret_is_masked_in_every_log_line(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        "leak.py",
        """
        import os, sys
        token = os.environ["DEPLOY_TOKEN"]
        print("token is", token, flush=True)
        print(f"url=https://x:{token}@host/{token}", file=sys.stderr, flush=True)
        print("x" * 4090 + token, flush=True)  # the secret straddles the 4 KB line cap
        sys.stdout.write(token)  # last line without newline
        """,
    )
    driver = build_driver(
        {"kind": "command", "argv": [sys.executable, prog], "secrets": {"DEPLOY_TOKEN": SECRET}}
    )
    result, lines = run(driver)
    assert result.outcome is Outcome.SUCCEEDED
    assert "token is ****" in lines
    assert "url=https://x:****@host/****" in lines
    assert "****" in lines
    truncated = [line for line in lines if line.startswith("xxxx")]
    assert len(truncated) == 1 and truncated[0].endswith("[line truncated]")
    assert not any(SECRET[:4] in line for line in lines), lines


def test_stdout_and_stderr_are_merged_in_order(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        "both.py",
        """
        import sys
        print("one", flush=True)
        print("two", file=sys.stderr, flush=True)
        print("three\\r", flush=True)
        sys.stdout.buffer.write(b"bad \\xff byte\\n")
        """,
    )
    result, lines = run(build_driver({"kind": "command", "argv": [sys.executable, prog]}))
    assert result.outcome is Outcome.SUCCEEDED
    output = lines[1:-1]  # first: the command line, last: the closing sentence
    assert output == ["one", "two", "three", "bad \ufffd byte"]


@pytest.mark.parametrize(
    ("code", "outcome", "message"),
    [
        ("raise SystemExit(0)", Outcome.SUCCEEDED, "exited with 0"),
        ("raise SystemExit(7)", Outcome.FAILED, "exited with 7"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", Outcome.FAILED,
         "killed by SIGKILL"),
    ],
)  # fmt: skip
def test_exit_status_maps_to_outcome(code: str, outcome: Outcome, message: str) -> None:
    result, lines = run(build_driver({"kind": "command", "argv": [sys.executable, "-c", code]}))
    assert result.outcome is outcome
    assert result.message == message
    assert lines[-1] == message


def test_missing_program_fails_with_a_sentence(tmp_path: Path) -> None:
    driver = build_driver({"kind": "command", "argv": [str(tmp_path / "nope.sh"), "{tag}"]})
    result, _ = run(driver)
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith("Could not start")


def test_missing_working_directory_fails_with_a_sentence(tmp_path: Path) -> None:
    driver = build_driver({"kind": "command", "argv": ["true"], "cwd": str(tmp_path / "gone")})
    result, _ = run(driver)
    assert result.outcome is Outcome.FAILED
    assert result.message == f"The working directory {str(tmp_path / 'gone')!r} does not exist."


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    prog = script(tmp_path, "stubborn.py", STUBBORN)
    pids = tmp_path / "pids"
    driver = CommandDriver([sys.executable, prog, str(pids)], timeout=3, kill_grace=0.5)
    result, lines = run(driver)
    assert result.outcome is Outcome.FAILED
    assert result.message == "timed out after 3 s"
    assert "started" in lines
    child, grandchild = (int(p) for p in pids.read_text().split())
    assert not alive(child)
    assert not alive(grandchild)


def test_should_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    prog = script(tmp_path, "stubborn.py", STUBBORN)
    pids = tmp_path / "pids"
    driver = CommandDriver([sys.executable, prog, str(pids)], timeout=120, kill_grace=0.5)
    result, _ = run(driver, stop=pids.exists)
    assert result.outcome is Outcome.FAILED
    assert result.message == "stopped"
    child, grandchild = (int(p) for p in pids.read_text().split())
    assert not alive(child)
    assert not alive(grandchild)


def test_background_children_do_not_outlive_a_finished_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg"
    driver = CommandDriver(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo done"])
    result, lines = run(driver)
    assert result.outcome is Outcome.SUCCEEDED
    assert "done" in lines
    assert not alive(int(pidfile.read_text()))


def test_output_is_capped_with_a_marker(tmp_path: Path) -> None:
    driver = CommandDriver(
        [sys.executable, "-c", "for i in range(100): print(i)\nprint('x' * 10000)"],
        max_lines=10,
    )
    result, lines = run(driver)
    assert result.outcome is Outcome.SUCCEEDED
    assert lines[1:11] == [str(i) for i in range(10)]
    assert lines[11].startswith("relapp: output truncated after 10 lines")
    assert lines[12] == "relapp: 91 more lines of output were not kept."
    assert len(lines) == 14


def test_long_line_is_cut_at_4_kb(tmp_path: Path) -> None:
    driver = CommandDriver([sys.executable, "-c", "print('y' * 100000); print('next')"])
    result, lines = run(driver)
    assert result.outcome is Outcome.SUCCEEDED
    assert lines[1] == "y" * 4096 + " [line truncated]"
    assert lines[2] == "next"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"argv": ["deploy.sh", "{branch}"]}, "{branch}"),
        ({"argv": ["deploy.sh"], "timout": 5}, "'timout'"),
        ({"argv": []}, "'argv'"),
        ({"argv": "deploy.sh {tag}"}, "'argv'"),
        ({"argv": ["{tag}"]}, "'argv'"),
        ({"argv": ["deploy.sh"], "timeout": 0}, "'timeout'"),
        ({"argv": ["deploy.sh"], "timeout": True}, "'timeout'"),
        ({"argv": ["deploy.sh"], "env": {"RELAPP_TAG": "x"}}, "'env'"),
        ({"argv": ["deploy.sh"], "env": {"A B": "x"}}, "'env'"),
        ({"argv": ["deploy.sh"], "secrets": {"TOKEN": 5}}, "'secrets.TOKEN'"),
        ({"argv": ["deploy.sh"], "pass_env": "HOME"}, "'pass_env'"),
    ],
)
def test_bad_command_settings_are_refused_naming_the_key(
    settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(DriverConfigError, match=re.escape(key)):
        build_driver({"kind": "command", **settings})


def test_build_driver_refuses_an_unknown_kind() -> None:
    with pytest.raises(DriverConfigError, match="'kind'"):
        build_driver({"kind": "ssh"})


def test_mask_replaces_secrets_of_four_chars_or_more() -> None:
    assert mask("a abc abcd abcdef", ["abc", "abcd", ""]) == "a abc **** ****ef"
    assert mask("key=abcdef", ["abcd", "abcdef"]) == "key=****"


def test_secrets_of_lists_the_configured_secret_values() -> None:
    assert secrets_of({"kind": "command", "argv": ["x"], "secrets": {"A": "one1", "B": ""}}) == [
        "one1"
    ]
    assert secrets_of({"kind": "webhook", "url": "https://ci", "secret": SECRET}) == [SECRET]
    assert secrets_of({"kind": "manual"}) == []


def test_manual_driver_logs_instructions_and_waits() -> None:
    driver = build_driver(
        {"kind": "manual", "instructions": "Open the console.\nDeploy {tag} to {environment} {x}."}
    )
    assert isinstance(driver, ManualDriver)
    result, lines = run(driver, make_ctx(tag="v{environment}"))
    assert result.outcome is Outcome.WAITING
    assert lines[1:] == ["Open the console.", "Deploy v{environment} to qa {x}."]


def test_manual_driver_refuses_unknown_settings() -> None:
    with pytest.raises(DriverConfigError, match="'steps'"):
        build_driver({"kind": "manual", "steps": []})
