"""Every error leadpulse raises on purpose, under one root, and what each one means for a run.

Each message names the tenant, the file or the record at fault, what was expected and what to do; none ever
carries a secret. A caller that must tell leadpulse's own errors from faults in leadpulse or a library (which
deserve a traceback) catches `LeadpulseError`::

    LeadpulseError                  base of them all
    ├── ConfigError                 a tenant file (or a secret it references) is not as expected at one key
    │   ├── ConfigErrors            several such faults in one file, one per line
    │   └── DuplicateTenant         two files of one config folder name the same tenant: neither is loaded
    ├── UnknownConnector            no connector is installed for a tenant file's ``crm.kind``
    ├── ConnectorError              talking to a tenant's CRM went wrong; carries the tenant's name
    │   ├── AuthError               credentials refused after one refresh: the tenant's run stops
    │   ├── QuotaExhausted          the CRM's daily allowance (or the tenant's own share) is spent: the run
    │   │                           checkpoints and stops cleanly
    │   ├── SchemaError             properties leadpulse writes are missing and cannot be created
    │   └── TransientError          retries ran out on 429 / 5xx / dropped connections: the run stops, everything
    │       │                       already checkpointed stays
    │       └── OutcomeUnknown      a create lost its answer: it may exist in the CRM, so it is looked up by its
    │                               idempotency key before it is ever sent again
    ├── StoreError                  the checkpoint store cannot be opened or do what was asked
    │   └── RunLocked               another run of the tenant holds its run lock
    ├── ScoringFailed               a scoring worker died or failed; the chunks saved before stay saved
    ├── DaemonError                 the daemon cannot start (config folder missing, port taken)
    ├── DeployError                 a tenant file asks for what its Kubernetes CronJob cannot do
    └── DemoUnavailable             the demo's files are not here (an installed package, not a checkout)

A bad *record* is never an exception: a malformed pulled record goes into `Page.skipped`, a refused write comes
back as a failed `WriteResult` (see `leadpulse.core.contract`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class LeadpulseError(Exception):
    """An error leadpulse raised on purpose; its message says what went wrong and what to do."""


class ConfigError(LeadpulseError):
    """A tenant file (or a secret it references) is not what leadpulse expects at one key."""

    def __init__(self, path: Path | str, key_path: str, expected: str, found: str) -> None:
        super().__init__(f"{path}: {key_path}: expected {expected}, found {found}")
        self.path, self.key_path, self.expected, self.found = Path(path), key_path, expected, found

    @property
    def errors(self) -> list[ConfigError]:
        return [self]


class ConfigErrors(ConfigError):
    """Several faults in one tenant file, one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.key_path, first.expected, first.found)
        self.args = ("\n".join(str(error) for error in errors),)
        self._errors = errors

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)


class DuplicateTenant(ConfigError):
    """Two or more files of one config folder name the same tenant, so none of them is loaded: any of them could
    pass for the tenant's live rules (a copy kept beside the real file, ``acme-v1.yaml``, sorts first)."""

    def __init__(self, tenant: str, paths: Sequence[Path]) -> None:
        paths = sorted(Path(path) for path in paths)
        folder = paths[0].parent
        super().__init__(paths[0], "tenant", "a tenant name no other file in its folder uses", repr(tenant))
        listed = ", ".join(str(path) for path in paths[:-1]) + f" and {paths[-1]}"
        if len(paths) == 2:
            todo = f"rename the tenant in one of them (its tenant: key), or move the copy out of {folder}"
        else:
            todo = f"rename the tenant in all but one of them (their tenant: key), or move the copies out of {folder}"
        self.args = (f"tenant {tenant!r} is named by {len(paths)} files in {folder}, {listed}: none of them is "
                     f"loaded, since any could pass for the tenant's live rules; {todo}",)
        self.tenant, self.paths = tenant, tuple(paths)


class UnknownConnector(LeadpulseError):
    """No connector is registered under the name a tenant file asked for."""


class ConnectorError(LeadpulseError):
    """Something went wrong talking to a tenant's CRM."""

    def __init__(self, tenant: str, message: str) -> None:
        super().__init__(f"tenant {tenant!r}: {message}")
        self.tenant = tenant


class AuthError(ConnectorError):
    """The CRM refused the tenant's credentials."""


class QuotaExhausted(ConnectorError):
    """The CRM's daily allowance is used up; the run must checkpoint and stop until it refills.

    `settled` holds the `WriteResult`s of a batch's items carried out before the allowance ran out, when the
    connector sends a batch one call an item (see `leadpulse.core.contract.one_call_each`); the batch's other items
    were not sent.
    """

    def __init__(self, tenant: str, message: str, settled: Sequence[Any] = ()) -> None:
        super().__init__(tenant, message)
        self.settled = tuple(settled)


class SchemaError(ConnectorError):
    """Properties or fields that leadpulse writes are missing in the CRM and cannot be created by it."""


class TransientError(ConnectorError):
    """Retries ran out on a failure that may pass (429, 5xx, dropped connection, timeout)."""


class OutcomeUnknown(TransientError):
    """A call that is not safe to repeat lost its answer; what it did is settled before anything is resent."""


class StoreError(LeadpulseError):
    """The checkpoint store cannot do what was asked."""


class RunLocked(StoreError):
    """Another run of the same tenant holds the store's lock."""


class ScoringFailed(LeadpulseError):
    """A scoring worker process died or failed; the chunks saved before stay saved."""


class DaemonError(LeadpulseError):
    """The daemon cannot start: the config directory is missing or unreadable, or the port is taken."""


class DeployError(LeadpulseError):
    """A tenant file asks for what its CronJob cannot do; `leadpulse deploy k8s` prints it and exits 1."""


class DemoUnavailable(LeadpulseError):
    """The demo's files are not here (leadpulse was installed from a wheel, not run from its checkout)."""
