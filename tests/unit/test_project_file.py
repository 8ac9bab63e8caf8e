"""``launcher.toml``: every key as the flag words it becomes, the command line over the file,
paths relative to the file, and each kind of bad file refused with its exact message (exit 2,
before the engine is touched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from launcher._cli import _command_parser, build_parser, main
from launcher._errors import UsageError
from launcher._project_file import FlagSpec, flag_specs, parse_project_file
from tests.conftest import error_text

SPECS: dict[str, FlagSpec] = flag_specs(_command_parser(build_parser("up"), "up"))
FILE = Path("/p/launcher.toml")

# key, its line in the file, the words it becomes (paths taken from /p, the file's folder)
KEYS = [
    ("name", 'name = "my-model"', ["--name=my-model"]),
    ("gpus", 'gpus = ["all"]', ["--gpus=all"]),
    ("require-gpu", "require-gpu = true", ["--require-gpu"]),
    ("publish", 'publish = ["127.0.0.1:8080:8000", "9090:9090"]',
     ["--publish=127.0.0.1:8080:8000", "--publish=9090:9090"]),
    ("volume", 'volume = ["./data:/data", "models:/models", "/abs:/abs:ro"]',
     ["--volume=/p/data:/data", "--volume=models:/models", "--volume=/abs:/abs:ro"]),
    ("env", 'env = { LOG_LEVEL = "debug", MAX_BATCH_ROWS = 64 }',
     ["--env=LOG_LEVEL=debug", "--env=MAX_BATCH_ROWS=64"]),
    ("env-file", 'env-file = ["service.env"]', ["--env-file=/p/service.env"]),
    ("memory", 'memory = "8g"', ["--memory=8g"]),
    ("cpus", "cpus = 2.5", ["--cpus=2.5"]),
    ("shm-size", 'shm-size = "2g"', ["--shm-size=2g"]),
    ("ulimit", 'ulimit = ["nofile=1024:2048"]', ["--ulimit=nofile=1024:2048"]),
    ("restart", 'restart = "on-failure:3"', ["--restart=on-failure:3"]),
    ("label", 'label = ["team=ml"]', ["--label=team=ml"]),
    ("model", 'model = "models/picker.pt"', ["--model=/p/models/picker.pt"]),
    ("base-image", 'base-image = "python:3.12-slim"', ["--base-image=python:3.12-slim"]),
    ("wheelhouse", 'wheelhouse = "../wheels"', ["--wheelhouse=/wheels"]),
    ("tag", 'tag = "me/svc:1"', ["--tag=me/svc:1"]),
    ("no-cache", "no-cache = true", ["--no-cache"]),
    ("cuda", 'cuda = "12.6"', ["--cuda=12.6"]),
    ("no-probe", "no-probe = false", []),
    ("probe-file", 'probe-file = "/etc/gpu-host.json"', ["--probe-file=/etc/gpu-host.json"]),
    ("verbose", "verbose = true", ["--verbose"]),
    ("predictor", 'predictor = "predict:Predictor"', ["--predictor=predict:Predictor"]),
    ("code", 'code = "."', ["--code=/p"]),
    ("requirements", 'requirements = "requirements.txt"', ["--requirements=/p/requirements.txt"]),
    ("service-image", 'service-image = "gpu-launcher/service:cpu-0123456789ab"',
     ["--service-image=gpu-launcher/service:cpu-0123456789ab"]),
    ("build", "build = true", ["--build"]),
    ("no-build", "no-build = true", ["--no-build"]),
    ("timeout", "timeout = 300", ["--timeout=300"]),
]


def test_the_table_has_every_key_up_takes() -> None:
    assert [k for k, _, _ in KEYS] == list(SPECS)


@pytest.mark.parametrize("line, words", [(line, words) for _, line, words in KEYS],
                         ids=[k for k, _, _ in KEYS])
def test_each_key_becomes_its_flag(line: str, words: list[str]) -> None:
    (setting,) = parse_project_file(line, FILE, SPECS)
    assert list(setting.args) == words


# The same in other spellings the file takes.
SPELLINGS = [
    ("env-table", '[env]\nA = "1"\nB = "x=y"', ["--env=A=1", "--env=B=x=y"]),
    ("env-list", 'env = ["A=1", "HOME"]', ["--env=A=1", "--env=HOME"]),
    ("label-table", '[label]\n"org.example.team" = "ml"', ["--label=org.example.team=ml"]),
    ("one-string-for-a-list", 'gpus = "all"', ["--gpus=all"]),
    ("number-as-string", "memory = 8589934592", ["--memory=8589934592"]),
    ("home", 'code = "~/proj"', [f"--code={Path.home()}/proj"]),
]


@pytest.mark.parametrize("text, words", [(t, w) for _, t, w in SPELLINGS],
                         ids=[i for i, _, _ in SPELLINGS])
def test_other_spellings(text: str, words: list[str]) -> None:
    assert [w for s in parse_project_file(text, FILE, SPECS) for w in s.args] == words


# Each kind of bad file: its text, the exact error, the exact hint.
_KEYS_HINT = ("keys are launcher up's long flags without the dashes, e.g. memory = \"8g\", "
              "publish = [\"127.0.0.1:8080:8000\"]; see 'launcher up --help'")
BAD = [
    ("not-toml", "memory = 8g",  # tomllib's own words for where it stopped
     f"/p/launcher.toml: not TOML: {error_text(tomllib.TOMLDecodeError, tomllib.loads, 'memory = 8g')}",
     _KEYS_HINT),
    ("unknown-key", 'memroy = "8g"', '/p/launcher.toml: memroy = "8g": unknown key',
     "did you mean memory? " + _KEYS_HINT),
    ("unknown-far", 'colour = "blue"', '/p/launcher.toml: colour = "blue": unknown key',
     _KEYS_HINT),
    ("dry-run-is-no-key", "dry-run = true", "/p/launcher.toml: dry-run = true: unknown key",
     _KEYS_HINT),
    ("list-for-one", 'memory = ["8g"]',
     '/p/launcher.toml: memory = ["8g"]: expected a string (--memory takes one value)',
     'write it as memory = "VALUE"'),
    ("bool-for-one", "name = true",
     "/p/launcher.toml: name = true: expected a string (--name takes one value)",
     'write it as name = "VALUE"'),
    ("string-for-switch", 'no-cache = "yes"',
     '/p/launcher.toml: no-cache = "yes": expected true or false (--no-cache is a switch)',
     "write it as no-cache = true"),
    ("table-for-list", "[publish]\na = 1",
     ('/p/launcher.toml: publish = {"a": 1}: expected a list of strings (--publish may be '
     "repeated)"), 'write it as publish = ["VALUE", ...]'),
    ("nested-list", 'env = [["A=1"]]',
     ('/p/launcher.toml: env = [["A=1"]]: expected a list of strings or a table (--env may be '
     "repeated)"), 'write it as env = ["KEY=VALUE"], or a table: [env] KEY = "VALUE"'),
    ("table-of-tables", "[env.A]\nB = 1",
     ('/p/launcher.toml: env = {"A": {"B": 1}}: expected a list of strings or a table (--env '
     "may be repeated)"), 'write it as env = ["KEY=VALUE"], or a table: [env] KEY = "VALUE"'),
    ("negative-timeout", "timeout = -5",
     ("/p/launcher.toml: timeout = \"-5\": invalid value for --timeout: must be a number of seconds "
     "above 0"), "see 'launcher up --help' for --timeout"),
    ("bad-float", 'timeout = "soon"',
     ("/p/launcher.toml: timeout = \"soon\": invalid value for --timeout: not a number of "
     "seconds"), "see 'launcher up --help' for --timeout"),
]


@pytest.mark.parametrize("text, message, hint", [(t, m, h) for _, t, m, h in BAD],
                         ids=[i for i, _, _, _ in BAD])
def test_a_bad_file_is_named_with_its_key_and_value(text: str, message: str,
                                                    hint: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_project_file(text, FILE, SPECS)
    assert (info.value.message, info.value.hint) == (message, hint)
    assert error_text(UsageError, parse_project_file, text, FILE, SPECS) == message


# --- through the command line: launcher up in a folder with a launcher.toml --------------------


def up(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, list[str]]:  # type: ignore[type-arg]
    code = main(["up", "--dry-run", "--json", "--no-probe", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err.splitlines()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a predictor and its launcher.toml; the tests run in another one."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "predict.py").write_text("class Predictor:\n    pass\n")
    (proj / "requirements.txt").write_text("")
    (proj / "service.env").write_text("FROM_FILE=1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("API_TOKEN", raising=False)
    return proj


TOML = '''\
predictor = "predict:Predictor"
code = "."
requirements = "requirements.txt"
name = "from-file"
publish = ["127.0.0.1:8080:8000"]
volume = ["./data:/data"]
env-file = ["service.env"]
memory = "8g"

[env]
A = "file"
B = "file"
'''


def test_paths_are_relative_to_the_file_and_it_is_read_from_dash_f(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "launcher.toml").write_text(TOML)
    code, plan, _err = up([], capsys)
    assert code == 0 and plan["name"] == "gpu-launcher"  # not here: ./launcher.toml only
    assert main(["-f", str(project / "launcher.toml"), "up", "--dry-run", "--json",
                 "--no-probe"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["predictor"]["code"] == str(project)
    assert plan["predictor"]["requirements"] == str(project / "requirements.txt")
    assert f"{project}/data:/data" in plan["create"]["HostConfig"]["Binds"]
    assert "FROM_FILE=1" in plan["create"]["Env"]
    assert (plan["name"], plan["create"]["HostConfig"]["Memory"]) == ("from-file", 8 << 30)


def test_the_command_line_wins_over_the_file(project: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (project / "launcher.toml").write_text(TOML)
    monkeypatch.chdir(project)
    code, plan, err = up(["--name", "from-flag", "-p", "127.0.0.1:9090:8000", "-e", "B=flag",
                          "-e", "C=flag"], capsys)
    assert code == 0, err
    assert plan["name"] == "from-flag"
    # A repeatable flag replaces the file's list ...
    assert list(plan["create"]["HostConfig"]["PortBindings"]) == ["8000/tcp"]
    assert plan["create"]["HostConfig"]["PortBindings"]["8000/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": "9090"}]
    # ... env and label are merged by KEY, the command line's winning.
    env = [e for e in plan["create"]["Env"] if e[0] in "ABC"]
    assert sorted(env) == ["A=file", "B=flag", "C=flag"]
    file = str(project / "launcher.toml")
    assert plan["settings"] == {
        "code": file, "env": f"{file}, flag", "env-file": file, "memory": file,
        "name": "flag", "no-probe": "flag", "predictor": file, "publish": "flag",
        "requirements": file, "volume": file}


def test_a_switch_on_the_command_line_beats_false_in_the_file(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (project / "launcher.toml").write_text('no-cache = false\ntag = "me/svc:1"\n')
    monkeypatch.chdir(project)
    code, plan, _ = up(["--no-cache"], capsys)
    assert (code, plan["no_cache"], plan["image"]) == (0, True, "me/svc:1")


# A value its flag's own check refuses, named with the file and the key: exit 2, before the
# engine (DOCKER_HOST names none).
BAD_VALUES = [
    ("memory", 'memory = "lots"',
     ('{file}: memory = "lots": invalid argument "lots" for "--memory" flag: invalid size: '
     "'lots'"), "a size with an optional unit b, k, m, g, t, e.g. 4g"),
    ("name", 'name = "x"',
     ('{file}: name = "x": invalid argument "x" for "--name" flag: Invalid container name (x), '
     "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
     "letters, digits, '_', '.', '-'; at least two characters"),
    ("publish", 'publish = ["8000:8000", "127.0.0.1:x:8000"]',
     ('{file}: publish = ["8000:8000", "127.0.0.1:x:8000"]: invalid argument '
     '"127.0.0.1:x:8000" for "--publish" flag: invalid hostPort: x'),
     "use [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO], e.g. -p 127.0.0.1:8080:8000"),
    ("env", 'env = ["A=1", "=x"]',
     ('{file}: env = ["A=1", "=x"]: invalid argument "=x" for "--env" flag: invalid '
      "environment variable: =x"), "use KEY=VALUE, or KEY to pass the value from this shell"),
    ("cuda", 'cuda = "9.9"',
     ('{file}: cuda = "9.9": invalid argument "9.9" for "--cuda" flag: torch 2.13.0 has no '
     "wheels for CUDA 9.9"), "pick one of 12.6, 13.0, 13.2"),
    ("code", 'predictor = "predict:Predictor"\ncode = "nowhere"',
     ('{file}: code = "nowhere": invalid argument "{dir}/nowhere" for "--code" flag: not a '
     "directory"), "pass the directory that holds the predictor's module"),
    ("restart", 'restart = "sometimes"',
     ('{file}: restart = "sometimes": invalid argument "sometimes" for "--restart" flag: '
      "invalid restart policy 'sometimes'"),
     "one of no, always, unless-stopped, on-failure[:MAX_RETRIES]"),
]


@pytest.mark.parametrize("text, message, hint", [(t, m, h) for _, t, m, h in BAD_VALUES],
                         ids=[i for i, _, _, _ in BAD_VALUES])
def test_a_value_its_flag_refuses_names_the_file_and_key(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        text: str, message: str, hint: str) -> None:
    file = project / "launcher.toml"
    file.write_text(text + "\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project}/no-engine.sock")
    assert main(["up"]) == 2
    out, err = capsys.readouterr()
    assert (out, err.splitlines()) == ("", [
        "launcher: error: " + message.format(file=file, dir=project), f"hint: {hint}"])


def test_a_flag_value_is_not_blamed_on_the_file(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (project / "launcher.toml").write_text('memory = "8g"\n')
    monkeypatch.chdir(project)
    assert main(["up", "--dry-run", "--memory", "lots"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "launcher: error: invalid argument \"lots\" for \"--memory\" flag: invalid size: 'lots'")


def test_other_commands_read_the_keys_they_have(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (project / "launcher.toml").write_text(TOML)
    monkeypatch.chdir(project)
    # render k8s takes name, memory and env from the file (not publish: it has no such flag).
    assert main(["render", "k8s"]) == 0
    out = capsys.readouterr().out
    assert "\n  name: from-file\n" in out
    assert "\n            memory: 8Gi\n" in out
    assert "\n        - name: A\n          value: file\n" in out


DASH_F = [
    ("missing", ["-f", "nope.toml", "up"], ("launcher: error: {cwd}/nope.toml: No such file or "
     "directory"), "hint: launcher -f FILE names a launcher.toml; launcher init DIR writes one"),
    ("not-a-file-command", ["-f", "x.toml", "init", "d"],
     "launcher: error: launcher -f x.toml: launcher init reads no launcher.toml",
     "hint: -f goes with up, build, push, render, down, status, logs"),
    ("no-file", ["-f"], "launcher: error: argument -f: expected one argument",
     "hint: launcher -f FILE up ..."),
]


@pytest.mark.parametrize("argv, message, hint", [(a, m, h) for _, a, m, h in DASH_F],
                         ids=[i for i, _, _, _ in DASH_F])
def test_dash_f_refusals(project: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                         message: str, hint: str) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [message.format(cwd=Path.cwd()), hint]


FILE_COMMANDS = [["up"], ["build"], ["push", "registry.example/svc:1"], ["render", "k8s"],
                 ["down"], ["status"], ["logs"]]


_BAD_TIMEOUT = ('timeout = "soon"', ("{file}: timeout = \"soon\": invalid value for --timeout: "
                                     "not a number of seconds"),
                "see 'launcher up --help' for --timeout")
_BAD_CUDA = ('cuda = "9.9"', ('{file}: cuda = "9.9": invalid argument "9.9" for "--cuda" flag: '
                             "torch 2.13.0 has no wheels for CUDA 9.9"),
             "pick one of 12.6, 13.0, 13.2")
# Every file command refuses a bad file before the engine; up, build and push also check the
# file's values with their own flags' checks.
PER_COMMAND = ([(c, *_BAD_TIMEOUT) for c in FILE_COMMANDS]
               + [(c, *_BAD_CUDA) for c in FILE_COMMANDS[:3]])


@pytest.mark.parametrize("command, text, message, hint", PER_COMMAND,
                         ids=[f"{c[0]}-{t.split()[0]}" for c, t, _, _ in PER_COMMAND])
def test_every_file_command_refuses_a_bad_file_before_the_engine(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        command: list[str], text: str, message: str, hint: str) -> None:
    (project / "launcher.toml").write_text(text + "\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{project}/no-engine.sock")
    assert main(command) == 2
    assert capsys.readouterr().err.splitlines() == [
        "launcher: error: " + message.format(file=project / "launcher.toml"), f"hint: {hint}"]
