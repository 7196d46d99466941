"""The README and docs/ stay true to the code: the README is short, its layout names every
package and module and its scripts table every script, and the links, the repository paths
and the script flags that README.md and docs/*.md mention exist."""

import ast
import glob
import os
import re

import pytest

from tests.fixtures.scripts import ROOT

MAX_README_LINES = 250
LAYOUT_WITHIN = MAX_README_LINES // 2  # the layout sits in the first half of the longest README
NOT_LIBRARY = {'tests'}  # packages that the layout sums up in one line
DOCUMENTS = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def section(text, title):
    """(first line number, lines) of the README section ``## title``."""
    lines = text.splitlines()
    start = lines.index(f'## {title}')
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('## ')), len(lines))
    return start + 1, lines[start:end]


def library_packages():
    """{package: {module file names}} of the project's packages (tests aside)."""
    packages = {}
    for init in glob.glob(os.path.join(ROOT, '*', '__init__.py')):
        folder = os.path.dirname(init)
        name = os.path.basename(folder)
        if name not in NOT_LIBRARY:
            packages[name] = {os.path.basename(p) for p in glob.glob(os.path.join(folder, '*.py'))} - {'__init__.py'}
    return packages


def layout_entries():
    """{package: {module file names}} as the README's layout block lists them (top-level
    entries map to an empty set; indented lines that name no module continue a description)."""
    _, lines = section(read('README.md'), 'Layout')
    block = lines[lines.index('```') + 1:]
    block = block[:block.index('```')]
    entries, package = {}, None
    for line in block:
        name = line.split()[0]
        if line.startswith(' '):
            if name.endswith('.py'):
                entries[package].add(name)
        else:
            package = name.rstrip('/')
            entries[package] = set()
    return entries


def is_script(path):
    """Whether ``path`` is run, not imported: a shell script, or Python with a
    ``if __name__ == '__main__'`` block."""
    if path.endswith('.sh'):
        return True
    return any(isinstance(node, ast.If) and '__name__' in ast.unparse(node.test) for node in ast.parse(read(path)).body)


def scripts():
    """The repository's scripts: the top-level ones and benchmarks/*.py."""
    paths = glob.glob(os.path.join(ROOT, '*.py')) + glob.glob(os.path.join(ROOT, '*.sh'))
    paths += glob.glob(os.path.join(ROOT, 'benchmarks', '*.py'))
    return sorted(path for path in (os.path.relpath(p, ROOT) for p in paths) if is_script(path))


def test_the_readme_is_at_most_250_lines():
    assert len(read('README.md').splitlines()) <= MAX_README_LINES


def test_the_layout_names_every_package_and_module_in_the_first_half():
    start, lines = section(read('README.md'), 'Layout')
    assert start + len(lines) <= LAYOUT_WITHIN, f'the layout ends at line {start + len(lines)}'
    listed = layout_entries()
    for package, modules in library_packages().items():
        assert package in listed, f'the layout misses the package {package}/'
        assert listed[package] == modules, f'{package}/: the layout lists {sorted(listed[package])}'
    for name in listed:
        assert os.path.exists(os.path.join(ROOT, name)), f'the layout names {name}, which does not exist'


def test_the_scripts_table_names_every_script():
    _, lines = section(read('README.md'), 'Scripts')
    table = {row.split('|')[1].strip().strip('`') for row in lines if row.startswith('| `')}
    assert table == set(scripts())


def markdown_links(text):
    """The relative link targets of a markdown text (web addresses aside)."""
    return [t for t in re.findall(r'\]\(([^)\s]+)\)', text) if not re.match(r'[a-z]+:', t)]


def heading_anchors(text):
    """GitHub's anchors of the headings of a markdown text."""
    titles = re.findall(r'^#+ (.+)$', text, flags=re.M)
    return {re.sub(r'[^\w\- ]', '', t.lower()).replace(' ', '-') for t in titles}


@pytest.mark.parametrize('document', DOCUMENTS)
def test_every_link_leads_to_a_file_and_heading_that_exist(document):
    for link in markdown_links(read(document)):
        path, _, anchor = link.partition('#')
        target = os.path.normpath(os.path.join(os.path.dirname(document), path)) if path else document
        assert os.path.exists(os.path.join(ROOT, target)), f'{document} links to {link}: no such file'
        if anchor:
            assert anchor in heading_anchors(read(target)), f'{document} links to {link}: no such heading'


def code_spans(text):
    """The inline code spans and the lines of the code blocks of a markdown text."""
    blocks = re.findall(r'^```[^\n]*\n(.*?)^```', text, flags=re.M | re.S)
    prose = re.sub(r'^```[^\n]*\n.*?^```', '', text, flags=re.M | re.S)
    lines = [line for block in blocks for line in block.replace('\\\n', ' ').splitlines()]
    return re.findall(r'`([^`\n]+)`', prose) + lines


def repository_names():
    names = set()
    for _, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        names.update(files)
    return names


@pytest.mark.parametrize('document', DOCUMENTS)
def test_every_repository_path_named_exists(document):
    names = repository_names()
    top_level = set(os.listdir(ROOT))
    for span in code_spans(read(document)):
        for path in re.findall(r'(?<![\w/.<-])([\w.-]+(?:/[\w.-]+)*\.(?:py|sh|md))\b', span):
            if '/' not in path:
                assert path in names, f'{document} names {path}, which is nowhere in the repository'
            elif path.split('/')[0] in top_level:
                assert os.path.exists(os.path.join(ROOT, path)), f'{document} names {path}, which does not exist'


def main_parameters(script):
    """The parameters of ``main`` in ``script`` (read with ast), or None without one."""
    tree = ast.parse(read(script))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == 'main':
            return {a.arg for a in node.args.args + node.args.kwonlyargs}
    return None


@pytest.mark.parametrize('document', DOCUMENTS)
def test_every_script_flag_named_exists(document):
    known = {path: main_parameters(path) for path in scripts() if path.endswith('.py')}
    for span in code_spans(read(document)):
        for script, flags in re.findall(r'([\w/]+\.py)((?:\s+--\w+(?:=\S*)?)+)', span):
            if known.get(script) is None:
                continue
            for flag in re.findall(r'--(\w+)', flags):
                assert flag == 'help' or flag in known[script], f'{document}: {script} has no --{flag}'
