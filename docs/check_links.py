# Copyright (c) mmpetl contributors. All rights reserved.
"""Check the Markdown of README.md and docs/ (``make docs`` runs it).

Three rules, each reported as one line ``FILE:LINE: problem``:

- every relative link ``[text](target)`` resolves: the file exists inside
  the repository and, for ``target.md#anchor`` or ``#anchor``, the page has
  a heading with that anchor (MyST's slugs, as ``myst_heading_anchors``
  makes them);
- no link leaves the repository (``../`` past its root, an absolute path,
  ``file:``);
- no text names an absolute path of one machine (``/work/...``,
  ``/root/...``, ``/home/...``, ``/tmp/...``, ``/path/to/...``) or the
  project's private reference notes.

Exit status 0 when clean, 1 with the problems listed.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LINK = re.compile(r'(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                  r'(?:\s+"[^"]*")?\s*\)')
IMAGE = re.compile(r'!\[[^\]]*\]\(\s*([^)\s]+)\s*\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
FENCE = re.compile(r'^\s*(```|~~~)')
SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')
MACHINE_PATH = re.compile(
    r'(?<![\w.~$}-])/(?:work|root|home|tmp|Users|mnt|path/to)/')
PRIVATE = re.compile(r'shared/reference|METHODS\.md|BASELINES\.md')


def markdown_files(root=ROOT):
    """README.md and every ``.md`` under ``docs/`` (build output skipped).

    Returns:
        list[str]: Absolute paths, sorted.
    """
    files = [os.path.join(root, 'README.md')]
    for folder, dirs, names in os.walk(os.path.join(root, 'docs')):
        dirs[:] = sorted(d for d in dirs if d != '_build')
        files += [os.path.join(folder, n) for n in sorted(names)
                  if n.endswith('.md')]
    return files


def slugify(title):
    """MyST's default heading anchor of a heading's text.

    Inline markup is dropped first (backticks, emphasis, link targets),
    then ``re.sub(r'[^\\w\\- ]', '', text.strip().lower())`` with spaces
    turned into ``-``.
    """
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', title)
    text = re.sub(r'[`*]', '', text)
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')


def split_code(lines):
    """Yield ``(line_number, line, in_code)``, fenced blocks marked."""
    in_code = False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            in_code = not in_code
            yield number, line, True
            continue
        yield number, line, in_code


def anchors_of(path, cache={}):
    """The heading anchors of a Markdown file (duplicates get ``-1``...)."""
    if path not in cache:
        seen = {}
        with open(path, encoding='utf-8') as f:
            lines = f.read().split('\n')
        for _, line, in_code in split_code(lines):
            match = None if in_code else HEADING.match(line)
            if match:
                slug = slugify(match.group(2))
                count = seen.get(slug, 0)
                seen[slug] = count + 1
                if count:
                    seen[f'{slug}-{count}'] = 1
        cache[path] = set(seen)
    return cache[path]


def check_file(path, root=ROOT):
    """Problems of one Markdown file.

    Returns:
        list[str]: ``'FILE:LINE: problem'`` lines, empty when clean.
    """
    rel = os.path.relpath(path, root)
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    problems = []
    for number, line, in_code in split_code(lines):
        where = f'{rel}:{number}'
        if MACHINE_PATH.search(line):
            problems.append(f'{where}: absolute path of a machine: '
                            f'{MACHINE_PATH.search(line).group(0)}...')
        if PRIVATE.search(line):
            problems.append(f'{where}: names a file outside the repository: '
                            f'{PRIVATE.search(line).group(0)}')
        if in_code:
            continue
        code_free = re.sub(r'`[^`]*`', '', line)
        for target in LINK.findall(code_free) + IMAGE.findall(code_free):
            problems += [f'{where}: {p}' for p in
                         check_target(path, target, root)]
    return problems


def check_target(path, target, root=ROOT):
    """Problems of one link target found in ``path``."""
    if SCHEME.match(target):
        if target.lower().startswith('file:'):
            return [f'link to a local file: {target}']
        return []  # a URL: not checked offline
    file_part, _, anchor = target.partition('#')
    if file_part.startswith('/'):
        return [f'absolute link: {target}']
    resolved = os.path.normpath(
        os.path.join(os.path.dirname(path), file_part)) if file_part else path
    if os.path.commonpath([resolved, root]) != root:
        return [f'link leaves the repository: {target}']
    if not os.path.exists(resolved):
        return [f'broken link: {target} ({os.path.relpath(resolved, root)} '
                'does not exist)']
    if anchor and resolved.endswith('.md') and \
            anchor not in anchors_of(resolved):
        return [f'broken anchor: {target} (no heading #{anchor} in '
                f'{os.path.relpath(resolved, root)})']
    return []


def main(root=ROOT):
    problems = []
    for path in markdown_files(root):
        problems += check_file(path, root)
    for problem in problems:
        print(problem)
    files = len(markdown_files(root))
    print(f'checked {files} Markdown files: '
          f'{len(problems) or "no"} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
