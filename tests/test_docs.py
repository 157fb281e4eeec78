"""The documentation holds together: every page is reachable from README.md, every relative link (and its #anchor)
exists, every command line in a shell block uses only flags its command's parser knows, every Python block parses
and imports only names that exist (README's quick start and docs/volumes.md's example also run: tests/test_readme.py,
tests/volumes/test_docs_snippet.py), and README's fresh-machine commands are the ones `.ci/run` runs."""

import ast
import functools
import importlib
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from test_cli_flags import help_flags

README = REPO_ROOT / "README.md"
CONTRIBUTING = REPO_ROOT / "CONTRIBUTING.md"
DOCS = REPO_ROOT / "docs"
PAGES = [README, CONTRIBUTING, *sorted(DOCS.rglob("*.md"))]

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
COMMAND_SEPARATORS = {"&&", "||", ";", "|"}


def prose(text: str) -> str:
    """The text outside code: fenced blocks and inline code spans removed."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z+.-]*:", target)]


def resolve(page: Path, target: str) -> Path:
    path = target.split("#", 1)[0]
    return (page.parent / path).resolve() if path else page.resolve()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation other than '-' and '_' dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.cache
def anchors(page: Path) -> set[str]:
    text = page.read_text()
    found = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found


def linked_pages(page: Path) -> set[Path]:
    return {resolve(page, target) for target in relative_links(page)}


def test_every_page_is_reachable_from_the_readme():
    """docs/*.md and CONTRIBUTING.md directly; a page in a docs subfolder directly or through that folder's
    README.md (docs/benchmarks/README.md), which the README links."""
    from_readme = linked_pages(README)
    unreachable = []
    for page in PAGES[1:]:
        page = page.resolve()
        folder_index = page.parent / "README.md"
        in_subfolder = page.parent != DOCS.resolve()
        through_index = in_subfolder and folder_index in from_readme and page in linked_pages(folder_index)
        if page not in from_readme and not through_index:
            unreachable.append(str(page.relative_to(REPO_ROOT)))
    assert not unreachable, f"not linked from README.md: {unreachable}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_relative_links_point_at_existing_files_and_anchors(page):
    broken = []
    for target in relative_links(page):
        path = resolve(page, target)
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif "#" in target and path.suffix == ".md" and target.split("#", 1)[1] not in anchors(path):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(REPO_ROOT)}: {broken}"


@functools.cache
def known_flags(command: str) -> frozenset[str]:
    return frozenset(help_flags(command))


@functools.cache
def command_of_module(module: str) -> str:
    """The autosam-* console script that `python -m module` runs: the one whose entry point is `module.main`."""
    main = getattr(importlib.import_module(module), "main", None)
    for entry_point in entry_points(group="console_scripts"):
        if entry_point.name.startswith("autosam-") and entry_point.load() is main:
            return entry_point.name
    raise AssertionError(f"python -m {module}: no autosam-* command runs its main")


def shell_commands(text: str):
    """(command, its arguments) of every autosam-* run in the shell blocks of `text`: `autosam-x ...`,
    `accelerate launch ... -m autosam_hf.y ...` and `python -m autosam_hf.y ...`, continuation lines joined."""
    for language, block in FENCE.findall(text):
        if language not in SHELL_LANGUAGES:
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.removeprefix("$ ")
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:  # an unbalanced quote in a placeholder: words are enough here
                tokens = line.split("#", 1)[0].split()
            command: list[str] = []
            for token in [*tokens, ";"]:
                if token not in COMMAND_SEPARATORS:
                    command.append(token.removesuffix(";"))
                if token in COMMAND_SEPARATORS or token.endswith(";"):
                    if found := autosam_command(command):
                        yield found
                    command = []


def autosam_command(tokens: list[str]) -> tuple[str, list[str]] | None:
    while tokens and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):  # environment assignments
        tokens = tokens[1:]
    if not tokens:
        return None
    if tokens[0].startswith("autosam-"):
        return tokens[0], tokens[1:]
    if tokens[:2] == ["accelerate", "launch"] or tokens[0] in ("python", "python3"):
        if "-m" in tokens:
            index = tokens.index("-m")
            if index + 1 < len(tokens) and tokens[index + 1].startswith("autosam_hf"):
                return command_of_module(tokens[index + 1]), tokens[index + 2 :]
    return None


def flags_of(arguments: list[str]) -> list[str]:
    flags = []
    for argument in arguments:
        argument = argument.strip("[]")  # optional flags written [--fast]
        if re.match(r"--?[A-Za-z]", argument):
            flags.append(argument.split("=", 1)[0])
    return flags


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_shell_blocks_use_only_flags_their_command_knows(page):
    unknown = []
    for command, arguments in shell_commands(page.read_text()):
        unknown += [f"{command} {flag}" for flag in flags_of(arguments) if flag not in known_flags(command)]
    assert not unknown, f"{page.relative_to(REPO_ROOT)}: unknown flags {unknown}"


def python_blocks(page: Path) -> list[str]:
    return [code for language, code in FENCE.findall(page.read_text()) if language == "python"]


def missing_imports(code: str) -> list[str]:
    """The `from module import name` names of `code` that do not exist (the snippets' first line of contact with
    the package: a moved module or a renamed function)."""
    missing = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{alias.name}" for alias in node.names if not hasattr(module, alias.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_python_blocks_parse_and_import_what_exists(page):
    for code in python_blocks(page):
        assert not missing_imports(code), f"{page.relative_to(REPO_ROOT)}: {missing_imports(code)}"


def test_the_import_check_finds_a_renamed_function():
    assert missing_imports("from autosam_hf.inference import predict_images, predict_everything") == [
        "autosam_hf.inference.predict_everything"
    ]
    with pytest.raises(ModuleNotFoundError):
        missing_imports("from autosam_hf.predict_module import predict_images")


def test_the_flag_check_reads_continuations_environments_and_chains():
    text = (
        "```bash\n"
        "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu -m autosam_hf.train --preset kvasir \\\n"
        "    --output_dir runs/x  # a comment --not_a_flag\n"
        "autosam-predict --model m a/ [--fast] && autosam-eval --mode autosam --bogus=1\n"
        "```\n```python\nautosam-eval --ignored\n```\n"
    )
    commands = [(command, flags_of(arguments)) for command, arguments in shell_commands(text)]
    assert commands == [
        ("autosam-train", ["--preset", "--output_dir"]),
        ("autosam-predict", ["--model", "--fast"]),
        ("autosam-eval", ["--mode", "--bogus"]),
    ]
    assert "--bogus" not in known_flags("autosam-eval") and "--fast" in known_flags("autosam-predict")


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title: here\n\n[a](page.md#a-title-here) [b](gone.md) [c](#nowhere) `[d](x.md)`\n")
    assert relative_links(page) == ["page.md#a-title-here", "gone.md", "#nowhere"]
    assert not resolve(page, "gone.md").exists()
    assert "a-title-here" in anchors(page) and "nowhere" not in anchors(page)


def fresh_machine_commands() -> list[str]:
    section = README.read_text().split("\n## Fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for language, block in FENCE.findall(section) if language in SHELL_LANGUAGES]


def test_ci_runs_the_readme_fresh_machine_commands():
    """.ci/run sets up and runs the tests exactly as README.md says, with the variables README's text names."""
    commands = fresh_machine_commands()
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert len(commands) == 2 and all(command in ci_lines for command in commands)
    ci_variables = set(re.findall(r"^export (AUTOSAM_\w+)=1$", "\n".join(ci_lines), re.MULTILINE))
    section = README.read_text().split("\n## Fresh machine", 1)[1].split("\n## ", 1)[0]
    assert ci_variables and ci_variables == set(re.findall(r"`(AUTOSAM_\w+)=1`", section))


def test_contributing_gives_the_readme_test_command():
    assert fresh_machine_commands()[1] in CONTRIBUTING.read_text()
