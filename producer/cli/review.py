"""Step 3 of the workflow: `trapline review sample|import|serve`, `rde` (repeat detections) and `metrics`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from producer.cli import context


def detector_id(ctx: click.Context, session, chosen: str | None = None) -> int:  # Session
    """The id of the detector version whose results to read: ``chosen`` (--detector), else the configured one."""
    from producer.model_versions import results_detector

    return results_detector(session, context.settings(ctx).detector, chosen).id


@click.group()
def review() -> None:
    """Step 3: the sample people check, and their labels (Animal, Empty, Human, Bad)."""


@review.command("sample")
@click.option("--fraction", type=float, help="Share drawn per site × final label (default: TRAPLINE_REVIEW__FRACTION).")
@click.option("--all-animals/--no-all-animals", default=None,
              help="Also every image labelled Animal (default: TRAPLINE_REVIEW__ALL_ANIMALS).")
@click.option("--seed", type=int, help="Seed of the draw, stored with the set (default: TRAPLINE_REVIEW__SEED).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the sample as a CSV for reviewers: fill its label column, then `review import` it.")
@click.pass_context
def review_sample(ctx: click.Context, fraction: float | None, all_animals: bool | None, seed: int | None,
                  output: Path | None) -> None:
    """Draw the review sample of the classified images (re-drawing with the same settings adds nothing)."""
    from producer.review import sample_to
    from shared.store.engine import one_snapshot

    settings = context.settings(ctx)
    options = settings.review
    with context.sessions(settings).begin() as session:
        one_snapshot(session)  # the strata are counted, then read: the same images both times
        result = sample_to(session, detector_id(ctx, session), options.fraction if fraction is None else fraction,
                           options.all_animals if all_animals is None else all_animals,
                           options.seed if seed is None else seed, output)
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.by_reason.items()))
    click.echo(f"review set {result.set_id}: {result.drawn} images from {result.strata} strata ({reasons}); "
               f"{result.added} new" + (f"; list written to {output}" if output else ""))


@review.command("import")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reviewer", help="Name stored with every label unless the CSV has a reviewer column.")
@click.pass_context
def review_import(ctx: click.Context, labels: Path, reviewer: str | None) -> None:
    """Import people's labels from a CSV (path,label[,reviewer]): all lines, or none when one is wrong."""
    from producer.review import import_labels

    with context.sessions(context.settings(ctx)).begin() as session:
        count = import_labels(session, labels, reviewer)
    click.echo(f"imported {count} labels from {labels.name}")


@review.command("serve")
@click.option("--port", type=int, default=8000, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on: this machine only (127.0.0.1, ::1, localhost; or an SSH tunnel) unless "
              "--allow-remote.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host other machines reach; every request then needs the login token "
              "(TRAPLINE_REVIEW_TOKEN, or one made and printed at start).")
