#!/usr/bin/env python
"""Write the generated reference pages of the manual: docs/reference/flags.md (every flag of
every script, from its argparse parser) and docs/reference/config.md (every key of config.yaml,
with its default and its comment). The pages are never edited by hand: change a parser or
config.yaml, then run this. tests/test_docs.py fails when a committed page differs from what
this writes.

    python docs/make_reference.py            # rewrite both pages
    python docs/make_reference.py --check    # exit 1 if a page is out of date
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_text  # noqa: E402

FLAGS_PAGE = REPO / "docs" / "reference" / "flags.md"
CONFIG_PAGE = REPO / "docs" / "reference" / "config.md"

# The scripts whose flags are documented, in the order a user meets them.
SCRIPTS = {
    "entry points": ["predict.py", "app.py", "compare.py", "annotate.py", "train.py",
                     "evaluate.py", "export.py", "pseudo_label.py"],
    "data preparation": ["png_parsing.py", "face_masking.py", "face_parsing_extraction.py",
                         "make_weak_labels.py", "utils/data/sanity_check_dimensions.py",
                         "utils/data/dataset_metrics.py"],
    "cross-validation and benchmarks": [
        "bench/cross_validate.py", "bench/paired.py", "bench/cv_table.py",
        "bench/bench_infer.py", "bench/bench_int8.py", "bench/bench_layers.py", "bench/bench_video.py",
        "bench/bench_pipeline.py", "bench/bench_wild.py", "bench/bench_faces.py",
        "bench/bench_face_region.py", "bench/bench_lines.py", "bench/bench_compare.py", "bench/bench_grey.py",
        "bench/bench_averaging.py", "bench/bench_finetune.py", "bench/bench_train.py",
        "bench/bench_loader.py", "bench/bench_openvino_options.py", "bench/gpu_check.py"],
}
# Defaults a parser takes from the environment are documented as the environment-free ones.
ENV_DEFAULTS = ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT")


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def parser_of(script: str) -> argparse.ArgumentParser:
    """The argparse parser a script builds, caught as it is about to parse (nothing runs)."""
    path = REPO / script
    spec = importlib.util.spec_from_file_location(f"_doc_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UserError(f"{script}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    build = getattr(module, "parse_args", None) or getattr(module, "main", None)
    if build is None:
        raise UserError(f"{script}: has neither parse_args(argv) nor main(argv) to document")

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parser(self)

    saved = {k: os.environ.pop(k) for k in ENV_DEFAULTS if k in os.environ}
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
    try:
        try:
            build([])
        except TypeError:
            build()
    except _Parser as got:
        got.parser.prog = script
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
        os.environ.update(saved)
    raise UserError(f"{script}: parse_args did not build a parser")


def _cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _flag_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.metavar and action.option_strings:
        names += f" {action.metavar}"
    what = action.help or ""
    if action.choices and not isinstance(action.choices, range):
        what += f" (one of: {', '.join(str(c) for c in action.choices)})"
    if action.nargs in ("+", "*") and not action.option_strings:
        what += " (one or more)" if action.nargs == "+" else " (any number)"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or not action.option_strings \
        else f"`{default}`" if not isinstance(default, list) or default else ""
    return f"| {_cell(names)} | {_cell(shown)} | {_cell(what)} |"


def flags_page() -> str:
    """docs/reference/flags.md: per script, its summary line and a table of its arguments."""
    lines = ["# Flags of every script", "",
             "Generated from the scripts' parsers by `python docs/make_reference.py`; do not "
             "edit. `python SCRIPT --help` prints the same with the script's full description "
             "and examples.", ""]
    for group, scripts in SCRIPTS.items():
        lines.append(f"- {group}: " + ", ".join(
            f"[`{s}`](#{s.replace('/', '').replace('.', '').replace('_', '_')})"
            for s in scripts))
    lines.append("")
    for group, scripts in SCRIPTS.items():
        lines += [f"## {group[0].upper()}{group[1:]}", ""]
        for script in scripts:
            p = parser_of(script)
            summary = (p.description or "").strip().split("\n\n")[0]
            lines += [f"### {script}", "", _cell(summary), "",
                      "| argument | default | what |", "| --- | --- | --- |"]
            for action in p._actions:
                if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                    continue
                lines.append(_flag_row(action))
            lines.append("")
    return "\n".join(lines)


def config_keys(path: Path) -> list[tuple[str, str, str, str]]:
    """(section, key, default, comment) for every key of a config file in config.yaml's layout:
    sections at the margin, keys indented with a trailing comment, comment-only lines continuing
    the key above them."""
    rows: list[list[str]] = []
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or (raw.startswith("#") and not rows):
            continue
        body, _, comment = raw.partition(" #")
        if raw.lstrip().startswith("#"):
            if rows and raw.startswith(" "):
                rows[-1][3] += " " + raw.strip().lstrip("#").strip()
            continue
        if not raw.startswith(" "):
            section = body.strip().rstrip(":")
            continue
        key, _, value = body.strip().partition(":")
        rows.append([section, key.strip(), value.strip(), comment.strip()])
    return [tuple(r) for r in rows]  # type: ignore[misc]


def config_page() -> str:
    """docs/reference/config.md: every key of config.yaml, section by section."""
    lines = ["# config.yaml, key by key", "",
             "Generated from `config.yaml` by `python docs/make_reference.py`; do not edit. "
             "Scripts load config.yaml, then a `--config FILE` on top of it, then their flags and "
             "any `--set section.key=value`; an unknown key is an error that names the nearest "
             "valid one. The recipes in `configs/` override a few of these keys each.", ""]
    section = None
    for sec, key, default, comment in config_keys(REPO / "config.yaml"):
        if sec != section:
            section = sec
            lines += ["", f"## {sec}", "", "| key | default | what |", "| --- | --- | --- |"]
        lines.append(f"| `{sec}.{key}` | `{_cell(default)}` | {_cell(comment)} |")
    lines.append("")
    return "\n".join(lines)


def _portable(text: str) -> str:
    """The page as it reads in any checkout: defaults and help texts that hold this
    checkout's absolute paths name them relative to it (the shared data as ../shared)."""
    text = text.replace(str(REPO.parent / "shared"), "../shared")
    return text.replace(str(REPO) + "/", "").replace(str(REPO), ".")


def pages() -> dict[Path, str]:
    return {FLAGS_PAGE: _portable(flags_page()), CONFIG_PAGE: _portable(config_page())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a committed page differs from what is generated")
    args = p.parse_args(argv)
    stale = []
    for path, text in pages().items():
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old == text:
            continue
        stale.append(path)
        if not args.check:
            write_text(path, text)
            print(f"written {path.relative_to(REPO)}")
    if args.check and stale:
        raise UserError("out of date: " + ", ".join(str(s.relative_to(REPO)) for s in stale)
                        + " (run python docs/make_reference.py)")
    if not stale:
        print("the reference pages are current")
    return 0


if __name__ == "__main__":
    run_cli(main)
