"""Each command owns its options (issue 30, item 3): every option of ``dsplug <command>`` is
declared in that command's own modules, beside the code that reads it, or in the option groups
the commands share (``dsplug.train.commands.arguments``); never in ``dsplug.cli``, which only
dispatches. And no option was lost or added on the way: each command's options are listed here.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

import pytest

from dsplug.cli import build_parser

COMMANDS = "dsplug.train.commands"
SHARED = f"{COMMANDS}.arguments"

#: The modules of each command (``train`` reads its options in five).
OWN: dict[str, tuple[str, ...]] = {
    "train": ("train", "setup", "patches", "semi", "run_folder"),
    "evaluate": ("evaluate",),
    "predict": ("predict",),
    "demo": ("demo",),
    "export": ("export",),
    "compare": ("compare",),
}

#: Read by ``dsplug.cli`` itself (the error policy), for every command.
CLI_READS = {"debug"}

#: Each command's options, as ``--help`` lists them (positionals by name).
OPTIONS: dict[str, str] = {
    "train": "--model --encoder --base-channels --depth --norm --mode --weights --label-mode "
    "--balance --schedule --aux-every --data --kind --option --axis --no-zscore --drop-empty "
    "--slice-range --fit --size --augment --splits --split-seed --contiguous --cache-dir "
    "--no-cache --epochs --min-epochs --batch-size --recipe --lr --iterations --warmup-epochs "
    "--patience --lr-step "
    "--lr-gamma --seed --workers --amp --channels-last --compile --deterministic --target-dice "
    "--device --threads --patch --patches-per-image --nsd-tolerance --unlabeled --semi "
    "--labeled-cases --unlabeled-ratio --rampup --unlabeled-weight --ema-decay --quiet "
    "--no-tensorboard --no-plots --out --resume --resume-from --overwrite --debug",
    "evaluate": "checkpoint --batch-size --device --threads --out --split --data --workers "
    "--overwrite --cache-dir --no-cache --tta --nsd-tolerance --debug",
    "predict": "checkpoint --batch-size --device --threads --out inputs --roi --overwrite --tta "
    "--debug",
    "demo": "--out --overwrite --epochs --min-epochs --cases --size --base-channels --depth "
    "--batch-size --target-dice --seed --quiet --device --threads --debug",
    "export": "checkpoint --format --out --overwrite --debug",
    "compare": "runs --out --overwrite --debug",
}


def _declared(monkeypatch: pytest.MonkeyPatch) -> tuple[argparse.ArgumentParser, dict[int, str]]:
    """The parser, and the module that declared each of its actions (by ``id``)."""
    where: dict[int, str] = {}
    add = argparse._ActionsContainer.add_argument

    def recorded(self: argparse._ActionsContainer, *args, **kwargs) -> argparse.Action:
        action = add(self, *args, **kwargs)
        where[id(action)] = sys._getframe(1).f_globals["__name__"]
        return action

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", recorded)
    return build_parser(), where


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(found.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _source(module: str) -> str:
    return Path(importlib.import_module(module).__file__).read_text()


def test_each_command_declares_its_options_beside_the_code_that_reads_them(monkeypatch) -> None:
    parser, where = _declared(monkeypatch)
    commands = _commands(parser)
    assert set(commands) == set(OWN)
    wrong = []
    for name, command in commands.items():
        own = [f"{COMMANDS}.{m}" for m in OWN[name]]
        read_in = "".join(_source(m) for m in own)
        for action in _options(command):
            flag = "/".join(action.option_strings) or action.dest
            module = where[id(action)]
            reads = re.compile(rf"\bargs\.{action.dest}\b|[\"']{action.dest}[\"']")
            if module not in (*own, SHARED):
                wrong.append(f"dsplug {name} {flag}: declared in {module}, not in {own}")
            elif module != SHARED and not reads.search(_source(module)):
                wrong.append(f"dsplug {name} {flag}: declared in {module}, which never reads it")
            elif action.dest not in CLI_READS and not reads.search(read_in):
                wrong.append(f"dsplug {name} {flag}: shared, but no module of {name} reads it")
    assert not wrong, "\n".join(wrong)


def test_each_command_has_the_options_it_had() -> None:
    for name, command in _commands(build_parser()).items():
        listed = [a.option_strings[0] if a.option_strings else a.dest for a in _options(command)]
        assert listed == OPTIONS[name].split(), f"dsplug {name}: options changed"
