"""``Sandbox``: one running imitation of one CRM tenant, started and stopped from Python."""
from __future__ import annotations

import importlib
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

from .auth import Tokens
from .faults import Faults
from .limits import Clock, Limits, ScaledClock
from .server import Admin, Dispatcher, SandboxHTTPServer, Vendor, client_writes
from .state import Crm
from .stats import Stats
from .synth import Tenant

CRMS = ("hubspot", "salesforce", "pipedrive")


def vendor_class(crm: str | type[Vendor]) -> type[Vendor]:
    """The vendor module ``leadpulse.sandbox.<crm>``'s ``VENDOR`` class (a Vendor class is taken as it is)."""
    if isinstance(crm, type):
        return crm
    try:
        module = importlib.import_module(f"{__package__}.{crm}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{crm}":
            raise
        raise ValueError(f"unknown CRM {crm!r}: no module sandbox/{crm}.py (known: {', '.join(CRMS)})") from None
    return module.VENDOR


class Sandbox:
    """A CRM imitation on 127.0.0.1. Use :meth:`start`, ideally as a context manager.

    Attributes: ``base_url``, ``credentials`` (dict), ``crm`` (:class:`leadpulse.sandbox.state.Crm`),
    ``faults`` (:class:`leadpulse.sandbox.faults.Faults`), ``stats`` (:class:`leadpulse.sandbox.stats.Stats`),
    ``limits`` (:class:`leadpulse.sandbox.limits.Limits`), ``tokens``, ``vendor``, and ``ca_cert_path``
    (PEM of the CA that signed the server certificate, when served over TLS; else None).
    """

    def __init__(self, crm: str | type[Vendor], contacts: int = 1000, seed: int = 0, *, tier: str | None = None,
                 time_scale: float = 1.0, rate_limits: bool = True, port: int = 0,
                 anchor_ms: int | None = None, clock: Clock | None = None,
                 activities_per_contact: float | None = None):
        vendor_cls = vendor_class(crm)
        self.tokens = Tokens(prefix=vendor_cls.name)
        tenant = Tenant(contacts, seed, anchor_ms, activities_per_contact=activities_per_contact,
                        activity_history_ms=vendor_cls.activity_history_ms)
        self.crm = Crm(tenant, ids=vendor_cls.ids)
        self.faults = Faults(self.tokens)
        self.stats = Stats()
        # typed as any Vendor subclass: tests use the helpers each CRM's imitation adds (properties_of ...)
        self.vendor: Any = vendor_cls(self.crm, self.faults, self.tokens, tier)
        self.limits = Limits(self.vendor.windows(), clock or ScaledClock(time_scale), enabled=rate_limits)
        self.vendor.limits = self.limits
        self._stopping = threading.Event()
        self._tmp = Path(tempfile.mkdtemp(prefix="sandbox-"))
        self.ca_cert_path: str | None = None
        dispatcher = Dispatcher(self.vendor, self.limits, self.stats,
                                Admin(self.crm, self.faults, self.limits, self.stats, self.vendor), self._stopping)
        self._server = SandboxHTTPServer(dispatcher, port, self._tls() if vendor_cls.tls else None)
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, crm: str | type[Vendor], contacts: int = 1000, seed: int = 0, **options) -> Sandbox:
        """Build a tenant of ``contacts`` people from ``seed`` and serve it on a free loopback port.

        Options: ``tier`` (vendor plan, sets rate-limit figures), ``time_scale`` (rate-limit
        clock speed-up), ``rate_limits`` (enforce them; default True), ``port`` (0: free port),
        ``anchor_ms`` (the tenant's "now"; default today 00:00 UTC), ``clock`` (a rate-limit
        clock, e.g. :class:`leadpulse.sandbox.limits.ManualClock`), ``activities_per_contact`` (mean
        activities per person, up to 20; default about 8.7: 100,000 contacts with 10 carry about
        a million engagements).
        """
        sandbox = cls(crm, contacts, seed, **options)
        sandbox._thread = threading.Thread(target=sandbox._server.serve_forever, kwargs={"poll_interval": 0.05},
                                           name=f"sandbox-{sandbox.vendor.name}", daemon=True)
        sandbox._thread.start()
        return sandbox

    def _tls(self) -> ssl.SSLContext:
        import trustme

        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.ca_cert_path = str(self._tmp / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_cert_path)
        return context

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        scheme = "https" if self.vendor.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def credentials(self) -> dict:
        return self.vendor.credentials()

    def written(self) -> dict:
        """What clients wrote: leadpulse's values per contact and the tasks created (``GET /_sandbox/crm/written``)."""
        return client_writes(self.crm, self.vendor)

    def stop(self) -> None:
        """Stop serving (idempotent); hanging calls are released."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def wait(self) -> None:
        """Block until :meth:`stop` is called or the process is interrupted."""
        while not self._stopping.wait(0.5):
            pass

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Sandbox {self.vendor.name} {self.base_url} contacts={self.crm.size}>"
