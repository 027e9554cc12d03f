"""deploy/: manifests valid against the Kubernetes schemas (offline), and every command they run exists."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shlex
import tomllib
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import click
import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

from support import Schedule  # noqa: E402 - after the importorskip above

from leadpulse.core.cli import k8s, ops  # noqa: E402 - after the importorskip above
from leadpulse.core.cli.main import main  # noqa: E402 - after the importorskip above

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
GRACE = 30  # the --grace every manifest passes


def resolve(argv: list[str]) -> None:
    """Parse `argv` (without the program name) against the CLI, as the shell would: unknown commands or
    options raise click.UsageError. Nothing runs."""
    command: click.Command = main
    context = None
    while True:
        context = command.make_context(command.name, list(argv), parent=context, resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 folds them into args
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*context.protected_args, *context.args]
        name, found, argv = command.resolve_command(context, rest)
        if found is None:
            raise click.UsageError(f"no command {name!r}")
        command = found


def check_command(argv: list[str]) -> None:
    if argv[0] == "leadpulse" or argv[0].endswith("/leadpulse"):
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        assert "leadpulse" in scripts, "the console script `leadpulse` is not declared in pyproject.toml"
        resolve(argv[1:])
    elif argv[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(argv[2]) is not None, f"no module {argv[2]}"
    else:
        raise AssertionError(f"unexpected command {argv}")


def k8s_documents(folder: Path) -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in sorted(folder.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template", {}).get("spec", {}).get("containers", [])


@dataclass(frozen=True)
class Tenant:
    name: str
    schedule: Schedule
    source_path: Path | None = None
    store: Path | None = None


# -- Kubernetes ------------------------------------------------------------------------------------------------


def test_every_manifest_in_deploy_k8s_is_valid_against_the_kubernetes_schemas():
    documents = k8s_documents(DEPLOY / "k8s")
    assert {doc["kind"] for _, doc in documents} >= {"Deployment", "ConfigMap", "Secret", "PersistentVolumeClaim"}
    for _, doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_does_refuse_a_misspelt_field():
    _, deployment = next((p, d) for p, d in k8s_documents(DEPLOY / "k8s") if d["kind"] == "Deployment")
    deployment["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_daemon_deployment_mounts_tenants_secrets_and_a_volume_and_probes_health():
    _, deployment = next((p, d) for p, d in k8s_documents(DEPLOY / "k8s") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tenants"]["configMap"]["name"] == "leadpulse-tenants"
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "leadpulse-state"
    assert container["envFrom"][0]["secretRef"]["name"] == "leadpulse-secrets"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["terminationGracePeriodSeconds"] > GRACE
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_every_command_the_k8s_manifests_run_exists():
    commands = [c["command"] for _, doc in k8s_documents(DEPLOY / "k8s") for c in containers(doc)]
    assert commands
    for argv in commands:
        check_command(argv)


def test_generated_cronjobs_are_valid_one_per_tenant_and_forbid_overlaps(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "acme.yaml").write_text("tenant: acme\n")
    tenants = [Tenant("acme", Schedule(every=timedelta(minutes=15))),
               Tenant("Big_Co.eu", Schedule(cron="0 */2 * * *"))]
    written = k8s.write_cronjobs(tenants, config, tmp_path / "out", k8s.Plan())
    documents = k8s_documents(tmp_path / "out")
    assert len(written) == 3
    cronjobs = [doc for _, doc in documents if doc["kind"] == "CronJob"]
    assert [c["spec"]["concurrencyPolicy"] for c in cronjobs] == ["Forbid", "Forbid"]
    assert sorted(c["spec"]["schedule"] for c in cronjobs) == ["*/15 * * * *", "0 */2 * * *"]
    assert next(d for _, d in documents if d["kind"] == "ConfigMap")["data"] == {"acme.yaml": "tenant: acme\n"}
    for _, doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_generated_cronjob_runs_sync_for_its_tenant_on_its_own_volume():
    job = k8s.cronjob(Tenant("acme", Schedule(every=timedelta(hours=1))), k8s.Plan())
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][:4] == ["leadpulse", "sync", "--tenant", "acme"]
    assert pod["volumes"][1]["persistentVolumeClaim"]["claimName"] == "leadpulse-state-acme"
    check_command(pod["containers"][0]["command"])


@pytest.mark.parametrize(
    ("every", "cron"),
    [(timedelta(minutes=1), "* * * * *"), (timedelta(minutes=15), "*/15 * * * *"),
     (timedelta(seconds=20), "* * * * *")],
)
def test_intervals_under_an_hour_become_minute_steps(every, cron):
    assert k8s.cron_schedule(Schedule(every=every), "acme") == cron


@pytest.mark.parametrize(("line", "cron"), [("*/30 6-20 * * 1-5", "*/30 6-20 * * 1-5"),
                                          ("0 9 * * 7", "0 9 * * sun"), ("0 9 * * 5-7", "0 9 * * sun,fri,sat")])
def test_cron_lines_pass_through_with_a_sunday_7_given_by_name(line, cron):
    assert k8s.cron_schedule(Schedule(cron=line), "acme") == cron


def test_hourly_intervals_start_at_a_minute_of_their_own_per_tenant():
    a = k8s.cron_schedule(Schedule(every=timedelta(hours=6)), "acme")
    assert re.fullmatch(r"\d{1,2} \*/6 \* \* \*", a)
    minutes = {k8s.cron_schedule(Schedule(every=timedelta(hours=1)), f"t{i}").split()[0] for i in range(20)}
    assert len(minutes) > 5


@pytest.mark.parametrize(("every", "pattern"), [(timedelta(minutes=30), r"\*/30 \* \* \* \*"),
                                              (timedelta(hours=8), r"\d+ \*/8 \* \* \*"),
                                              (timedelta(hours=24), r"\d+ 0 \* \* \*")])
def test_intervals_that_divide_the_hour_or_the_day_become_even_steps(every, pattern):
    assert re.fullmatch(pattern, k8s.cron_schedule(Schedule(every=every), "acme"))


@pytest.mark.parametrize("every", [timedelta(minutes=45), timedelta(minutes=90), timedelta(hours=5),
                                   timedelta(hours=36), timedelta(days=2), timedelta(seconds=150)])
def test_an_interval_cron_cannot_step_evenly_is_refused(every):
    with pytest.raises(ValueError, match="expected an interval that divides the hour or the day"):
        k8s.cron_schedule(Schedule(every=every), "acme")


def test_deploy_k8s_refuses_an_uneven_interval_naming_the_file_and_what_to_do_and_writes_nothing(tmp_path):
    tenant = Tenant("acme", Schedule(every=timedelta(minutes=45)), source_path=tmp_path / "acme.yaml")
    with pytest.raises(k8s.DeployError) as refused:
        k8s.write_cronjobs([tenant], tmp_path, tmp_path / "out", k8s.Plan())
    assert str(refused.value).startswith(f"{tmp_path / 'acme.yaml'} (tenant acme): schedule.every: ")
    assert "found 45m" in str(refused.value) and "divides the hour" in str(refused.value)
    assert "schedule.cron" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_deploy_k8s_refuses_a_store_off_the_state_volume_naming_the_file_and_what_to_do(tmp_path):
    tenant = Tenant("acme", Schedule(every=timedelta(minutes=15)), source_path=tmp_path / "acme.yaml",
                    store=Path("state/acme.sqlite"))
    with pytest.raises(k8s.DeployError) as refused:
        k8s.cronjob(tenant, k8s.Plan())
    assert str(refused.value).startswith(f"{tmp_path / 'acme.yaml'} (tenant acme): store: ")
    assert "'state/acme.sqlite'" in str(refused.value) and "remove store: from the file" in str(refused.value)
    assert k8s.STATE_MOUNT in str(refused.value)


def test_a_store_on_the_state_volume_is_deployed(tmp_path):
    tenant = Tenant("acme", Schedule(every=timedelta(minutes=15)), store=Path(k8s.STATE_MOUNT) / "acme-crm.sqlite")
    assert k8s.cronjob(tenant, k8s.Plan())["kind"] == "CronJob"


def test_deploy_k8s_command_refuses_the_example_file_with_its_store_key_set(tmp_path):
    from click.testing import CliRunner

    config = tmp_path / "config"
    config.mkdir()
    example = (ROOT / "config" / "hubspot.yaml").read_text()
    (config / "hubspot.yaml").write_text(example.replace("# store: state/", "store: state/"))
    result = CliRunner().invoke(main, ["deploy", "k8s", "--config-dir", str(config), "--out",
                                                    str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"{config / 'hubspot.yaml'} (tenant acme-hubspot): store: " in result.output
    assert not (tmp_path / "out").exists()


def test_resource_names_are_dns_safe_and_short_enough_for_a_cronjob():
    name = k8s.resource_name("Very_Long.Tenant-Name" * 4)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 52
    assert k8s.resource_name("acme") == "leadpulse-acme"
    assert k8s.resource_name("A_B") != k8s.resource_name("a-b")


def test_deploy_k8s_command_writes_manifests_and_reports_bad_files(tmp_path):
    from click.testing import CliRunner
    from file_tenant import contact, file_tenant

    file_tenant(tmp_path, [contact("c1")], [])
    good = (tmp_path / "acme.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(good.replace("tenant: acme", "tenant: bad") + "schedule: {jitter: 1m}\n")
    result = CliRunner().invoke(ops.deploy_group, ["k8s", "--config-dir", str(tmp_path), "--out",
                                                   str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "cronjob-acme.yaml" in result.output and "expected exactly one of every or cron" in result.output
    assert (tmp_path / "out" / "cronjob-acme.yaml").exists()


# -- Docker ----------------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, ...]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        tuple(line.strip().split(None, 1))
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def exec_form(argument: str) -> list[str]:
    return json.loads(argument)


def test_the_image_is_python_slim_and_runs_as_a_non_root_user():
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_every_file_the_dockerfile_copies_exists():
    for op, arg in dockerfile():
        if op == "COPY":
            *sources, _target = shlex.split(arg)
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_the_dockerfile_health_check_and_default_command_exist():
    instructions = dict(dockerfile())
    health = instructions["HEALTHCHECK"]
    check_command(exec_form(health.split("CMD", 1)[1].strip()))
    check_command(exec_form(instructions["ENTRYPOINT"]) + exec_form(instructions["CMD"]))


def test_compose_runs_an_existing_command_with_a_volume_for_the_stores():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["leadpulse"]
    check_command(["leadpulse", *service["command"]])
    check_command(service["healthcheck"]["test"][1:])
    assert any(v.endswith(":/var/lib/leadpulse") for v in service["volumes"])
    assert "leadpulse-state" in compose["volumes"]
    assert int(service["stop_grace_period"].rstrip("s")) > GRACE
    assert (ROOT / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]).exists()


# -- systemd ---------------------------------------------------------------------------------------------------


def test_the_systemd_unit_restarts_on_failure_and_stops_gracefully():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "systemd" / "leadpulse.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/leadpulse")
    check_command(argv)
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    grace = float(argv[argv.index("--grace") + 1])
    assert int(service["TimeoutStopSec"]) >= grace


def test_the_example_config_folder_generates_valid_cronjobs(tmp_path):
    from click.testing import CliRunner

    from leadpulse.core.cli.main import main

    result = CliRunner().invoke(main, ["deploy", "k8s", "--config-dir", str(ROOT / "config"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    documents = k8s_documents(tmp_path)
    assert sum(doc["kind"] == "CronJob" for _, doc in documents) == len(list((ROOT / "config").glob("*.yaml")))
    for _, doc in documents:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        for container in containers(doc):
            check_command(container["command"])
