"""Command-line options generated from the parameters' one definition (``dlcprune.core.params``).

``param_options(DLCParams, BaselineParams, into="values")`` gives a typer command one option per
field (``image_size`` -> ``--image-size``), with the field's default and help text, choices as
``Literal`` types, and hands the command the values as one dict. Bounds are not repeated here:
``validate()`` checks them and says what is wrong in the same words as the API.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer

from dlcprune.core.params import Param, Spec, params_of

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


def _parameter(
    p: Param, help_text: str, *, given_only: bool, panel: str | None
) -> inspect.Parameter:
    kind: Any = p.type
    if p.spec.choices is not None:
        kind = Literal[p.spec.choices]  # type: ignore[valid-type]
    optional = p.optional or given_only
    if optional:
        kind = kind | None
    default = None if given_only else p.default
    decls = [option_name(p.name)]
    if p.type is bool:
        decls = [f"{option_name(p.name)}/--no-{option_name(p.name)[2:]}"]
    option = typer.Option(
        *decls,
        help=help_text,
        rich_help_panel=panel,
        show_default=not given_only and p.default is not None,
    )
    return inspect.Parameter(
        p.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def param_options(
    *classes: type,
    into: str,
    given_only: bool = False,
    panels: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Add one option per field of ``classes`` to a typer command; the command's parameter
    ``into`` receives ``{field: value}``.

    A name several classes share is one option (the first class's default; both help texts).
    ``given_only``: for a remote service, which fills its own defaults: execution details (the
    batch size, a worker setting) are left out, every option defaults to None, and only the
    options given on the command line are passed on."""
    chosen: dict[str, tuple[Param, str, str | None]] = {}
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
                chosen[p.name] = (p, _help(p.spec, p), panel)
    generated = [
        _parameter(p, text, given_only=given_only, panel=panel)
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
