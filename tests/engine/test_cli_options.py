"""The score/rectify flags are generated from the options models (initscore.cli.options.options_from)."""
from __future__ import annotations

from typing import Any, Literal

import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from initscore.cli import app
from initscore.cli.options import options_from
from initscore.contract import RectifyOptions, ScoreOptions


def _help(verb: str) -> str:
    res = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"})
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


def test_every_option_field_has_a_flag_with_its_description():
    for verb, model, flags in (("rectify", RectifyOptions, {"split": "--sub-batch-split", "seed": "--seed"}),
                               ("score", ScoreOptions, {"split": "--sub-batch-split", "seed": "--init-seed"})):
        text = _help(verb)
        for name, field in model.model_fields.items():
            flag = flags.get(name, "--" + name.replace("_", "-"))
            assert f" {flag} " in text, (verb, flag)
            if field.description and name != "seed":  # rectify's --seed also seeds the data: its own help
                assert " ".join(field.description.split()) in text, (verb, name)


class _Toy(BaseModel):
    steps: int = Field(default=3, ge=1, description="how many steps")
    kind: Literal["a", "b"] = Field(default="a", description="which kind")
    names: list[str] | None = Field(default=None, description="names to keep")
    rate: float | None = None


def test_a_new_field_becomes_a_flag_without_editing_the_command():
    got: list[dict[str, Any]] = []
    toy = typer.Typer()

    @toy.command()
    @options_from(_Toy, flags={"rate": "--learning-rate"})
    def run(label: str = typer.Option("x", "--label"), options: dict[str, Any] | None = None) -> None:
        got.append({"label": label, **(options or {})})

    runner = CliRunner()
    res = runner.invoke(toy, ["--steps", "5", "--names", "p, q", "--learning-rate", "0.5"])
    assert res.exit_code == 0, res.output
    assert got[-1] == {"label": "x", "steps": 5, "names": ["p", "q"], "rate": 0.5}
    assert runner.invoke(toy, []).exit_code == 0 and got[-1] == {"label": "x"}  # not given: the model's default
    help_text = " ".join(runner.invoke(toy, ["--help"], env={"COLUMNS": "300"}).output.split())
    assert "how many steps; default: 3" in help_text and "which kind; one of: a | b; default: a" in help_text
    assert "names to keep; comma-separated" in help_text