@click.option("--set", "set_id", type=int, help="Review set to serve (default: the newest).")
@click.option("--reviewer", help="Name filled in on the page (each browser remembers its own).")
@click.pass_context
def review_serve(ctx: click.Context, port: int, host: str, allow_remote: bool, set_id: int | None,
                 reviewer: str | None) -> None:
    """A web page to review the sample in a browser: one image at a time with its boxes and the models'
    labels; keys 1-4 (or A, E, H, B) label it Animal, Empty, Human or Bad and move on, Enter accepts the
    model's label. Labels are saved at once. The repeat-detection clusters are reviewed on the same page.

    With TRAPLINE_REVIEW_TOKEN set (or --allow-remote, which makes a token when it is not), the page asks
    for the token: open the address with ?token=… once, the browser keeps it as a cookie."""
    from producer.review_security import TOKEN_ENV, new_token
    from producer.review_server import review_server

    settings = context.settings(ctx)
    token = os.environ.get(TOKEN_ENV) or None
    made = token is None and allow_remote
    if made:
        token = new_token()
    server = review_server(context.sessions(settings), settings, set_id, host, port, reviewer, allow_remote, token)
    click.echo(f"review set {server.app.set_id} at {server.url}{f'?token={token}' if made else ''} (Ctrl-C to stop)")
    if made:
        click.echo(f"the login token in this address was made for this run; set {TOKEN_ENV} to choose one")
    elif token is not None:
        click.echo(f"log in by opening it once with ?token= and the value of {TOKEN_ENV}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.group(invoke_without_command=True)
@click.option("--camera", help="One camera (site/camera as `rde list` shows it); default: every camera.")
@click.option("--preset", type=click.Choice(["settings", "celis2024"]), default="settings", show_default=True,
              help="settings: TRAPLINE_RDE__* (the megadetector package's defaults); celis2024: the probable "
              "paper values (conf 0.04, IoU 0.9, 5 images, boxes up to 0.5).")
@click.pass_context
def rde(ctx: click.Context, camera: str | None, preset: str) -> None:
    """Repeat detection elimination: find boxes that recur at one place in a camera's images (a rock, bait),
    for a person to confirm (`rde confirm ID`: its detections stop counting) or reject."""
    if ctx.invoked_subcommand is not None:
        return
    from shared.rde.clustering import CELIS2024
    from shared.rde.search import options_of, search

    settings = context.settings(ctx)
    options = CELIS2024 if preset == "celis2024" else options_of(settings.rde)
    with context.sessions(settings).begin() as session:
        results = search(session, detector_id(ctx, session), options, camera)
    for result in results:
        click.echo(f"{result.camera}: {result.boxes} boxes, {len(result.clusters)} suspected cluster(s)"
                   + (f" (ids {', '.join(map(str, result.clusters))})" if result.clusters else ""))
    if not results:
        click.echo("no detections yet")


@rde.command("list")
@click.option("--camera")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rde_list(ctx: click.Context, camera: str | None, as_json: bool) -> None:
    """RDE clusters: camera, box, category, instances (boxes: two in one image count two), images, status."""
    from shared import aggregates
    from shared.labels import DETECTION_CATEGORIES

    with context.sessions(context.settings(ctx)).begin() as session:
        rows = [{"id": c.id, "camera": c.camera, "bbox": c.bbox,
                 "category": DETECTION_CATEGORIES.get(c.category, str(c.category)), "instances": c.instances,
                 "images": c.images, "status": c.status, "decided_by": c.decided_by}
                for c in aggregates.rde_clusters(session, detector_id(ctx, session), camera=camera)]
    if as_json:
        context.echo_json(rows)
        return
    for r in rows:
        box = ", ".join(f"{v:.3f}" for v in r["bbox"])
        click.echo(f"{r['id']:>5}  {r['camera']:<30} [{box}]  {r['category']:<7} {r['instances']:>6} boxes "
                   f"{r['images']:>6} images  {r['status']}")


def decide(ctx: click.Context, cluster_id: int, confirmed: bool, reviewer: str) -> None:
    """Confirm or reject a cluster; its images are relabelled in the database at once."""
    from shared.labels import LabelRules
    from shared.rde.decisions import decide as decide_cluster

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        decided = decide_cluster(session, cluster_id, confirmed, reviewer, LabelRules.of(settings),
                                 settings.crops.threshold)
    done = decided.relabelled
    click.echo(f"cluster {cluster_id} {'confirmed: its detections are suppressed' if confirmed else 'rejected'}; "
               f"{done.relabelled} of its {decided.images} images relabelled ({done.changed} final labels changed)")
    if done.to_classify:
        click.echo(f"{len(done.to_classify)} images need a crop that was never cut: run "
                   "`trapline enqueue --stage classify`")


@rde.command("confirm")
@click.argument("cluster_id", type=int)
@click.option("--reviewer", required=True, help="Who decided (stored with the cluster).")
@click.pass_context
def rde_confirm(ctx: click.Context, cluster_id: int, reviewer: str) -> None:
    """The cluster is not an animal: suppress its detections (kept; negative confidence in MD JSON) and relabel
    its images from their stored outputs (no worker needed)."""
    decide(ctx, cluster_id, True, reviewer)


@rde.command("reject")
@click.argument("cluster_id", type=int)
@click.option("--reviewer", required=True)
@click.pass_context
def rde_reject(ctx: click.Context, cluster_id: int, reviewer: str) -> None:
    """The cluster shows real animals: its detections count (again), and its images are relabelled."""
    decide(ctx, cluster_id, False, reviewer)


@click.command()
@click.option("--stage", "stages", multiple=True, type=click.Choice(["final", "quality", "detect", "crops"]),
              help="Stages to measure (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True)
@context.DETECTOR_CHOICE
@click.pass_context
def metrics(ctx: click.Context, stages: tuple[str, ...], as_json: bool, detector: str | None) -> None:
    """Each stage against people's labels, per region: accuracy (also weighted over the random strata),
    per-class precision/recall/F1, confusion matrix, FN and FP counts with the first paths of each
    (TRAPLINE_REVIEW__MAX_ERROR_PATHS), and the manual-inspection share."""
    from producer.review import format_metrics
    from producer.review import metrics as measure
    from shared.review import STAGES

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        report = measure(session, detector_id(ctx, session, detector), stages or STAGES,
                         bad_threshold=settings.quality.bad_threshold, max_paths=settings.review.max_error_paths)
    if as_json:
        context.echo_json(report)
    else:
        click.echo(format_metrics(report))
