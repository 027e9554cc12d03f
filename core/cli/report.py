"""``leadpulse report``: a model report of one tenant's store, offline, as tables on the terminal or as one HTML page
that needs nothing but itself (charts inline as SVG, plain CSS, no script, no address to fetch).

The figures come from `leadpulse.core.runtime.report`; this module lays them out as `Section`s of `TableData` that
both the terminal and the page draw, so the two show the same numbers. matplotlib is imported only when a page is
written.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from leadpulse.core.cli.render import console, data_table, literal, percent, say
from leadpulse.core.cli.tenants import config_dir_option, load_named, open_store, state_dir_option, tenant_option
from leadpulse.core.runtime.report import GAINS_AT, Backtested, BandCount, Report, gather_report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: what the page's charts are drawn with
INSIGHT_EXTRA = "pip install 'leadpulse[insight]'"


@dataclass(frozen=True)
class TableData:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """One part of the report: its tables, lines of text, and the charts the page draws for it (each a function
    drawing the report on a matplotlib `Axes`)."""

    heading: str
    tables: tuple[TableData, ...] = ()
    lines: tuple[str, ...] = ()
    charts: tuple[Callable[[Report, Axes], None], ...] = field(default=())


@click.command()
@tenant_option
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write the report as one self-contained HTML page (charts inline) to this file.")
@config_dir_option
@state_dir_option
def report(tenant_name: str | None, html_file: Path | None, config_dir: Path, state_dir: Path) -> None:
    """A model report of the tenant's store, offline: the bands now and over past moments, the scores' spread,
    conversion by band, the cumulative gains of ranking by score, the rules by the points they give and by how
    conversion differs with and without them, lifecycle status moves over time, and how soon owners follow up
    the tasks leadpulse hands them.

    What needs stored conversions is left out, with the reason, when the store holds none.
    """
    tenant = load_named(config_dir, tenant_name)
    with open_store(tenant, state_dir) as store:
        figures = gather_report(store, tenant)
    if html_file is None:
        print_report(figures)
        return
    html_file.write_text(page(figures), encoding="utf-8")
    console.print(f"{literal(tenant.name)}: report written to {literal(html_file)}", soft_wrap=True)


def print_report(figures: Report) -> None:
    """The report as rich tables, section by section, then the backtest's notes."""
    console.print(f"{literal(figures.tenant)}: model report", highlight=False)
    for section in sections(figures):
        console.rule(literal(section.heading))
        for line in section.lines:
            say("yellow", "note", line)
        for table in section.tables:
            console.print(data_table(table.headers, table.rows, title=table.title))


# -- what each section shows -------------------------------------------------------------------------------------


def sections(figures: Report) -> list[Section]:
    """The report's sections in order: what the terminal prints and the page shows."""
    tested = figures.backtested
    left_out = () if tested else (f"left out: {figures.missing}",)
    return [
        _bands_section(figures),
        Section("Scores", (_histogram(figures),), charts=(_draw_histogram,)),
        Section("Conversion by band", (_conversion(tested),) if tested else (), left_out,
                (_draw_conversion,) if tested else ()),
        Section("Cumulative gains", (_gains(tested),) if tested else (), left_out,
                (_draw_gains,) if tested else ()),
        _rules_section(figures),
        Section(f"Status moves per {figures.period}", (_moves(figures),),
                () if figures.status_moves else ("no lifecycle status change in the history yet",),
                (_draw_moves,) if figures.status_moves else ()),
        Section("Hand-off", (_hand_off(figures),), charts=()),
        *([Section("Notes", lines=tested.notes)] if tested and tested.notes else []),
    ]


def _bands_section(figures: Report) -> Section:
    now = TableData("bands now (stored scores)", ("band", "contacts", "share"),
                    tuple((b.name, str(b.contacts), percent(b.share)) for b in reversed(figures.bands_now)))
    tested = figures.backtested
    if tested is None:
        return Section("Bands", (now,), (f"band shares over time left out: {figures.missing}",), (_draw_bands,))
    names = [b.name for b in tested.bands_over_time[0].bands]  # the ladder, lowest first
    rows = tuple((moment.at.date().isoformat(), str(sum(b.contacts for b in moment.bands)),
                  *(percent(next((b.share for b in moment.bands if b.name == name), None)) for name in names))
                 for moment in tested.bands_over_time)
    over_time = TableData("band shares at the backtest's moments (contacts not converted by then)",
                          ("moment", "contacts", *names), rows)
    return Section("Bands", (now, over_time), charts=(_draw_bands,))


