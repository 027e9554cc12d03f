"""Kubernetes manifests for running past one machine: one CronJob per tenant, generated from a config folder.

Each tenant gets a CronJob with ``concurrencyPolicy: Forbid`` (Kubernetes then refuses overlapping runs as
the daemon does) running ``leadpulse sync --tenant NAME``, and its own volume claim, so its SQLite store
lives on its own volume. The tenant files travel as one ConfigMap; their ``{env: NAME}`` secrets come from
one Secret through ``envFrom``.

A tenant the CronJobs cannot run as its file says (an interval cron cannot step evenly, a ``store:`` off the
state volume) is refused with a `DeployError` naming its file, and nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.errors import DeployError
from leadpulse.core.schedule import Schedule, format_duration, name_offset, weekday_names

DEFAULT_IMAGE = "ghcr.io/leadpulse/leadpulse:latest"
SECRET_NAME = "leadpulse-secrets"
CONFIGMAP_NAME = "leadpulse-tenants"
TENANTS_MOUNT = "/etc/leadpulse/tenants"
STATE_MOUNT = "/var/lib/leadpulse"
UID = 10001
#: Kubernetes appends an 11-character suffix to a CronJob's Job names, and Job names stop at 63
_MAX_CRONJOB_NAME = 52


@dataclass(frozen=True)
class Plan:
    image: str = DEFAULT_IMAGE
    namespace: str = "leadpulse"
    secret_name: str = SECRET_NAME
    storage: str = "1Gi"
    grace_seconds: int = 45


def sync_command(tenant: str) -> list[str]:
    """What each CronJob's container runs."""
    return ["leadpulse", "sync", "--tenant", tenant, "--config-dir", TENANTS_MOUNT, "--state-dir", STATE_MOUNT]


def cron_schedule(schedule: Schedule, tenant: str) -> str:
    """A tenant's schedule as a 5-field cron line: cron as written, intervals as steps of the hour or the day.

    Hourly and longer intervals start at a minute derived from the tenant's name, so tenants sharing an
    interval do not all start at :00. CronJobs have no jitter; it is dropped.

    :raises ValueError: for an interval cron cannot step evenly: minutes that do not divide the hour, hours that
        do not divide the day, or more than a day (a step restarts each hour, day or month: ``*/45`` runs at
        :00 and :45).
    """
    if schedule.cron:
        *rest, weekday = schedule.cron.split()
        # Kubernetes reads weekdays 0-6 only: a 7 (Sunday, as cron and tenant files allow) goes in by name
        if re.search(r"(?<!\d)7(?!\d)", weekday):
            weekday = weekday_names(weekday)
        return " ".join([*rest, weekday])
    every = round(schedule.every.total_seconds()) if schedule.every else 0
    offset = name_offset(tenant, 60)
    minutes, hours = every // 60, every // 3600
    if every <= 60:  # cron's finest step; tenant files refuse less than a minute
        return "* * * * *"
    if every % 60 == 0 and minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    if every % 3600 == 0 and hours <= 24 and 24 % hours == 0:
        return {1: f"{offset} * * * *", 24: f"{offset} 0 * * *"}.get(hours, f"{offset} */{hours} * * *")
    found = format_duration(schedule.every)
    raise ValueError(f"expected an interval that divides the hour or the day, found {found}")


def resource_name(tenant: str, *, prefix: str = "leadpulse-") -> str:
    """A DNS-1123 name for `tenant`, short enough for a CronJob, with a hash when it had to be changed."""
    clean = re.sub(r"[^a-z0-9-]+", "-", tenant.lower()).strip("-") or "tenant"
    name = prefix + clean
    if clean != tenant or len(name) > _MAX_CRONJOB_NAME:
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:6]
        name = f"{name[: _MAX_CRONJOB_NAME - 7].rstrip('-')}-{digest}"
    return name


def configmap(config_dir: Path, plan: Plan) -> dict[str, Any]:
    """The ConfigMap holding every tenant file of `config_dir`, keyed by file name."""
    files = sorted(p for p in config_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": plan.namespace, "labels": _labels()},
        "data": {p.name: p.read_text() for p in files},
    }


def volume_claim(tenant: str, plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": resource_name(tenant, prefix="leadpulse-state-"), "namespace": plan.namespace,
                     "labels": _labels(tenant)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": plan.storage}}},
    }


