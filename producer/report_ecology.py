"""The report's ecology section (``trapline report``, issue 16): the key numbers, the species table with events,
RAI and naive occupancy, the activity plot and overlaps, and how each number was produced, from
``producer.ecology``'s results. HTML only; the numbers come from ``trapline ecology``'s own functions."""

from __future__ import annotations

from collections.abc import Iterator

from producer.ecology import Ecology, activity_chart
from producer.html_page import escape as _e, number as _n, png as _img, table as _table

HOW = (
    "Camera-days: each deployment's interval minus the gaps and stops `trapline check` finds and, for time-lapse "
    "cameras, the days without a frame. Events: `trapline events` (RECONYX bursts, single time-lapse frames, and "
    "frames no more than the gap apart); an event holds a species when one of its frames has counted crops of it, "
    "and counts the most seen in one frame; a person's label of a frame wins over the models'. Only events that "
    "begin inside an operation period count. RAI: events per 100 camera-days. Naive occupancy: sites with a "
    "detection / sites with effort, over occasions of {days} days. Activity: von Mises kernel density of the events' "
    "clock times and apparent solar times at the deployment's longitude (the R package overlap's bandwidth), for "
    "species with enough events; overlap Δ̂1/Δ̂4 as overlapEst. `trapline ecology -o DIR` writes every table as CSV, with the detection histories."
)


def section(ecology: Ecology | None, why_none: str) -> Iterator[str]:
    if ecology is None:
        yield f'<p class="empty">{_e(why_none)}</p>'
        return
    t = ecology.tallies
    days = sum(p.days for p in ecology.periods)
    yield (f"<p>{_e(f'{days:,.1f}')} camera-days at {len(ecology.matrix)} site(s); {t.counted:,} events with animals "
           f"counted: {t.reviewed:,} rest on a person's label of one of their frames, {t.counted - t.reviewed:,} on "
           f"the models alone; {t.outside_effort:,} outside the operation periods were left out.</p>")
    occupancy = {species: (detected, surveyed, share) for species, detected, surveyed, share in ecology.occupancy()}
    yield _table(("site", "species", "events", "individuals", "camera-days", "RAI (events / 100 camera-days)"),
                 [(r.site, r.species, r.events, r.individuals, _n(r.camera_days, 1), _n(r.rai, 2))
                  for r in ecology.rai], "ecology-rai")
    yield _table(("species", "sites detected", "sites surveyed", "naive occupancy"),
                 [(s, d, n, _n(share, 2)) for s, (d, n, share) in occupancy.items()], "ecology-occupancy")
    for time, fitted in ecology.activity.items():
        if fitted:
            yield _img(activity_chart(fitted, time), f"diel activity per species, {time} time")
    if ecology.overlaps:
        yield _table(("time", "species A", "species B", "events A", "events B", "Δ̂1", "Δ̂4", "recommended"),
                     [(time, a, b, o.n_a, o.n_b, _n(o.dhat1, 3), _n(o.dhat4, 3), o.recommended)
                      for time, a, b, o in ecology.overlaps], "ecology-overlap")
    occasion_days = ecology.when.days if ecology.when is not None else "-"
    yield f'<p class="how">{_e(HOW.format(days=occasion_days))}</p>'