def _histogram(figures: Report) -> TableData:
    return TableData("stored totals", ("from", "below", "contacts"),
                     tuple((_points(b.low), _points(b.high), str(b.contacts)) for b in figures.histogram))


def _conversion(tested: Backtested) -> TableData:
    rows = tuple((g.name, str(g.contacts), str(g.conversions), percent(g.rate), percent(g.conversion_share))
                 for g in reversed(tested.by_band))
    return TableData(f"conversion within the horizon by band, {len(tested.moments.at)} moments pooled",
                     ("band", "contacts", "conversions", "rate", "of conversions"), rows)


def _gains(tested: Backtested) -> TableData:
    rows = []
    for share in GAINS_AT:
        gained = tested.gains_at(share)
        rows.append((percent(share), percent(gained), "-" if gained is None else f"{gained / share:.2f}"))
    return TableData(f"best scored contacts and their conversions ({tested.contact_moments} contact-moments, "
                     f"{tested.conversions} conversions)", ("best scored", "of conversions", "lift"), tuple(rows))


def _rules_section(figures: Report) -> Section:
    by_points = TableData("rules by points contributed to the stored scores",
                          ("rule", "label", "axis", "points", "contacts"),
                          tuple((r.rule_id, r.label, r.axis, _points(r.points), str(r.contacts))
                                for r in figures.rules))
    if figures.backtested is None:
        return Section("Rules", (by_points,), (f"conversion with and without each rule left out: {figures.missing}",),
                       (_draw_rule_points,))
    by_conversion = TableData(
        "rules by how conversion differs where they fired (contact-moments of the backtest)",
        ("rule", "fired", "rate fired", "not fired", "rate not fired", "difference"),
        tuple((r.rule_id, str(r.fired), percent(r.fired_rate), str(r.unfired), percent(r.unfired_rate),
               _difference(r.difference)) for r in figures.rules_by_conversion))
    return Section("Rules", (by_points, by_conversion), charts=(_draw_rule_points, _draw_rule_conversion))


def _moves(figures: Report) -> TableData:
    return TableData(f"lifecycle status changes per {figures.period}", (figures.period, "move", "contacts"),
                     tuple((m.period.isoformat(), m.move, str(m.count)) for m in figures.status_moves))


def _hand_off(figures: Report) -> TableData:
    handed = figures.hand_off
    return TableData("follow-up tasks done, to the owner's next call, meeting or email",
                     ("tasks", "followed up", "no activity yet", "median wait", "p90 wait"),
                     ((str(handed.tasks), str(handed.followed_up), str(handed.waiting), _wait(handed.median_wait),
                       _wait(handed.p90_wait)),))


def _points(value: float) -> str:
    return f"{round(value, 2):g}"


