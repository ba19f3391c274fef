"""The command line reads as a small manual: every option has help, every command examples."""

from __future__ import annotations

import argparse

import pytest

from wms.cli import build_parser, main

#: the data flow: make or prepare audio, train, look at the bundle, play it, export it
PIPELINE = [
    "basic-waves",
    "prepare",
    "train",
    "info",
    "evaluate",
    "render",
    "play",
    "export",
    "demo",
]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_commands_are_listed_in_pipeline_order_each_with_a_sentence(capsys):
    assert list(_commands()) == PIPELINE
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    positions = [text.index(f"\n    {name}") for name in PIPELINE]
    assert positions == sorted(positions)
    assert "The usual order: wms prepare AUDIO" in text and "examples:\n  wms demo" in text


@pytest.mark.parametrize("name", PIPELINE)
def test_every_option_and_argument_has_help_and_the_command_has_examples(name):
    p = _commands()[name]
    missing = [
        a.option_strings[0] if a.option_strings else a.dest
        for a in p._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())
    ]
    assert not missing, f"wms {name}: no help for {missing}"
    examples = p.epilog.split("examples:\n", 1)[1].splitlines()
    assert 2 <= len(examples) <= 3 and all(x.startswith(f"  wms {name}") for x in examples)
    # options with a default say what it is
    for a in p._actions:
        if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS):
            if not isinstance(a, argparse._HelpAction):
                assert "default" in a.help, f"wms {name} {a.option_strings[0]}: default?"


def test_help_states_the_real_ranges():
    export = _commands()["export"].format_help()
    assert "frames in the bank, 2..256 (default: 256)" in export