def cronjob(tenant: TenantConfig, plan: Plan) -> dict[str, Any]:
    """The CronJob of one tenant: Forbid overlaps, never retry a failed Job (the next run resumes anyway)."""
    name = tenant.name
    if lines := refusals(tenant):
        raise DeployError("\n".join(lines))
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": resource_name(name), "namespace": plan.namespace, "labels": _labels(name)},
        "spec": {
            "schedule": cron_schedule(tenant.schedule, name),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 0, "template": _pod(name, plan)}},
        },
    }


def refusals(tenant: TenantConfig) -> list[str]:
    """Why `tenant` cannot run as a CronJob as its file says, one line per reason (none when it can)."""
    return [line for line in (_schedule_refusal(tenant), _store_refusal(tenant)) if line]


def _schedule_refusal(tenant: TenantConfig) -> str | None:
    try:
        cron_schedule(tenant.schedule, tenant.name)
    except ValueError as exc:
        return (
            f"{_file(tenant)}: schedule.every: {exc}; a CronJob would run it unevenly: pick an interval that "
            "divides the hour (such as 10m, 15m, 20m or 30m) or the day (such as 2h, 3h, 6h or 24h), or write "
            "schedule.cron instead"
        )
    return None


def _store_refusal(tenant: TenantConfig) -> str | None:
    store = getattr(tenant, "store", None)
    if store is None or Path(store).is_relative_to(STATE_MOUNT):
        return None
    return (
        f"{_file(tenant)}: store: expected none, or a path under {STATE_MOUNT} (the tenant's state volume), found "
        f"{str(store)!r}; in Kubernetes the store lives on the state volume: remove store: from the file (the store "
        f"is then {STATE_MOUNT}/{tenant.name}.sqlite) or set it to a path under {STATE_MOUNT}"
    )


def _file(tenant: TenantConfig) -> str:
    """The tenant file, as a refusal names it."""
    path = getattr(tenant, "source_path", None)
    return f"{path} (tenant {tenant.name})" if path else f"tenant {tenant.name}"


def _pod(tenant: str, plan: Plan) -> dict[str, Any]:
    return {
        "metadata": {"labels": _labels(tenant)},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": plan.grace_seconds,
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
            "containers": [{
                "name": "sync",
                "image": plan.image,
                "command": sync_command(tenant),
                "envFrom": [{"secretRef": {"name": plan.secret_name}}],
                "volumeMounts": [
                    {"name": "tenants", "mountPath": TENANTS_MOUNT, "readOnly": True},
                    {"name": "state", "mountPath": STATE_MOUNT},
                ],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            }],
            "volumes": [
                {"name": "tenants", "configMap": {"name": CONFIGMAP_NAME}},
                {"name": "state", "persistentVolumeClaim": {
                    "claimName": resource_name(tenant, prefix="leadpulse-state-")}},
            ],
        },
    }


def _labels(tenant: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "leadpulse", "app.kubernetes.io/component": "sync"}
    if tenant is not None:
        labels["leadpulse.io/tenant"] = resource_name(tenant, prefix="")
    return labels


def write_cronjobs(tenants: Sequence[TenantConfig], config_dir: Path, out_dir: Path, plan: Plan) -> list[Path]:
    """Write ``configmap.yaml`` and one ``cronjob-<tenant>.yaml`` (claim + CronJob) per tenant into `out_dir`.

    :raises DeployError: naming every tenant a CronJob cannot run as its file says; nothing is written then.
    """
    refused = [line for tenant in tenants for line in refusals(tenant)]
    if refused:
        raise DeployError("\n".join(refused))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [_dump(out_dir / "configmap.yaml", [configmap(config_dir, plan)])]
    for tenant in sorted(tenants, key=lambda t: t.name):
        path = out_dir / f"cronjob-{resource_name(tenant.name, prefix='')}.yaml"
        written.append(_dump(path, [volume_claim(tenant.name, plan), cronjob(tenant, plan)]))
    return written


def _dump(path: Path, documents: list[dict[str, Any]]) -> Path:
    header = "# Generated by `leadpulse deploy k8s`; edit the tenant files and generate again.\n"
    path.write_text(header + yaml.safe_dump_all(documents, sort_keys=False))
    return path