def _difference(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pts"


def _wait(span: timedelta | None) -> str:
    if span is None:
        return "-"
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


# -- the page ----------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0 1.4em; font-size: .9em; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.note { color: #8a5a00; } figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
"""


def page(figures: Report) -> str:
    """The report as one HTML page that opens offline: tables, charts inline as SVG, no script and no address.

    :raises click.ClickException: when matplotlib is not installed
    """
    try:
        from matplotlib import figure, rc_context
    except ImportError:
        raise click.ClickException(f"the HTML report draws its charts with matplotlib: {INSIGHT_EXTRA}") from None
    body = []
    for number, section in enumerate(sections(figures)):
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        body += [f'<p class="note">{html.escape(line)}</p>' for line in section.lines]
        for n, draw in enumerate(section.charts):
            with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"chart-{number}-{n}"}):
                chart = figure.Figure(figsize=(7.5, 3.4), layout="constrained")
                draw(figures, chart.subplots())
                body.append(f"<figure>{inline_svg(_svg(chart), f'c{number}x{n}')}</figure>")
        body += [_html_table(table) for table in section.tables]
    title = html.escape(f"{figures.tenant}: model report")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _svg(chart: Figure) -> str:
    out = io.StringIO()
    chart.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def inline_svg(text: str, prefix: str) -> str:
    """matplotlib's SVG document as an element for an HTML5 page: no XML prolog, DOCTYPE, metadata or comment,
    no namespace declaration (HTML5 knows the svg and xlink names), and its ids made unique in the page with
    `prefix`.

    :raises ValueError: if an address is left in it
    """
    svg = text[text.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*|<!--.*?-->\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    if "http" in svg.lower():
        raise ValueError(f"the chart {prefix} still names an address: {svg[svg.lower().index('http'):][:80]}")
    return svg


def _html_table(table: TableData) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n"
                   for row in table.rows)
    return (f"<table>\n<caption>{html.escape(table.title)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{rows}</tbody>\n</table>")


# -- the charts --------------------------------------------------------------------------------------------------


def _draw_bands(figures: Report, axes: Axes) -> None:
    names = [b.name for b in figures.bands_now]
    moments = figures.backtested.bands_over_time if figures.backtested else ()
    labels = [m.at.date().isoformat() for m in moments] + ["now"]
    shares = [[_of(m.bands, name) for m in moments] + [_of(figures.bands_now, name)] for name in names]
    bottom = [0.0] * len(labels)
    for name, values in zip(names, shares, strict=True):
        axes.bar(labels, values, bottom=bottom, label=name)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of contacts")
    axes.set_title("band shares at each backtest moment, and now")
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))


def _of(bands: Sequence[BandCount], name: str) -> float:
    return next((b.share or 0.0 for b in bands if b.name == name), 0.0)


def _draw_histogram(figures: Report, axes: Axes) -> None:
    bins = figures.histogram
    axes.bar([b.low for b in bins], [b.contacts for b in bins], width=[b.high - b.low for b in bins],
             align="edge", edgecolor="white")
    axes.set_xlabel("total score")
    axes.set_ylabel("contacts")
    axes.set_title("stored scores")


def _draw_conversion(figures: Report, axes: Axes) -> None:
    assert figures.backtested is not None  # drawn only with a backtest
    bands = figures.backtested.by_band
    axes.bar([g.name for g in bands], [g.rate or 0.0 for g in bands])
    axes.set_ylabel("conversion rate")
    axes.set_title("conversion within the horizon by band")


def _draw_gains(figures: Report, axes: Axes) -> None:
    assert figures.backtested is not None  # drawn only with a backtest
    points = figures.backtested.gains
    axes.plot([p.contact_share for p in points], [p.conversion_share for p in points], label="ranked by score")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="at random")
    axes.set_xlabel("share of contact-moments, best scored first")
    axes.set_ylabel("share of conversions")
    axes.set_title("cumulative gains")
    axes.legend(fontsize=7, loc="lower right")


def _draw_rule_points(figures: Report, axes: Axes) -> None:
    rules = list(reversed(figures.rules))
    axes.barh([r.rule_id for r in rules], [r.points for r in rules])
    axes.set_xlabel("points contributed to the stored scores")
    axes.set_title("rules by points")
    axes.tick_params(axis="y", labelsize=7)


def _draw_rule_conversion(figures: Report, axes: Axes) -> None:
    rules = list(reversed(figures.rules_by_conversion))
    axes.barh([r.rule_id for r in rules], [(r.difference or 0.0) * 100 for r in rules])
    axes.set_xlabel("conversion rate where fired minus where not (percentage points)")
    axes.set_title("rules by conversion difference")
    axes.tick_params(axis="y", labelsize=7)


def _draw_moves(figures: Report, axes: Axes) -> None:
    periods = sorted({m.period for m in figures.status_moves})
    labels = [p.isoformat() for p in periods]
    bottom = [0] * len(periods)
    for move in dict.fromkeys(m.move for m in figures.status_moves):
        counts = [sum(m.count for m in figures.status_moves if m.move == move and m.period == p) for p in periods]
        axes.bar(labels, counts, bottom=bottom, label=move)
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
    axes.set_ylabel("contacts")
    axes.set_title(f"lifecycle status changes per {figures.period}")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
