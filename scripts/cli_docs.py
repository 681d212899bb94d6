"""Write docs/cli.md, the command-line reference, from introvae's argparse parser.

    python scripts/cli_docs.py            # rewrite docs/cli.md
    python scripts/cli_docs.py --check    # exit 1 if docs/cli.md is not what the parser gives

Every command, and every option with its type, choices, default and help, as `introvae COMMAND --help` prints them.
tests/test_docs.py fails when docs/cli.md is out of date, so run this after changing an option or a command.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"


def _parser() -> argparse.ArgumentParser:
    from introvae.cli import build_parser

    return build_parser()


def _config_defaults() -> dict[str, object]:
    """The defaults of the config options, which the parser hides (SUPPRESS) so that presets can fill them."""
    from introvae.config import option_table

    return {spec.name: spec.default for spec in option_table()}


def _cell(text: object) -> str:
    """One table cell: argparse's %% unescaped, one line, pipes escaped."""
    return " ".join(str(text).replace("%%", "%").split()).replace("|", "\\|")


def _type_name(action: argparse.Action, config_defaults: dict[str, object]) -> str:
    if action.nargs == 0:
        return "flag"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "flag (`--no-` form too)"
    if action.dest in config_defaults and action.default is argparse.SUPPRESS:
        name = type(config_defaults[action.dest]).__name__
    elif action.type is None:
        name = "str"
    else:
        name = getattr(action.type, "__name__", "str")
        name = {"Path": "path", "PosixPath": "path"}.get(name, name)
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        name += f" x {action.nargs}" if isinstance(action.nargs, int) else f" ({action.nargs})"
    return name


def _default(action: argparse.Action, config_defaults: dict[str, object]) -> str:
    default = action.default
    if default is argparse.SUPPRESS:
        default = config_defaults.get(action.dest, argparse.SUPPRESS)
        if default is argparse.SUPPRESS:
            return ""
    if default is None or (action.nargs == 0 and default is False):
        return ""
    if isinstance(default, (list, tuple)):
        default = " ".join(str(d) for d in default)
    return f"`{default}`"


# A config option's help ends with "(TYPE, default: VALUE)": the table has columns for both.
_TRAILING_DEFAULT = re.compile(r"\s*\((?:[\w.]+, )?default: [^()]*\)\s*$")


def _help(action: argparse.Action, config_defaults: dict[str, object]) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"default": action.default, "prog": "introvae"}
    if action.dest in config_defaults:
        text = _TRAILING_DEFAULT.sub("", text)
    return _cell(text)


def _option_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return f"`{names}`"
    metavar = action.metavar
    if metavar is None:
        metavar = action.dest.upper()  # the choices have their own column
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.nargs in ("*", "+"):
        metavar = f"{metavar} ..."
    return f"`{names} {metavar}`"


def _command_section(name: str, summary: str, parser: argparse.ArgumentParser,
                     config_defaults: dict[str, object]) -> list[str]:
    lines = [f"## introvae {name}", "", _cell(summary) + ("." if summary and not summary.endswith(".") else ""), ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    lines += ["```", parser.format_usage().strip(), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| option | type | choices | default | help |",
                  "| --- | --- | --- | --- | --- |"]
        for a in actions:
            choices = ", ".join(f"`{c}`" for c in a.choices) if a.choices else ""
            lines.append(f"| {_option_name(a)} | {_type_name(a, config_defaults)} | {choices} | "
                         f"{_default(a, config_defaults)} | {_help(a, config_defaults)} |")
        lines.append("")
    return lines


def render() -> str:
    """The text of docs/cli.md."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "120"  # argparse wraps usage lines to the terminal; fix the width so the file is stable
    try:
        parser = _parser()
        config_defaults = _config_defaults()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        summaries = {c.dest: c.help or "" for c in sub._choices_actions}
        lines = [
            "# The command line",
            "",
            "<!-- Generated by `python scripts/cli_docs.py` from introvae's argument parser: do not edit by hand. -->",
            "",
            "Every command and every option, as `introvae COMMAND --help` prints them "
            "(`python -m introvae` is the same).",
            "Options of `train`, `calibrate` and `toy2d` without a default in the parser take it from the config, a",
            "`--preset` or `--config FILE.json`; the default shown is the config's own. Bad input prints one sentence",
            "and exits with status 2. See [config.md](config.md) for the config and the presets.",
            "",
            "| command | what it does |",
            "| --- | --- |",
        ]
        for name in sub.choices:
            lines.append(f"| [`{name}`](#introvae-{name}) | {_cell(summaries.get(name, ''))} |")
        lines.append("")
        for name, parser_ in sub.choices.items():
            lines += _command_section(name, summaries.get(name, ""), parser_, config_defaults)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that docs/cli.md is up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
