"""Deployment files and READMEs: what can be checked without a Docker engine or a Prefect server.

The Dockerfiles parse (a small parser below: known instructions, line continuations, exec-form
JSON), install the project the way the Makefile does, and every ``ctcorpus`` command, ``python -m``
module and repository path they, compose or the docker README use exists. ``docker/compose.yaml``
and ``prefect.yaml`` parse, agree with each other, and point at real flow functions. The commands
the two READMEs show use options their commands have (a training container gets the shared memory
its loader needs, a Dask worker what the compose workers get), the README's config example is a
valid config, its dependency table names the packages ``pyproject.toml`` declares, whose metadata
setuptools reads without deprecation warnings, and the CLI's help names real config fields.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from ctcorpus.config import IngestConfig, RunConfig
from flows.runtime import prefect_environment

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
COMPOSE = DOCKER / "compose.yaml"
PREFECT_YAML = ROOT / "prefect.yaml"
README = DOCKER / "README.md"
TOP_README = ROOT / "README.md"

KEYWORDS = frozenset(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL "
    "STOPSIGNAL USER VOLUME WORKDIR".split()
)
EXPECTED_SERVICES = {"prefect-server", "dask-scheduler", "dask-worker-1", "dask-worker-2", "pipeline"}


# --- a tiny Dockerfile parser --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    """One logical Dockerfile instruction (continuations joined) and the line it starts on."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(text: str, name: str = "Dockerfile") -> list[Instruction]:
    """Split a Dockerfile into instructions; raise ValueError naming the file and line."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not parts and not stripped):
            continue  # comments (also inside continuations) and blank lines between instructions
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if continued:
            continue
        keyword, _, arguments = " ".join(part for part in parts if part).partition(" ")
        parts = []
        if keyword.upper() not in KEYWORDS:
            raise ValueError(f"{name}:{start}: unknown instruction {keyword!r}")
        if not arguments.strip():
            raise ValueError(f"{name}:{start}: {keyword} has no arguments")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    if parts:
        raise ValueError(f"{name}:{start}: file ends inside a line continuation")
    return instructions


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of a CMD/ENTRYPOINT/VOLUME in exec form; ValueError if it is not one."""
    try:
        value = json.loads(instruction.arguments)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {instruction.line}: {instruction.keyword} is not exec-form JSON: {exc}") from None
    if not (isinstance(value, list) and value and all(isinstance(item, str) for item in value)):
        raise ValueError(f"line {instruction.line}: {instruction.keyword} must be a JSON array of strings")
    return value


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """ENV key=value pairs of all ENV instructions."""
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for token in shlex.split(instruction.arguments):
                key, sep, value = token.partition("=")
                assert sep, f"line {instruction.line}: ENV {token!r} is not key=value"
                env[key] = value
    return env


def base_image(instructions: list[Instruction]) -> str:
    """The FROM image with ``${ARG}`` defaults substituted."""
    args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG":
            key, _, value = instruction.arguments.partition("=")
            args[key] = value
        if instruction.keyword == "FROM":
            return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], instruction.arguments.split()[0])
    raise AssertionError("no FROM")


