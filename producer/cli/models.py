"""`trapline models import|list|promote|evaluate`: the model registry."""

from __future__ import annotations

from pathlib import Path

import click

from producer.cli import context


@click.group()
def models() -> None:
    """The model registry: import, list, evaluate and promote classifier versions; register detector files."""


@models.command("import")
@click.argument("kind", type=click.Choice(["quality", "crops", "detector"]))
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A Keras model: .keras or HDF5 (.h5, as the authors' R keras models); for detector, a "
                   "MegaDetector .pt file from a source you trust (loading it runs it).")
@click.option("--classes", help="Output class names in model order, comma-separated (e.g. Bad,Good).")
@click.option("--classes-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Output class names in model order, one per line.")
@click.option("--region", help="The region this model serves (default: every region without its own model).")
@click.option("--region-classes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="crops: JSON or YAML mapping region -> allowed classes (default: WORKFLOW.md's Yamal profile).")
@click.option("--junk-classes", help="crops: the classes that are never an animal, comma-separated (default: the "
              "paper's Bait, Bait_yamal, Empty, Rock among --classes; \"\" for none).")
@click.pass_context
def models_import(ctx: click.Context, kind: str, file: Path, classes: str | None, classes_file: Path | None,
                  region: str | None, region_classes: Path | None, junk_classes: str | None) -> None:
    """Check a classifier against its classes, store it by SHA-256 and promote it (for its region); or register a
    detector file that is no known MegaDetector release, after checking that it loads, so workers may load it."""
    from producer.environments import classify_python
    from producer.registry import import_model, read_region_classes
    from shared.schemas import ModelKind

    settings = context.settings(ctx)
    if kind == "detector":
        if any(v is not None for v in (classes, classes_file, region, region_classes, junk_classes)):
            raise click.UsageError("a detector takes only --file")
        _import_detector(settings, context.sessions(settings), file)
        return
    if (classes is None) == (classes_file is None):
        raise click.UsageError("give the class names with exactly one of --classes or --classes-file")
    names = [c.strip() for c in (classes.split(",") if classes else classes_file.read_text().splitlines()) if c.strip()]
    python = classify_python(settings)
    regions = read_region_classes(region_classes) if region_classes else None
    with context.sessions(settings).begin() as session:
        version = import_model(session, python=python, model_root=settings.model_root, kind=ModelKind(kind),
                               file=file, classes=names, region=region, regions=regions,
                               junk_classes=context.names(junk_classes))
        where = f" for region {version.region}" if version.region else ""
        junk = version.manifest.get("junk_classes")
        click.echo(f"imported {kind} model {version.name} as version {version.id} "
                   f"(sha256 {version.sha256[:12]}…, {len(names)} classes, promoted{where})"
                   + ("" if junk is None else f"; junk classes: {', '.join(junk) or 'none'}"))


def _import_detector(settings, sessions, file: Path) -> None:
    from producer.environments import detect_python
    from producer.model_versions import register_detector

    version = register_detector(settings, detect_python(settings), sessions, file)
    click.echo(f"registered detector {version.name} as version {version.id} (sha256 {version.sha256[:12]}…); "
               f"set TRAPLINE_DETECTOR__WEIGHTS={file.resolve()} to use it")


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Every model version: kind, region, name, classes (a crop model's junk classes), SHA-256, promoted."""
    from shared.crop_model import CropModel
    from shared.schemas import ModelKind
    from shared.store import model_versions

    with context.sessions(context.settings(ctx)).begin() as session:
        rows = [{"id": v.id, "kind": v.kind.value, "region": v.region, "name": v.name,
                 "classes": (v.manifest or {}).get("classes"), "sha256": v.sha256, "promoted": v.promoted,
                 "source": v.source,
                 "junk_classes": list(CropModel.of(v.manifest).junk_in_order) if v.kind == ModelKind.CROPS else None}
                for v in model_versions.model_versions(session)]
    if as_json:
        context.echo_json(rows)
        return
    for r in rows:
        classes = len(r["classes"]) if r["classes"] else "-"
        click.echo(f"{r['id']:>4}  {r['kind']:<9} {r['region'] or '-':<10} {r['name']:<32} classes={classes:<3} "
                   f"{'promoted' if r['promoted'] else '        '}  {(r['sha256'] or '-')[:12]}")


@models.command("promote")
@click.argument("version_id", type=int)
@click.pass_context
def models_promote(ctx: click.Context, version_id: int) -> None:
    """Make VERSION the model of its kind (and region) that classify batches use from the next batch on."""
    from shared.store import model_versions

    with context.sessions(context.settings(ctx)).begin() as session:
        version = model_versions.promote_model_version(session, version_id)
        where = f" for region {version.region}" if version.region else ""
        click.echo(f"promoted {version.kind.value} model version {version.id} ({version.name}){where}; "
                   "`trapline reprocess --stage classify` relabels what it changes")


def _number(value: float | None) -> str:
    return "None" if value is None else str(round(value, 3))


@models.command("evaluate")
@click.argument("version_id", type=int)
@click.option("--labels", type=click.Path(exists=True, path_type=Path), required=True,
              help="Class folders or a path,label[,split][,x,y,w,h] CSV, as for `trapline train`.")
@click.option("--split", "only_split", type=click.Choice(["train", "validate", "test"]),
              help="Only the labels of this split (folders named by split, or a split column).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json, the confusion matrix (CSV, PNG) and confidence deciles.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_evaluate(ctx: click.Context, version_id: int, labels: Path, only_split: str | None, output: Path | None,
                    as_json: bool) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix and accuracy per confidence decile of VERSION."""
    from producer.training import evaluate_version

    settings = context.settings(ctx)
    with context.sessions(settings)() as session:
        scores, folder, images = evaluate_version(session, settings, version_id, labels, only_split, output)
    if as_json:
        context.echo_json(scores.to_dict())
        return
    click.echo(f"model version {version_id} on {images} images: accuracy {scores.accuracy:.3f}, "
               f"macro F1 {_number(scores.macro_f1)}")
    for c in scores.per_class:
        click.echo(f"  {c.label:<20} n={c.support:<6} precision={_number(c.precision)}  recall={_number(c.recall)}"
                   f"  f1={_number(c.f1)}")
    click.echo(f"artifacts: {folder}")
