"""producer/cli/__init__.py: the root command loads command modules lazily and maps every error a person can
fix to one line and a hint, with the documented exit status; -v adds the traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from producer.cli import COMMANDS, main
from shared.config import get_settings
from tests.unit.synthetic import jpeg

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_command_without_importing_the_database_or_the_broker() -> None:
    probe = ("import sys; from producer.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(n for n in ('sqlalchemy', 'celery', 'kombu', 'torch', 'tensorflow') if n in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"
    for name in COMMANDS:
        assert f"\n  {name} " in completed.stdout
    assert "Exit status: 0 done, 1 failed" in completed.stdout


def test_every_command_group_loads(cli: CliRunner) -> None:
    for name in COMMANDS:
        result = cli.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


def test_a_setting_that_does_not_parse_is_one_line_and_a_hint(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_BATCH_SIZE", "abc")
    monkeypatch.setenv("TRAPLINE_DETECTOR__WEIGHTZ", "MDV5A")

    result = cli.invoke(main, ["status"])

    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: the settings are not valid",
        "  TRAPLINE_BATCH_SIZE: Input should be a valid integer, unable to parse string as an integer",
        "  TRAPLINE_DETECTOR__WEIGHTZ: unknown setting (a typo? .env.example lists every setting)",
        "Hint: fix these TRAPLINE_* variables in the environment or in .env; .env.example lists every setting "
        "with its default",
    ]
    assert "Traceback" not in result.output


def test_a_missing_weights_file_is_one_line_and_a_hint_from_every_command(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("TRAPLINE_DETECTOR__WEIGHTS", str(tmp_path / "md_v5a.0.0.pt"))
    for command in (["status"], ["enqueue"], ["metrics"], ["rde", "list"], ["review", "sample"],
                    ["export", "--format", "csv", "-o", str(tmp_path / "out.csv")]):
        result = cli.invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.output.splitlines()[0] == (f"Error: detector weights {tmp_path / 'md_v5a.0.0.pt'} not found "
                                                 "(TRAPLINE_DETECTOR__WEIGHTS)"), command
        assert result.output.splitlines()[1].startswith("Hint: set TRAPLINE_DETECTOR__WEIGHTS to a MegaDetector .pt")
        assert "Traceback" not in result.output


def test_a_broker_that_is_down_during_enqueue_says_the_batches_are_saved(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    archive = tmp_path / "archive" / "s1" / "c1"
    archive.mkdir(parents=True)
    for i in range(3):
        (archive / f"IMG_{i}.JPG").write_bytes(jpeg(64, 48))
    assert cli.invoke(main, ["scan", str(tmp_path / "archive")]).exit_code == 0
    monkeypatch.setenv("TRAPLINE_REDIS_URL", "redis://:s3cret@127.0.0.1:1/0")  # nothing listens on port 1
    get_settings.cache_clear()

    result = cli.invoke(main, ["enqueue"])

    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: cannot reach the broker at redis://:***@127.0.0.1:1/0: ")
    assert lines[1] == ("Hint: the batches are saved in the database; once the broker is up, "
                        "`trapline enqueue --stage detect --resume` sends them")
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_verbose_adds_the_traceback(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAPLINE_DETECTOR__WEIGHTS", str(tmp_path / "gone.pt"))

    result = cli.invoke(main, ["-v", "status"])

    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output and "ModelFileError" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("Hint: ")


def test_something_named_that_does_not_exist_is_a_usage_error(cli: CliRunner) -> None:
    result = cli.invoke(main, ["train", "status", "42"])

    assert result.exit_code == 2
    assert result.output.splitlines() == ["Error: training run 42 does not exist",
                                          "Hint: `trapline train status` lists the runs"]


def test_an_interrupted_command_exits_130(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import producer.status

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(producer.status, "gather", interrupted)

    result = cli.invoke(main, ["status"])

    assert result.exit_code == 130 and "interrupted" in result.output


def test_a_bug_keeps_its_traceback(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import producer.status

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(producer.status, "gather", broken)

    result = cli.invoke(main, ["status"])

    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