def runs(instructions: list[Instruction]) -> str:
    return "\n".join(i.arguments for i in instructions if i.keyword == "RUN")


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    path = DOCKERFILES[request.param]
    return request.param, parse_dockerfile(path.read_text(encoding="utf-8"), path.name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM python:3.11-slim\nRUNN echo hi\n", "Dockerfile:2: unknown instruction 'RUNN'"),
        ("FROM python:3.11-slim\nRUN echo \\\n", "ends inside a line continuation"),
        ("FROM python:3.11-slim\nUSER\n", "USER has no arguments"),
    ],
)
def test_parser_rejects_broken_dockerfiles(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_dockerfile(text)


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM x\nRUN a \\\n  # inner comment\n  && b\nCMD [\"--help\"]\n")
    assert [(i.keyword, i.arguments, i.line) for i in parsed] == [
        ("FROM", "x", 2),
        ("RUN", "a && b", 3),
        ("CMD", '["--help"]', 6),
    ]
    with pytest.raises(ValueError, match="not exec-form JSON"):
        exec_form(Instruction("CMD", "ctcorpus --help", 1))


def test_dockerfile_structure(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    keywords = [i.keyword for i in instructions]
    assert keywords[: keywords.index("FROM")] == ["ARG"] * keywords.index("FROM")
    assert keywords.count("FROM") == 1
    entrypoint = [i for i in instructions if i.keyword == "ENTRYPOINT"]
    assert [exec_form(i) for i in entrypoint] == [["ctcorpus"]]
    for instruction in instructions:
        if instruction.keyword in {"CMD", "VOLUME"}:
            exec_form(instruction)
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    assert keywords.index("USER") > max(n for n, k in enumerate(keywords) if k == "RUN")
    workdir = [i.arguments for i in instructions if i.keyword == "WORKDIR"]
    assert workdir == ["/app"]


def test_dockerfile_copies_existing_paths_not_ignored(dockerfile: tuple[str, list[Instruction]]) -> None:
    kind, instructions = dockerfile
    ignore_file = DOCKERFILES[kind].with_name(DOCKERFILES[kind].name + ".dockerignore")
    ignored = {
        line.strip() for line in ignore_file.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")
    }
    assert ".venv" in ignored  # a 3 GB virtualenv must not be sent as build context
    assert "**/.env" in ignored  # nor the pseudonym key of docker/.env
    copies = [shlex.split(i.arguments) for i in instructions if i.keyword == "COPY"]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"{DOCKERFILES[kind].name}: COPY source {source} does not exist"
            assert source not in ignored, f"{source} is copied but excluded by {ignore_file.name}"


def _makefile_install() -> tuple[str, str, set[str]]:
    """The torch pin, the project install arguments and the uninstalled packages of the Makefile."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch_pin = re.search(r"pip install[^\n]*?(torch==[\w.]+)", text)
    project = re.search(r"pip install[^\n]*?(-c constraints\.txt -e) '?\.", text)
    uninstall = re.search(r"pip uninstall[^\n]*?-y ([^\n]+)", text)
    assert torch_pin and project and uninstall, "Makefile install step changed; update this test"
    return torch_pin.group(1), project.group(1), set(uninstall.group(1).split())


def test_cpu_image_installs_like_the_makefile() -> None:
    instructions = parse_dockerfile(DOCKERFILES["cpu"].read_text(encoding="utf-8"))
    torch_pin, project_args, removed = _makefile_install()
    assert base_image(instructions) == "python:3.11-slim"
    commands = runs(instructions)
    assert torch_pin in commands
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu " + re.escape(torch_pin), commands)
    assert f"{project_args} ." in commands
    uninstall = re.search(r"pip uninstall -y ([\w -]+)", commands)
    assert uninstall and set(uninstall.group(1).split()) == removed == {"argparse", "torchvision"}
    assert torch_pin in (ROOT / "constraints.txt").read_text(encoding="utf-8")


def test_gpu_image_keeps_its_matching_torchvision() -> None:
    instructions = parse_dockerfile(DOCKERFILES["gpu"].read_text(encoding="utf-8"))
    image = base_image(instructions)
    match = re.fullmatch(r"pytorch/pytorch:([\d.]+)-cuda[\d.]+-cudnn\d+-runtime", image)
    assert match, image
    torch_pin, project_args, _ = _makefile_install()
    assert torch_pin == f"torch=={match.group(1)}", "the base image's torch must satisfy the project's pin"
    commands = runs(instructions)
    assert f"{project_args} ." in commands
    uninstall = re.search(r"pip uninstall -y ([\w -]+)", commands)
    assert uninstall and set(uninstall.group(1).split()) == {"argparse"}
    assert "torchvision.ops" in commands  # the build checks the torch/torchvision pair works


def test_images_keep_prefect_and_totalsegmentator_offline(dockerfile: tuple[str, list[Instruction]]) -> None:
    _, instructions = dockerfile
    env = env_of(instructions)
    expected = prefect_environment(RunConfig())
    for key in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        assert env[key] == expected[key], key
    assert env["TOTALSEG_WEIGHTS_PATH"] == "/weights/totalsegmentator"
    config_json = re.search(r"printf '(\{.*?\})\\n' > \"\$TOTALSEG_HOME_DIR/config\.json\"", runs(instructions))
    assert config_json and json.loads(config_json.group(1))["send_usage_stats"] is False


# --- compose ------------------------------------------------------------------------------------


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with no variables set."""

    def default(match: re.Match[str]) -> str:
        return match.group(3) if match.group(2) == ":-" else f"<{match.group(1)}>"

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", default, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (host source, read-only) of a service's short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = _interpolate(volume).split(":")
        mounts[target] = (source, mode == ["ro"])
    return mounts


def test_compose_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        if service["image"].startswith("ctcorpus:"):
            build = service["build"]
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILES["cpu"]
        assert service.get("restart") == "unless-stopped", name


def test_compose_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python" and test[2] == "-c", name
        compile(test[3], f"{name} healthcheck", "exec")
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services and condition == {"condition": "service_healthy"}, (name, dependency)
    assert set(services["pipeline"]["depends_on"]) == {"prefect-server", "dask-scheduler"}


def test_compose_mounts_export_read_only_and_output_writable(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("dask-worker-1", "dask-worker-2", "pipeline"):
        mounts = _mounts(services[name])
        assert mounts["/export"] == ("<CTCORPUS_EXPORT>", True), name
        assert mounts["/output"][1] is False, name
        assert mounts["/config"][1] and mounts["/weights/totalsegmentator"][1], name
    named = {
        source for service in services.values() for source, _ in _mounts(service).values() if not source.startswith(("<", ".", "/"))
    }
    assert named == set(compose["volumes"]) == {"prefect-data"}


def test_compose_gives_the_pseudonym_key_to_every_service_that_runs_ctcorpus(
    compose: dict[str, Any], prefect_project: dict[str, Any]
) -> None:
    """The services that mount the export run ctcorpus stages, which make pseudonyms (plan_export in
    the pipeline, process_unit on the workers): each gets the key from the host, required so compose
    refuses to start without it; the others never see it, and no deployment carries it to the server."""
    variable = IngestConfig().pseudonym_key_env
    services = compose["services"]
    stages = {name for name, service in services.items() if "/export" in _mounts(service)}
    assert stages == {"dask-worker-1", "dask-worker-2", "pipeline"}
    for name, service in services.items():
        value = service.get("environment", {}).get(variable)
        if name in stages:
            assert value and re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), (name, value)
        else:
            assert value is None, name
    for deployment in prefect_project["deployments"]:
        assert variable not in (deployment["work_pool"]["job_variables"].get("env") or {}), deployment["name"]


def test_compose_variables_are_documented(compose: dict[str, Any]) -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text(encoding="utf-8")))
    documented = set(re.findall(r"^\| `(\w+)` \| (?:required|`[^`]+`) \|", README.read_text(encoding="utf-8"), re.M))
    assert used == documented


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_readme_config_names_the_report_exports_inside_the_export_mount(compose: dict[str, Any]) -> None:
    """The deployments pass no report_files: the README's config is where the nightly ingest finds the
    reports; without them every study of the corpus is reportless."""
    from ctcorpus.config import config_from_dict

    text = README.read_text(encoding="utf-8")
    config = config_from_dict(yaml.safe_load(re.search(r"ctcorpus\.yaml <<'EOF'\n(.*?)\nEOF\n", text, re.DOTALL).group(1)))
    export = next(_interpolate(v).split(":")[1] for v in compose["x-data-volumes"] if "CTCORPUS_EXPORT" in v)
    assert config.run.report_files and all(f.is_relative_to(export) for f in config.run.report_files)


