"""Every ``dlcprune ...`` command line in README.md, docs/**/*.md and docs/examples/*.sh parses
against the real CLI, without running it.

Shell text (fenced code blocks, the example scripts) is read as a shell would split it: lines
continued with a backslash are joined, comments dropped, ``$VAR`` and ``${VAR}`` stand for a value,
and a command ends at ``)``, ``|``, ``;``, ``&&``, ``||`` or a redirection, so
``JOB=$(dlcprune remote score $DS --wait)`` yields ``dlcprune remote score 1 --wait``. Such lines
must parse completely. Inline code in prose (``dlcprune score --image-size 64``) may leave out
required arguments, but every option it names must exist and take the value it is given.

Inline options in the CLI's own pages (README.md, docs/api.md: ``--early-stop``, ``--scope layer``,
``--method random|herding``) must be options of some ``dlcprune`` command that take the values
shown. (docs/performance.md's inline options are the bench scripts'.)

The parse is click's, through typer: ``typer.main.get_command(app)``, then ``make_context`` for
each group and the command, which checks option names, values, choices and required parameters
and runs no command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from dlcprune.cli import command

ROOT = Path(__file__).resolve().parents[1]
# A shell variable's value: parses as a word, a whole number and a ratio alike.
VALUE = "1"
OPERATORS = {"(", ")", "|", "||", ";", "&", "&&", ">", ">>", "<", "2>", "$("}


@dataclass(frozen=True)
class CommandLine:
    """One ``dlcprune`` command found in a file: its words after ``dlcprune``; ``complete``:
    from shell text (every required argument must be there)."""

    path: str
    lineno: int
    words: tuple[str, ...]
    complete: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: dlcprune {shlex.join(self.words)}"


def shell_commands(text: str, path: str = "<text>", first_line: int = 1) -> list[CommandLine]:
    """The ``dlcprune`` commands of shell text."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = first_line + i
        logical = lines[i]
        while logical.endswith("\\") and i + 1 < len(lines):
            i += 1
            logical = logical[:-1] + " " + lines[i]
        i += 1
        logical = re.sub(r"^\s*\$ ", "", logical)  # a console prompt
        if "dlcprune" not in logical:
            continue
        logical = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", VALUE, logical)
        lexer = shlex.shlex(logical, posix=True, punctuation_chars=True)
        lexer.wordchars += "$%:,+@={}[]^"
        tokens = list(lexer)
        for k, token in enumerate(tokens):
            previous = tokens[k - 1] if k else None
            starts = previous is None or previous in OPERATORS or previous.endswith("=$")
            if token != "dlcprune" or not starts:
                continue
            words = []
            for word in tokens[k + 1 :]:
                if word in OPERATORS:
                    break
                words.append(word)
            found.append(CommandLine(path, lineno, tuple(words), complete=True))
    return found


FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`(dlcprune [^`\n]+)`")


def markdown_commands(text: str, path: str) -> list[CommandLine]:
    """Commands in a Markdown file's shell code blocks, and inline ``dlcprune ...`` code."""
    found: list[CommandLine] = []
    block: list[str] | None = None
    shell = False
    start = 0
    for n, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line.strip())
        if fence and block is None:
            block, shell, start = [], fence.group(1) in ("", "bash", "sh", "shell", "console"), n
            continue
        if fence and block is not None:
            if shell:
                found += shell_commands("\n".join(block), path, start + 1)
            block = None
            continue
        if block is not None:
            block.append(line)
            continue
        for match in INLINE.finditer(line):
            words = tuple(shlex.split(match.group(1))[1:])
            found.append(CommandLine(path, n, words, complete=False))
    return found


def documented_commands() -> list[CommandLine]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        found += markdown_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "docs" / "examples").glob("*.sh")):
        found += shell_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


def parse(words: tuple[str, ...] | list[str], complete: bool = True) -> Any:
    """Parse ``dlcprune WORDS`` as the CLI would, running nothing; returns the command's context.
    Raises typer's click ``UsageError`` (``NoSuchOption``, ``BadParameter``, ...) when it does not
    parse. With ``complete=False`` a missing required argument or option is accepted (click
    checks the given ones first)."""
    cmd, ctx, name, rest = command(), None, "dlcprune", list(words)
    while True:
        try:
            ctx = cmd.make_context(name, rest, parent=ctx, resilient_parsing=False)
        except typer.Exit as done:  # --help: printed, and exits with 0
            if done.exit_code != 0:
                raise
            return ctx
        except typer.TyperException as exc:
            if not complete and type(exc).__name__ in ("MissingParameter", "NoArgsIsHelpError"):
                return ctx
            raise
        if not hasattr(cmd, "get_command"):
            return ctx
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return ctx
        name, rest = rest[0], rest[1:]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise typer.BadParameter(f"no such command: {name!r}")
        cmd = sub


def parse_line(line: str, complete: bool = True) -> Any:
    return parse(shlex.split(line), complete=complete)


COMMANDS = documented_commands()


OPTION_DOCS = ("README.md", "docs/api.md")
OPTION = re.compile(r"`(--[a-z][a-z0-9-]*(?: [^`\n]+)?)`")


def leaf_commands() -> dict[tuple[str, ...], Any]:
    """Every runnable command by its words (``("remote", "score")``)."""
    out: dict[tuple[str, ...], Any] = {}
    todo: list[tuple[tuple[str, ...], Any]] = [((), command())]
    while todo:
        words, cmd = todo.pop()
        if hasattr(cmd, "commands"):
            todo += [((*words, name), sub) for name, sub in cmd.commands.items()]
        else:
            out[words] = cmd
    return out


def documented_options() -> list[tuple[str, int, str, tuple[str, ...]]]:
    """(path, line, option, values) for each inline option of OPTION_DOCS; ``a|b`` is two."""
    found = []
    for name in OPTION_DOCS:
        for n, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            for match in OPTION.finditer(line):
                option, _, value = match.group(1).partition(" ")
                found.append((name, n, option, tuple(value.split("|")) if value else ()))
    return found


@pytest.mark.parametrize("where", documented_options(), ids=lambda w: f"{w[0]}:{w[1]}:{w[2]}")
def test_every_documented_option_exists(where: tuple[str, int, str, tuple[str, ...]]) -> None:
    path, lineno, option, values = where
    having = [
        words
        for words, cmd in leaf_commands().items()
        if any(option in p.opts + p.secondary_opts for p in cmd.params)
    ]
    assert having, f"{path}:{lineno}: no dlcprune command has {option}"
    for value in values:
        if value.isupper():  # a placeholder such as FILE
            continue
        accepted = []
        for words in having:
            try:
                parse([*words, option, value], complete=False)
                accepted.append(words)
            except typer.TyperException:
                pass
        assert accepted, f"{path}:{lineno}: {option} {value} is refused by {having}"


def test_the_docs_show_the_commands_people_run() -> None:
    shown = {c.words[:2] if c.words[:1] == ("remote",) else c.words[:1] for c in COMMANDS}
    assert {("score",), ("select",), ("serve",), ("keys",)} <= shown, shown
    assert {("remote", "score"), ("remote", "select"), ("remote", "download")} <= shown, shown
    assert sum(c.complete for c in COMMANDS) >= 10


@pytest.mark.parametrize("line", COMMANDS, ids=str)
def test_every_documented_command_parses(line: CommandLine) -> None:
    try:
        parse(line.words, complete=line.complete)
    except typer.TyperException as exc:
        pytest.fail(f"{line}\n  does not parse: {exc}")


def test_shell_text_is_split_as_a_shell_would() -> None:
    text = (
        "DS=$(dlcprune remote upload digits.zip)\n"
        "$ dlcprune remote score $DS \\\n"
        "    --levels 3 --wait   # waits\n"
        'echo "dlcprune is not a command here" | dlcprune select s.csv --keep 0.5 --out o.txt\n'
        "dlcprune serve --port ${PORT} > log.txt && dlcprune worker\n"
    )
    got = [(c.lineno, c.words) for c in shell_commands(text)]
    assert got == [
        (1, ("remote", "upload", "digits.zip")),
        (2, ("remote", "score", VALUE, "--levels", "3", "--wait")),
        (4, ("select", "s.csv", "--keep", "0.5", "--out", "o.txt")),
        (5, ("serve", "--port", VALUE)),
        (5, ("worker",)),
    ]


def test_the_parse_takes_every_engine_option() -> None:
    ctx = parse_line(
        "score data/ --early-stop --early-stop-tol 0.99 --early-stop-window 2 --early-stop-min 4 "
        "--precision fp32 --schedule geometric --step 0.05 --masking random --draws 2 "
        "--scope layer --seed 3 --start 0.1 --end 0.9 --image-size 32 --batch-size 8 "
        "--max-length 64 --template {instruction} --truncation prompt --out s.csv"
    )
    assert ctx.params["early_stop"] is True and ctx.params["precision"] == "fp32"
    remote = parse_line("remote score ID --early-stop --precision bf16 --json")
    assert remote.params["early_stop"] is True and remote.params["as_json"] is True


@pytest.mark.parametrize(
    ("line", "complete"),
    [
        ("score data/ --early-stopping --out s.csv", True),  # no such option
        ("score --early-stopping", False),  # inline code: options are still checked
        ("score data/ --schedule cosine --out s.csv", True),  # not a choice
        ("score data/ --levels many --out s.csv", True),  # not a whole number
        ("score data/ --levels 5", True),  # --out is required
        ("remote score ID --batch-size 8", True),  # a worker setting, not a job parameter
        ("remote download SEL --out x/ --format tarball", True),
        ("sc0re data/ --out s.csv", True),
    ],
)
def test_a_line_that_does_not_parse_fails(line: str, complete: bool) -> None:
    with pytest.raises(typer.TyperException):
        parse_line(line, complete=complete)
