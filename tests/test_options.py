"""Each option is listed once (dsplug.options) and every consumer reads that list."""

import argparse
from pathlib import Path

import pytest

from dsplug import MODES
from dsplug._checks import look_up_option
from dsplug.cli import build_parser
from dsplug.losses import LOSSES
from dsplug.options import Amp, Balance, LabelMode, Mode, PseudoLabels, Schedule, choose


def test_every_mode_has_a_spec_and_a_loss():
    assert list(MODES) == list(Mode)
    assert set(LOSSES) == set(Mode)
    for mode, spec in MODES.items():
        assert spec.name is mode
        assert LOSSES[mode].mode is mode


def _choices(parser: argparse.ArgumentParser, command: str, flag: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return list(action.choices)


@pytest.mark.parametrize(
    ("flag", "option"),
    [
        ("--mode", Mode),
        ("--label-mode", LabelMode),
        ("--balance", Balance),
        ("--schedule", Schedule),
        ("--amp", Amp),
    ],
)
def test_cli_choices_are_the_enum(flag, option):
    choices = _choices(build_parser(), "train", flag)
    assert choices == [m.value for m in option]
    assert all(type(c) is str for c in choices)  # argparse quotes them in its messages


@pytest.mark.parametrize("option", [Mode, LabelMode, Schedule, Balance, PseudoLabels, Amp])
def test_choose_returns_the_member_and_names_the_options(option):
    first = next(iter(option))
    assert choose(first.value, option, "x") is first
    with pytest.raises(ValueError, match="Available options are") as err:
        choose(first.value + "z", option, "x")
    message = str(err.value)
    assert "<" not in message  # values, not enum reprs
    assert all(repr(m.value) in message for m in option)
    assert f"did you mean {first.value!r}" in message


def test_look_up_option_keeps_the_users_string():
    value = look_up_option("hyb", Mode, "mode")
    assert value == "hyb" and type(value) is str


def test_the_docs_strategy_table_lists_every_mode_in_order():
    page = (Path(__file__).resolve().parents[1] / "docs" / "strategies.md").read_text()
    table = page.split("# Strategies", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    assert [cell.strip().strip("`") for cell, _ in rows] == [m.value for m in Mode]
    for (_, paper), spec in zip(rows, MODES.values(), strict=True):
        assert paper.strip().startswith(spec.paper)
