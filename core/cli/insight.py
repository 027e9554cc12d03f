"""The insight commands, which read a tenant's store and call no CRM: ``backtest`` and ``suggest``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from leadpulse.core.cli.offline import proposed_scoring
from leadpulse.core.cli.render import console, data_table, literal, percent, say
from leadpulse.core.cli.tenants import config_dir_option, load_named, open_store, state_dir_option, tenant_option
from leadpulse.core.engine.insight.asof import spaced
from leadpulse.core.engine.insight.metrics import GroupFigures, MomentFigures
from leadpulse.core.runtime.backtest import DEFAULT_HORIZON, Backtest, RuleSetResult, run_backtest
from leadpulse.core.schedule import format_duration, parse_duration


def _span(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """A duration option's text (``30d``, ``6w``) as a span."""
    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _moment(text: str, ctx: click.Context, param: click.Parameter) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected a date like 2025-03-01 or 2025-03-01T12:00, found {text!r}", ctx,
                                 param) from None
    if len(text) <= 10:  # a date alone: its midnight, UTC
        parsed = datetime.combine(parsed.date(), time(), UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dates(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A date option's text (one, or a tuple of them for a repeated option) as moments, UTC unless it says."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_moment(text, ctx, param) for text in value)
    return _moment(value, ctx, param)


@click.command()
@tenant_option
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A copy of the tenant's file with a proposed scoring section, backtested beside the current one.")
@click.option("--at", "at", multiple=True, metavar="DATE", callback=_dates,
              help="A moment to score at (repeatable), as a date (UTC midnight) or an ISO time.")
@click.option("--every", metavar="DURATION", callback=_span, help="Moments this far apart (with --since), e.g. 30d.")
@click.option("--since", metavar="DATE", callback=_dates, help="The first moment (with --every).")
@click.option("--horizon", default=format_duration(DEFAULT_HORIZON), show_default=True, callback=_span,
              metavar="DURATION", help="How long after each moment a conversion counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@config_dir_option
@state_dir_option
def backtest(tenant_name: str | None, rules_file: Path | None, at: Sequence[datetime], every: timedelta | None,
             since: datetime | None, horizon: timedelta, as_json: bool, config_dir: Path, state_dir: Path) -> None:
    """How well the rules would have predicted conversion: every stored contact scored as it stood at past moments,
    and which of those not yet converted then converted within the horizon.

    By default twelve moments 30 days apart, the last a whole horizon before the newest stored conversion. Per
    band: contacts, conversions and the rate; the top band's lift; the AUC of the score and of each axis; how
    steady each band's rate is over the moments.
    """
    if at and (every or since):
        raise click.UsageError("give moments either with --at or with --every and --since, not both")
    if bool(every) != bool(since):
        raise click.UsageError("--every and --since go together: --every 30d --since 2025-01-01")
    tenant = load_named(config_dir, tenant_name)
    rule_sets = [("current", tenant.scoring)]
    if rules_file is not None:
        rule_sets.append((rules_file.name, proposed_scoring(tenant, rules_file)))
    with open_store(tenant, state_dir) as store:
        moments = list(at)
        if every is not None and since is not None:
            moments = spaced(since, datetime.now(UTC), every)
            if not moments:
                raise click.UsageError(f"--since {since.date()} is in the future: no moment to score at")
        try:
            result = run_backtest(store, tenant, rule_sets, moments=moments, horizon=horizon)
        except ValueError as exc:
            raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    if as_json:
        click.echo(result.to_json())
    else:
        print_backtest(result)


def print_backtest(result: Backtest) -> None:
    """The backtest as tables: the rule sets side by side, then each one's bands, groups and moments, then the
    notes."""
    moments = result.moments
    first, last = moments.at[0], moments.at[-1]
    console.print(f"{literal(result.tenant)}: {len(moments.at)} moments from {first.date()} to {last.date()}, "
                  f"horizon {format_duration(moments.horizon)}")
    console.print(_overview(result.results))
    for rules in result.results:
        console.print(_bands(rules))
        pooled = rules.figures.pooled
        for title, groups in (("quadrant", pooled.quadrants), ("grade", pooled.grades),
                              ("status the rules set", pooled.statuses)):
            if groups:
                console.print(_groups(f"{rules.name}: by {title}", title, groups))
        console.print(_moments(rules))
    for note in result.notes:
        say("yellow", "note", note)


def _overview(results: Sequence[RuleSetResult]) -> Table:
    axes = list(dict.fromkeys(name for rules in results for name in rules.axes))
    rows = []
    for rules in results:
        pooled = rules.figures.pooled
        top = pooled.bands[-1]
        rows.append((rules.name, pooled.contacts, pooled.conversions, percent(pooled.rate), _number(pooled.auc),
                     *(_number(pooled.axis_auc.get(name)) for name in axes), f"{top.name}", percent(top.contact_share),
                     percent(top.conversion_share), _number(pooled.lift)))
    headers = ("rules", "contacts", "conversions", "rate", "AUC", *(f"AUC {name}" for name in axes), "top band",
               "top: of contacts", "top: of conversions", "lift")
    return data_table(headers, rows, title="all moments pooled (a contact counts once per moment)")


def _bands(rules: RuleSetResult) -> Table:
    calibration = {band.band: band for band in rules.figures.calibration}
    rows = []
    for band in reversed(rules.figures.pooled.bands):
        steady = calibration[band.name]
        spread = (f"{percent(steady.min_rate)} to {percent(steady.max_rate)} (sd {percent(steady.std_rate)})"
                  if steady.moments else "-")
        rows.append((band.name, band.contacts, percent(band.contact_share), band.conversions, percent(band.rate),
                     percent(band.conversion_share), spread))
    return data_table(("band", "contacts", "of contacts", "conversions", "rate", "of conversions",
                       "rate over the moments"), rows, title=f"{rules.name}: by band, highest first")


def _groups(title: str, label: str, groups: Sequence[GroupFigures]) -> Table:
    rows = [(g.name, g.contacts, percent(g.contact_share), g.conversions, percent(g.rate), percent(g.conversion_share))
            for g in groups]
    return data_table((label, "contacts", "of contacts", "conversions", "rate", "of conversions"), rows, title=title)


def _moments(rules: RuleSetResult) -> Table:
    rows = [(_when(m), m.contacts, m.left_out, m.conversions, percent(m.rate), _number(m.auc), _number(m.lift))
            for m in rules.figures.moments]
    return data_table(("moment", "contacts", "converted before", "conversions", "rate", "AUC", "lift"), rows,
                      title=f"{rules.name}: by moment")


def _when(moment: MomentFigures) -> str:
    return moment.at.date().isoformat() if moment.at else "all"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"



@click.command()
@tenant_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the proposed tenant file here (default: print it); outside the config folder, where two "
                   "files may not name one tenant.")
@click.option("--horizon", default=format_duration(DEFAULT_HORIZON), show_default=True, callback=_span,
              metavar="DURATION", help="How long after each moment a conversion counts.")
@config_dir_option
@state_dir_option
def suggest(tenant_name: str | None, out: Path | None, horizon: timedelta, config_dir: Path, state_dir: Path) -> None:
    """Learn from the stored outcomes which criteria predicted conversion, and propose them as a tenant file:
    integer points on readable conditions, bands at shares of the contacts, the tenant's connection, write-back and
    lifecycle kept.

    Trains on the earlier of twelve monthly moments and judges on the later ones, beside the current rules and a
    model with no readability constraint. Try the proposal with `leadpulse backtest --rules FILE` and `compare`.
    """
    from leadpulse.core.runtime.suggestion import suggest as learn  # scikit-learn only when asked for

    tenant = load_named(config_dir, tenant_name)
    if out is not None and out.resolve().parent == config_dir.resolve():
        raise click.UsageError(f"--out {out} is in the config folder {config_dir}, where a second file of tenant "
                               f"{tenant.name!r} would stop every command: write the proposal elsewhere")
    with open_store(tenant, state_dir) as store:
        try:
            found = learn(store, tenant, horizon=horizon)
        except ValueError as exc:
            raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    split = found.split
    console.print(f"{literal(tenant.name)}: trained on {len(split.train)} moments ({split.train[0].date()} to "
                  f"{split.train[-1].date()}: {found.contacts} contact-moments, {found.conversions} conversions), "
                  f"judged on {len(split.judge)} ({split.judge[0].date()} to {split.judge[-1].date()})")
    if found.document is None:
        for note in found.notes:
            say("yellow", "note", note)
        return
    console.print(data_table(("rule", "points"), found.rules, title="proposed rules"))
    console.print(data_table(
        ("scoring", "AUC", "top band: of conversions", "top band: of contacts"),
        [(j.name, _number(j.auc), percent(j.top_capture), percent(j.top_share)) for j in found.judged],
        title="on the judged moments"))
    for note in found.notes:
        say("yellow", "note", note)
    if out is None:
        click.echo(found.yaml())
    else:
        out.write_text(found.yaml())
        say("green", "wrote", f"{out}: try it with `leadpulse backtest --tenant {tenant.name} --rules {out}`")
