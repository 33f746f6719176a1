"""Checks of the templates a journey's sends use: present in every locale, readable, only
known variables, and within the render bounds for a sample customer."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from jinja2 import FunctionLoader, TemplateSyntaxError, meta, nodes

from definition import conditions, templates
from definition.context import TemplateContext, unknown_fields
from definition.model import Journey, SendStep
from definition.problems import Problem, Report, Where, shown, suggest
from definition.sandbox import BoundedEnvironment, LimitExceeded, spending, template_budget


def check_templates(
    report: Report, journey: Journey, sends: list[tuple[Where, SendStep]], templates_dir: Path
) -> tuple[dict[str, str], list[Problem]]:
    """Every part of every send's message in every locale, and the layouts they use."""
    if not sends:
        return {}, []
    locales = []
    for index, locale in enumerate(journey.locales):
        if (templates_dir / locale).is_dir():
            locales.append(locale)
            continue
        default = "" if "locales" in journey.model_fields_set else " (the default locales are pl and en)"
        report.at(
            ("locales", index),
            f"locale {locale!r} has no templates: no folder {shown(templates_dir / locale)}{default}",
        )
    used: dict[str, None] = {}
    for where, step in sends:
        send = step.send
        for locale in locales:
            for part in templates.parts(send.channel):
                relative = templates.relative_path(locale, send.channel, send.template, part)
                if relative in used:
                    continue
                used[relative] = None
                if not (templates_dir / relative).is_file():
                    others = _message_names(templates_dir / locale / send.channel)
                    report.at(
                        (*where, "send", "template"),
                        f"missing template {relative} for send {send.template!r}{suggest(send.template, others)}",
                    )
    present = [relative for relative in used if (templates_dir / relative).is_file()]
    sources, problems = _read_templates(templates_dir, present)
    if not problems:
        problems = _sample_renders(templates_dir, sources, present)
    return sources, problems


def _message_names(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {file.name.split(".")[0] for file in folder.iterdir() if not file.name.startswith("_")}


def _read_templates(templates_dir: Path, wanted: list[str]) -> tuple[dict[str, str], list[Problem]]:
    """Sources of the `wanted` templates and of the layouts they extend, include or import."""
    environment = templates.environment({})
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    pending = list(wanted)
    queued = set(wanted)
    while pending:
        relative = pending.pop(0)
        file = templates_dir / relative
        try:
            source = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(file, 1, "cannot read template: it is not UTF-8 text"))
            continue
        except OSError as error:
            problems.append(Problem(file, 1, f"cannot read template: {error.strerror or error}"))
            continue
        sources[relative] = source
        if len(source) > templates.MAX_SOURCE:
            problems.append(
                Problem(
                    file, 1, f"template is {len(source):,} characters long: at most {templates.MAX_SOURCE:,}"
                )
            )
            continue
        try:
            tree = environment.parse(source)
        except TemplateSyntaxError as error:
            problems.append(Problem(file, error.lineno or 1, f"template syntax error: {error.message}"))
            continue
        except (RecursionError, MemoryError):
            problems.append(Problem(file, 1, "template nested too deeply to read"))
            continue
        except ValueError as error:  # an integer literal past Python's 4,300 digits
            problems.append(Problem(file, 1, f"template syntax error: {error}"))
            continue
        problems += _unknown_variables(file, tree)
        problems += [
            Problem(file, unknown.line, str(unknown)) for unknown in unknown_fields(tree, TemplateContext)
        ]
        problems += _constant_bounds(environment, file, tree)
        for referenced, line in _references(tree):
            if PurePosixPath(referenced).is_absolute() or ".." in PurePosixPath(referenced).parts:
                problems.append(
                    Problem(file, line, f"template {referenced!r} must be named from {shown(templates_dir)}")
                )
            elif not (templates_dir / referenced).is_file():
                problems.append(
                    Problem(file, line, f"template {referenced!r} not found under {shown(templates_dir)}")
                )
            elif referenced not in queued:
                queued.add(referenced)
                pending.append(referenced)
    return sources, problems


def _references(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """Templates named in `extends`, `include` and `import` tags, with their lines."""
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        template = getattr(node, "template", None)  # each of the four has one; the type says Stmt
        if isinstance(template, nodes.Const) and isinstance(template.value, str):
            yield template.value, node.lineno


def _unknown_variables(file: Path, tree: nodes.Template) -> list[Problem]:
    available = ", ".join(sorted(templates.TEMPLATE_NAMES))
    first_line: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load":
            first_line[node.name] = min(node.lineno, first_line.get(node.name, node.lineno))
    problems = []
    for name in sorted(meta.find_undeclared_variables(tree) - templates.TEMPLATE_NAMES):
        hint = suggest(name, templates.TEMPLATE_NAMES)
        problems.append(
            Problem(
                file,
                first_line.get(name, 1),
                f"variable {name!r} is not available{hint} (available: {available})",
            )
        )
    return problems


MAX_CONSTANT_PARTS = 100
"""Constant parts of one template checked one by one: a handful in any real template."""


def _constant_bounds(environment: BoundedEnvironment, file: Path, tree: nodes.Template) -> list[Problem]:
    """Parts of a template that are the same for every customer and go past a bound
    (`{{ 10**(10**10) }}`), wherever they are, even in a branch no sample would reach."""
    problems = []
    for part in itertools.islice(conditions.constant_parts(tree), MAX_CONSTANT_PARTS):
        template = nodes.Template([nodes.Output([copy.deepcopy(part)])], lineno=part.lineno)
        try:
            with spending(template_budget(templates.RENDER_WORK, templates.VALIDATE_SECONDS)):
                environment.from_string(template).render()
        except LimitExceeded as error:
            problems.append(Problem(file, part.lineno, f"goes past a limit: {error}"))
        except Exception:  # noqa: S112 - other failures depend on what the template is given
            continue
    return problems


def _sample_renders(templates_dir: Path, sources: dict[str, str], messages: list[str]) -> list[Problem]:
    """Render each message for a sample customer: a loop or a macro that goes past the time
    or size bounds is found here, at its line, rather than when a customer's send fails.
    Other failures (an event property the sample lacks, say) depend on the data: not reported."""
    files = {str(templates_dir / name): templates_dir / name for name in sources}
    environment = templates.environment(
        {}, FunctionLoader(lambda name: (sources[name], str(templates_dir / name), lambda: True))
    )
    problems = []
    for relative in messages:
        try:
            compiled = environment.get_template(relative)
        except TemplateSyntaxError as error:
            problems.append(
                Problem(templates_dir / relative, error.lineno or 1, f"template error: {error.message}")
            )
            continue
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            problems.append(Problem(templates_dir / relative, 1, "template too deeply nested to compile"))
            continue
        try:
            with spending(template_budget(templates.RENDER_WORK, templates.VALIDATE_SECONDS)):
                output = templates.render_part(environment, compiled, templates.sample_context())
            if (not_json := templates.output_problem(relative, output)) is not None:
                problems.append(Problem(templates_dir / relative, not_json.line, str(not_json)))
        except LimitExceeded as error:
            file, line = templates_dir / relative, 1
            trace = error.__traceback__
            while trace is not None:
                if trace.tb_frame.f_code.co_filename in files:
                    file, line = files[trace.tb_frame.f_code.co_filename], trace.tb_lineno
                trace = trace.tb_next
            problems.append(Problem(file, line, f"goes past a limit: {error}"))
        except RecursionError:
            problems.append(Problem(templates_dir / relative, 1, "template calls itself without end"))
        except Exception:  # noqa: S112 - see above
            continue
    return problems
