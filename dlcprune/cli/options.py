"""Command-line options generated from the parameters' one definition (``dlcprune.core.params``;
``dlcprune.core.selection.params`` for selections).

``param_options(DLCParams, BaselineParams, into="values")`` gives a typer command one option per
field (``image_size`` -> ``--image-size``), with the field's default and help text, choices as
``Literal`` types, and hands the command the values as one dict. Bounds are not repeated here:
``validate()`` checks them and says what is wrong in the same words as the API. A field without a
default (a selection's ``keep``) is a required option; ``parsers`` gives a field its own parser and
metavar (``keep``: a ratio or a count).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar

import typer

from dlcprune.core.params import Param, Spec, params_of, required

F = TypeVar("F", bound=Callable[..., Any])


def option_name(name: str) -> str:
    """``early_stop_tol`` -> ``--early-stop-tol``."""
    return "--" + name.replace("_", "-")


def _help(spec: Spec, p: Param) -> str:
    text = spec.help
    if p.type in (int, float) and (spec.ge, spec.gt, spec.le, spec.lt) != (None,) * 4:
        # A bound no one reaches (a seed's 2**63 - 1) says nothing: only the lower one then.
        huge = (spec.le or spec.lt or 0) > 2**32
        lower = f">= {spec.ge}" if spec.ge is not None else f"> {spec.gt}"
        text += f"; {lower}" if huge else f"; in {spec.interval()}"
    return text


# A field's own parser of the option's text, and the metavar it shows.
Parser = tuple[Callable[[str], Any], str]


def _parameter(
    p: Param,
    help_text: str,
    *,
    given_only: bool,
    panel: str | None,
    must: bool = False,
    parser: Parser | None = None,
) -> inspect.Parameter:
    kind: Any = p.type
    if p.spec.choices is not None:
        kind = Literal[p.spec.choices]  # type: ignore[valid-type]
    optional = not must and (p.optional or given_only)
    if optional:
        kind = kind | None
    default: Any = inspect.Parameter.empty if must else None if given_only else p.default
    decls = [option_name(p.name)]
    if p.type is bool:
        decls = [f"{option_name(p.name)}/--no-{option_name(p.name)[2:]}"]
    extra: dict[str, Any] = {}
    if parser is not None:
        extra = {"parser": parser[0], "metavar": parser[1]}
    option = typer.Option(
        *decls,
        help=help_text,
        rich_help_panel=panel,
        show_default=not must and not given_only and p.default is not None,
        **extra,
    )
    return inspect.Parameter(
        p.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def param_options(
    *classes: type,
    into: str,
    given_only: bool = False,
    panels: tuple[str, ...] = (),
    parsers: Mapping[str, Parser] | None = None,
) -> Callable[[F], F]:
    """Add one option per field of ``classes`` to a typer command; the command's parameter
    ``into`` receives ``{field: value}``.

    A name several classes share is one option (the first class's default; both help texts).
    ``given_only``: for a remote service, which fills its own defaults: execution details (the
    batch size, a worker setting) are left out, every option defaults to None, and only the
    options given on the command line are passed on (a required field is required still).
    ``parsers``: ``{field: (parser, metavar)}`` for fields whose text has rules of its own; their
    help does not repeat the bounds."""
    parsers = dict(parsers or {})
    chosen: dict[str, tuple[Param, str, str | None]] = {}
    owner: dict[str, type] = {}
    for i, cls in enumerate(classes):
        panel = panels[i] if i < len(panels) else None
        for p in params_of(cls):
            if given_only and p.spec.execution:
                continue
            if p.name in chosen:
                first, text, first_panel = chosen[p.name]
                if p.spec.help != first.spec.help:
                    text = f"{text}. {cls.__name__.removesuffix('Params')}: {p.spec.help}"
                chosen[p.name] = (first, text, first_panel)
            else:
                text = p.spec.help if p.name in parsers else _help(p.spec, p)
                chosen[p.name] = (p, text, panel)
                owner[p.name] = cls
    unknown = set(parsers) - set(chosen)
    if unknown:
        raise TypeError(f"parsers for fields that are not options: {sorted(unknown)}")
    generated = [
        _parameter(
            p,
            text,
            given_only=given_only,
            panel=panel,
            must=required(owner[p.name], p.name),
            parser=parsers.get(p.name),
        )
        for p, text, panel in chosen.values()
    ]

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]
        clash = {p.name for p in own} & set(chosen)
        if clash:
            raise TypeError(f"{fn.__name__}: options {sorted(clash)} are parameters already")

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in chosen}
            if given_only:
                values = {k: v for k, v in values.items() if v is not None}
            return fn(*args, **kwargs, **{into: values})

        parameters = own + generated
        # typer reads the signature and the annotations; neither may see through to ``fn``.
        del command.__wrapped__  # type: ignore[attr-defined]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command  # type: ignore[return-value]

    return decorate


def pick(cls: type, values: dict[str, Any]) -> Any:
    """``cls`` built from the values of its own fields."""
    names = {p.name for p in params_of(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
