"""`trapline import`: results other tools made, adopted as trapline's own."""

from __future__ import annotations

from pathlib import Path

import click

from producer.cli import context


@click.group(name="import")
def import_results() -> None:
    """Load results another tool made."""


@import_results.command(name="md-json")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--archive", type=click.Path(path_type=Path), required=True,
              help="The registered archive (`trapline scan`) whose images the file's paths name.")
@click.option("--name", help="The detector version the results become (default: '<file name> (imported)').")
@click.option("--prefix", default="", help="Put in front of each path of the file: the folder below the archive "
              "root that the other tool ran on.")
@click.option("--unmatched", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to list the paths that match no image (default: <file stem>.unmatched.txt here).")
@click.pass_context
def md_json(ctx: click.Context, file: Path, archive: Path, name: str | None, prefix: str,
            unmatched: Path | None) -> None:
    """MegaDetector results (batch output format; MegaDetector's own runner, AddaxAI, Timelapse) as detect
    outcomes of a named detector version: checked with the megadetector package's validator first, paths matched
    to the archive's images, each image's EXIF and maker note read (no pixel decoded), every path that matches
    no image listed. Then `trapline enqueue --stage classify --detector NAME` classifies them, and review, events
    and ecology go on as after trapline's own detection."""
    from producer.md_import import import_md_json

    settings = context.settings(ctx)
    done = import_md_json(context.sessions(settings), settings, file, archive, name, prefix,
                          unmatched or Path(f"{file.stem}.unmatched.txt"))
    for line in done.lines():
        click.echo(line)