def test_compose_addresses_agree(compose: dict[str, Any], prefect_project: dict[str, Any]) -> None:
    services = compose["services"]
    server_port = _option(services["prefect-server"]["command"], "--port")
    assert services["pipeline"]["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{server_port}/api"
    RunConfig(prefect_api_url=services["pipeline"]["environment"]["PREFECT_API_URL"])  # valid for the config too
    scheduler = f"tcp://dask-scheduler:{_option(services['dask-scheduler']['command'], '--port')}"
    for name in ("dask-worker-1", "dask-worker-2"):
        command = services[name]["command"]
        assert services[name]["entrypoint"] == ["dask", "worker"]
        assert command[0] == scheduler
        assert _option(command, "--nthreads") == "1" and _option(command, "--name") == name
    ingest = _deployment(prefect_project, "ingest-nightly")
    assert ingest["parameters"]["dask_address"] == scheduler
    assert f"dask_address: {scheduler}" in README.read_text(encoding="utf-8")
    pool = prefect_project["deployments"][0]["work_pool"]["name"]
    pipeline = services["pipeline"]["command"][0]
    assert f"--pool {pool}" in pipeline and f"work-pool create {pool}" in pipeline
    assert "prefect --no-prompt deploy --all" in pipeline and "--with-healthcheck" in pipeline


# --- prefect.yaml -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_project() -> dict[str, Any]:
    data = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    from prefect.cli.deploy._models import PrefectYamlModel

    PrefectYamlModel.model_validate(data)  # Prefect's own schema of the file
    return data


def _deployment(project: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [d for d in project["deployments"] if d["name"] == name]
    return found


def _load_flow(entrypoint: str) -> Any:
    path, _, function = entrypoint.partition(":")
    assert (ROOT / path).is_file(), f"prefect.yaml: {path} does not exist"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def test_prefect_yaml_deployments_point_at_flows(prefect_project: dict[str, Any]) -> None:
    from prefect import Flow

    deployments = prefect_project["deployments"]
    assert [d["entrypoint"] for d in deployments] == [
        "flows/ingest.py:ingest_export",
        "flows/build.py:build_dataset",
        "flows/audit.py:audit_dataset",
    ]
    assert len({d["name"] for d in deployments}) == len(deployments)
    for deployment in deployments:
        flow = _load_flow(deployment["entrypoint"])
        assert isinstance(flow, Flow), deployment["entrypoint"]
        parameters = inspect.signature(flow.fn).parameters
        required = {name for name, p in parameters.items() if p.default is inspect.Parameter.empty}
        # every parameter given exists, and a run started without parameters has all it needs
        assert required <= set(deployment["parameters"]) <= set(parameters), (deployment["name"], list(parameters))
        assert deployment["parameters"]["config_path"] == "/config/ctcorpus.yaml"


def test_prefect_yaml_schedules_only_ingest(prefect_project: dict[str, Any]) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    ingest = _deployment(prefect_project, "ingest-nightly")
    (schedule,) = ingest["schedules"]
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron
    assert ingest["parameters"]["export_dir"] == "/export"
    assert ingest["concurrency_limit"] == 1
    for name in ("build", "audit"):
        assert not _deployment(prefect_project, name).get("schedules")


def test_prefect_yaml_runs_in_the_image_workdir(prefect_project: dict[str, Any]) -> None:
    (step,) = prefect_project["pull"]
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == "/app"
    assert prefect_project["prefect-version"].split(".")[0] == importlib.metadata.version("prefect").split(".")[0]


def test_readme_deployment_runs_exist(prefect_project: dict[str, Any]) -> None:
    referenced = re.findall(r"prefect deployment run ([\w-]+)/([\w-]+)", README.read_text(encoding="utf-8"))
    assert len(referenced) == len(prefect_project["deployments"])
    known = {
        (_load_flow(d["entrypoint"]).name, d["name"]) for d in prefect_project["deployments"]
    }
    assert set(referenced) == known


# --- commands, modules and paths the deployment files use ---------------------------------------


def _deployment_texts() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in [*DOCKERFILES.values(), COMPOSE, README, PREFECT_YAML]}


def _ctcorpus_commands(compose_data: dict[str, Any]) -> set[str]:
    """Subcommands of ``ctcorpus`` that the images, compose and the README run."""
    commands = set()
    for path in DOCKERFILES.values():
        for instruction in parse_dockerfile(path.read_text(encoding="utf-8")):
            if instruction.keyword == "CMD":
                commands.add(exec_form(instruction)[0])
    for service in compose_data["services"].values():
        if service["image"].startswith("ctcorpus:") and "entrypoint" not in service and "command" in service:
            commands.add(service["command"][0])
    commands.update(command for readme, command, _ in _readme_invocations() if readme == str(README.relative_to(ROOT)))
    return commands


def test_every_ctcorpus_command_used_exists(compose: dict[str, Any]) -> None:
    from ctcorpus.cli import app

    commands = _ctcorpus_commands(compose)
    assert {"--help", "synth", "train", "verify"} <= commands
    group = typer.main.get_command(app)
    subcommands = set(getattr(group, "commands", {}))  # typer vendors its own click: no isinstance
    assert commands - {"--help"} <= subcommands, commands - subcommands
    runner = CliRunner()
    for command in sorted(commands):
        args = [command] if command.startswith("-") else [command, "--help"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"`ctcorpus {' '.join(args)}` failed: {result.output}"


def test_python_modules_and_repository_paths_exist() -> None:
    modules: set[str] = set()
    paths: set[str] = set()
    for text in _deployment_texts().values():
        modules.update(re.findall(r"python -m ([\w.]+)", text))
        paths.update(re.findall(r"(?<![\w/.=])((?:flows|ctcorpus|schemas|bench|docker)/[\w./-]*\w)", text))
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"
    generated = {"docker/config", "docker/output", "docker/weights", "docker/config/ctcorpus.yaml", "docker/.env"}
    missing = sorted(p for p in paths - generated if not (ROOT / p).exists())
    assert not missing, f"referenced but absent: {missing}"
    assert "flows/ingest.py" in paths and "docker/Dockerfile" in paths


def test_console_scripts_used_are_installed() -> None:
    scripts = {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}
    text = "\n".join(_deployment_texts().values())
    used = set(re.findall(r"--entrypoint (\w+)", text)) | {"ctcorpus", "dask", "prefect"}
    assert used <= scripts, used - scripts


def test_the_cli_runs_as_a_module() -> None:
    # `python -m ctcorpus.cli` works where the console script is not on PATH (a venv not activated)
    result = subprocess.run([sys.executable, "-m", "ctcorpus.cli", "--help"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "verify" in result.stdout, result.stderr[-2000:]


# --- the READMEs' commands and dependency table --------------------------------------------------


def _readme_commands() -> list[tuple[str, list[str]]]:
    """(README, words) of every command line in the READMEs' shell blocks, continuations joined."""
    commands = []
    for path in (TOP_README, README):
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    commands.append((str(path.relative_to(ROOT)), words))
    return commands


def _readme_invocations() -> list[tuple[str, str, list[str]]]:
    """(README, subcommand, arguments) of every ``ctcorpus`` command in the READMEs' shell blocks,
    also run in an image (``ctcorpus:cpu verify ...``, ``--entrypoint ctcorpus pipeline verify ...``)."""
    invocations = []
    for readme, words in _readme_commands():
        if words[:2] == ["docker", "build"] or "--entrypoint" in words and words[words.index("--entrypoint") + 1] != "ctcorpus":
            continue  # `-t ctcorpus:cpu .` names the image; `--entrypoint dask ctcorpus:gpu worker` runs Dask
        for start, word in enumerate(words):
            if not re.fullmatch(r"ctcorpus(?::(?:cpu|gpu))?", word):
                continue
            at = start + 2 if words[start - 1 : start] == ["--entrypoint"] else start + 1  # past the service
            if at < len(words) and re.fullmatch(r"[a-z][\w-]*", words[at]):
                rest = words[at + 1 :]
                stop = next((n for n, w in enumerate(rest) if w in {">", "|", "&&", ";"}), len(rest))
                invocations.append((readme, words[at], rest[:stop]))
                break
    return invocations


def test_readme_commands_use_options_their_commands_have() -> None:
    """A README command with an option its command lacks fails for every user who copies it."""
    from ctcorpus.cli import app

    group = typer.main.get_command(app)
    invocations = _readme_invocations()
    assert {"config", "ingest", "build", "audit", "verify", "train"} <= {command for _, command, _ in invocations}
    for readme, name, arguments in invocations:
        command = getattr(group, "commands", {}).get(name)
        assert command is not None, f"{readme}: `ctcorpus {name}`: no such command"
        options = {opt: param for param in command.params if param.param_type_name == "option"
                   for opt in (*param.opts, *param.secondary_opts)}
        positional = [param for param in command.params if param.param_type_name == "argument"]
        given = []
        words = iter(arguments)
        for word in words:
            if word == "--help":
                continue
            if word.startswith("-"):
                assert word in options, f"{readme}: `ctcorpus {name}` has no option {word}"
                if not options[word].is_flag:
                    assert next(words, None) is not None, f"{readme}: `ctcorpus {name} {word}` lacks its value"
            else:
                given.append(word)
        assert len(given) <= len(positional), f"{readme}: `ctcorpus {name}` takes {len(positional)} arguments: {given}"


def _package(name: str) -> str:
    """A distribution name as PyPI compares it (PEP 503), without extras."""
    return re.sub(r"[-_.]+", "-", name.split("[")[0].strip()).lower()


def test_readme_dependency_table_names_exactly_the_declared_dependencies() -> None:
    """Each package pyproject.toml installs, the dev extra too, has its reason in the README (numpy had none)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    declared = {_package(re.match(r"[A-Za-z0-9._\[\],-]+", r).group()) for r in requirements}
    section = TOP_README.read_text(encoding="utf-8").split("## Dependencies and why each is there", 1)[1].split("\n## ", 1)[0]
    header, *first_cells = re.findall(r"^\| ([^|]+) \|", section, re.MULTILINE)
    assert header == "package"
    listed = set()
    for first_cell in first_cells:
        without_notes = re.sub(r"\([^)]*\)", "", first_cell)
        listed.update(_package(name) for name in without_notes.split(",") if name.strip())
    assert listed == declared, {"not in the README": sorted(declared - listed), "not declared": sorted(listed - declared)}


def test_readme_config_examples_are_valid_configs() -> None:
    """A config example with a field the config does not have stops the user's first run."""
    from ctcorpus.config import config_from_dict

    examples = re.findall(r"```yaml\n(.*?)```", TOP_README.read_text(encoding="utf-8"), re.DOTALL)
    assert examples
    for example in examples:
        config_from_dict(yaml.safe_load(example))


def test_cli_help_names_config_fields_and_arguments_that_exist() -> None:
    """A help text's default names what a user can look up: a config field (``run.output_dir``, as
    ``ctcorpus config`` prints it) or the command's own argument (``<dataset>``); ``<version>`` was neither."""
    from ctcorpus.cli import app
    from ctcorpus.config import CorpusConfig

    def is_field(path: str) -> bool:
        model: Any = CorpusConfig
        for name in path.split("."):
            if not (isinstance(model, type) and name in getattr(model, "model_fields", {})):
                return False
            model = model.model_fields[name].annotation
        return True

    sections = "|".join(CorpusConfig.model_fields)
    group = typer.main.get_command(app)
    for name, command in getattr(group, "commands", {}).items():
        parameters = {param.name for param in command.params}
        for param in command.params:
            text = getattr(param, "help", None) or ""
            for field in re.findall(rf"\b(?:{sections})\.(?!html\b|json\b)\w+(?:\.\w+)*", text):  # audit.html: a file
                assert is_field(field), f"`ctcorpus {name}` --{param.name}: no config field {field}"
            for placeholder in re.findall(r"<([\w.]+)>", text):
                assert placeholder in parameters or ("." in placeholder and is_field(placeholder)), (
                    f"`ctcorpus {name}` --{param.name}: <{placeholder}> is no config field or argument")


def _bytes(size: str) -> int:
    """A ``docker run --shm-size`` value (``8g``, ``512m``, ``1024``) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([bkmg]?)", size.lower()).groups()
    return int(number) * 1024 ** "bkmg".index(unit or "b")


def test_readme_training_containers_get_the_shared_memory_the_loader_needs() -> None:
    """The DataLoader's workers pass their batches through /dev/shm, which Docker caps at 64 MB: with
    the default train config a ``docker run ... train`` without ``--shm-size`` (or ``--ipc host``)
    loses its workers to a bus error."""
    from ctcorpus.config import TrainConfig

    train = TrainConfig()
    batch = train.batch_size * 2 * train.input_shape_zyx[0] * train.input_shape_zyx[1] * train.input_shape_zyx[2]  # int16
    needed = train.num_workers * train.prefetch_factor * batch
    runs = [(readme, words) for readme, words in _readme_commands() if words[:2] == ["docker", "run"]
            and any(re.fullmatch(r"ctcorpus:(?:cpu|gpu)", w) and words[n + 1 : n + 2] == ["train"] for n, w in enumerate(words))]
    assert runs
    for readme, words in runs:
        options = dict(zip(words, [*words[1:], ""], strict=True))
        assert options.get("--ipc") == "host" or _bytes(options.get("--shm-size", "64m")) >= needed, (
            f"{readme}: `docker run ... train` gives the DataLoader {options.get('--shm-size', '64m')} of shared memory, "
            f"its batches take up to {needed / 2**20:.0f} MiB")


def test_pyproject_metadata_uses_no_deprecated_field() -> None:
    """Every install builds the project (``pip install -e .``, the images too): setuptools warned on each
    that ``project.license`` as a table is deprecated and that builds stop working with it in 2027."""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert not [str(warning.message) for warning in caught]
    assert distribution.metadata.license_expression == "Apache-2.0"


def test_readme_dask_workers_get_what_the_compose_workers_get(compose: dict[str, Any]) -> None:
    """A worker started by hand (the GPU worker) processes studies: without the key every study fails,
    without a mount of the compose workers' its studies read or write nothing."""
    variable = IngestConfig().pseudonym_key_env
    wanted = set(_mounts(compose["services"]["dask-worker-1"]))
    workers = [(readme, words) for readme, words in _readme_commands()
               if words[:2] == ["docker", "run"] and "--entrypoint" in words
               and words[words.index("--entrypoint") + 1 :][:3:2] == ["dask", "worker"]]
    assert workers
    for readme, words in workers:
        options = list(zip(words, [*words[1:], ""], strict=True))
        mounts = {value.split(":")[1] for flag, value in options if flag in {"-v", "--volume"}}
        assert wanted <= mounts, f"{readme}: the Dask worker lacks {sorted(wanted - mounts)}"
        key = [value for flag, value in options if flag in {"-e", "--env"} and value.split("=")[0] == variable]
        assert key or ("--env-file", "docker/.env") in options, f"{readme}: the Dask worker gets no {variable}"
        scheduler = words[words.index("worker") + 1]
        assert scheduler == f"tcp://dask-scheduler:{_option(compose['services']['dask-scheduler']['command'], '--port')}"
        assert ("--network", f"{compose['name']}_default") in options


def test_a_wheel_holds_the_schemas_its_package_reads(tmp_path: Path) -> None:
    """``pip install .`` (a wheel, not the editable checkout) left ``schemas/`` out: every table write
    then failed with "no such schema file". The wheel holds them as package data, byte for byte."""
    import shutil
    import zipfile

    source = tmp_path / "source"
    for folder in ("ctcorpus", "flows", "schemas"):
        shutil.copytree(ROOT / folder, source / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    installed = tmp_path / "installed"
    zipfile.ZipFile(next((tmp_path / "wheel").glob("ctcorpus-*.whl"))).extractall(installed)  # a wheel is its install
    read = subprocess.run(
        [sys.executable, "-c", "import json, ctcorpus.schemas as s; print(json.dumps([s.__file__, "
                               "{n: s.load_schema(n).version for n in s.schema_names()}]))"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)}, check=True, capture_output=True, text=True)
    module, versions = json.loads(read.stdout)
    assert Path(module).is_relative_to(installed)
    from ctcorpus.schemas import load_schema, schema_names

    assert versions == {name: load_schema(name).version for name in schema_names()}
    assert {p.name: p.read_bytes() for p in (installed / "ctcorpus" / "_schemas").iterdir()} == {
        p.name: p.read_bytes() for p in (ROOT / "schemas").glob("*.json")}
