"""The `trapline` command: the root group, which loads each command group's module only when it is used, and
maps every error a person can fix to one line and a hint (``shared.errors``), in one place.

Commands live one group per module: ``pipeline`` (scan, enqueue, worker, status, run, reprocess, flower, db),
``train``, ``models``, ``review`` (review, rde, metrics), ``outputs`` (export, report, deployments, check, events,
ecology) and ``imports`` (import md-json). A
command parses its arguments, calls one producer function and prints what it returned.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from shared.errors import EXIT_INTERRUPTED, ServiceUnavailable, TraplineError

log = logging.getLogger("trapline")

COMMANDS = {  # command name -> "module:attribute", imported on first use
    "db": "producer.cli.pipeline:db",
    "scan": "producer.cli.pipeline:scan",
    "enqueue": "producer.cli.pipeline:enqueue",
    "worker": "producer.cli.pipeline:worker",
    "status": "producer.cli.pipeline:status",
    "run": "producer.cli.pipeline:run",
    "reprocess": "producer.cli.pipeline:reprocess",
    "flower": "producer.cli.pipeline:flower",
    "train": "producer.cli.train:train",
    "models": "producer.cli.models:models",
    "review": "producer.cli.review:review",
    "rde": "producer.cli.review:rde",
    "metrics": "producer.cli.review:metrics",
    "export": "producer.cli.outputs:export",
    "report": "producer.cli.outputs:report",
    "deployments": "producer.cli.outputs:deployments",
    "check": "producer.cli.outputs:check",
    "events": "producer.cli.outputs:events",
    "ecology": "producer.cli.outputs:ecology",
    "import": "producer.cli.imports:import_results",
}
EPILOG = ("Exit status: 0 done, 1 failed (the message says why and what to do; -v adds the traceback), "
          "2 wrong usage (arguments, settings, or something named that does not exist), 130 interrupted.")


class Failure(click.ClickException):
    """A ``TraplineError`` on its way out: its message, its problems and its hint, no traceback."""

    def __init__(self, error: TraplineError) -> None:
        super().__init__(error.message)
        self.error = error
        self.exit_code = error.exit_code

    def show(self, file=None) -> None:  # click's signature
        click.echo(f"Error: {self.error.message}", err=True)
        for problem in self.error.problems:
            click.echo(f"  {problem}", err=True)
        if self.error.hint:
            click.echo(f"Hint: {self.error.hint}", err=True)


def user_error(error: BaseException, ctx: click.Context) -> TraplineError | None:
    """The error as a person should read it, or None for a bug (which keeps its traceback)."""
    if isinstance(error, TraplineError):
        return error
    from shared.config import masked

    config = ctx.find_root().obj
    broker = masked(config.broker_url or config.redis_url) if config else "the broker"
    database = masked(config.database_url) if config else "the database"
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    if isinstance(error, (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError)):
        return ServiceUnavailable(f"cannot reach the broker at {broker}: {error}",
                                  "start Redis, or check TRAPLINE_REDIS_URL; nothing sent so far is lost")
    if isinstance(error, sqlalchemy.exc.OperationalError):
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        return ServiceUnavailable(f"cannot use the database at {database}: {reason}",
                                  "check TRAPLINE_DATABASE_URL and that the database server is running")
    return None


class Trapline(click.Group):
    """The root group: lazy subcommands and the one error-to-message mapping."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as error:
            problem = user_error(error, ctx)
            if problem is None:
                raise
            if ctx.meta.get("trapline.verbose"):
                traceback.print_exception(error, file=sys.stderr)
            raise Failure(problem) from error


@click.group(cls=Trapline, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("-v", "--verbose", count=True, help="More log output, and the traceback of an error (-vv: debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """trapline: camera-trap archives → MegaDetector and the classifiers → database, on Celery workers.

    Settings come from TRAPLINE_* environment variables or a .env file (see .env.example).
    """
    ctx.meta["trapline.verbose"] = verbose
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
