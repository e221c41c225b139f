"""The documented commands: every shell command a user would copy from README.md, CHANGELOG.md,
docs/*.md and benchmarks/README.md runs here at a reduced size, unless the Markdown marks it
as not runnable with the reason, in an HTML comment right before its code block or inline
code span:

    <!-- not-run: needs a SLURM cluster -->
    ```sh
    srun ...
    ```

A command is a line of a fenced ```sh block (indented at most 3 spaces, as in a list item;
backslash continuations joined, comments dropped), or an inline code span of the prose that
starts with a program (COMMAND_WORDS, after optional VAR=value assignments) and has
arguments. The test fails when a command is neither runnable nor marked, when a mark has no
reason or no command right after it, and when a run exits non-zero or leaves out its outputs.
How a command is reduced:

- ``python main.py ... --mode=sample|bench|tune``: the documented flags with config overrides
  (REDUCE; they replace the documented values of the same fields, since a repeated tuple
  field accumulates): 2 iterations, 4 samples, 8 x 8 images, 4 images for the PDS mask, and
  for a score network a one-resolution nf=8 network (freshly initialised: the workdir is
  new). ``--workdir`` goes to a temporary folder, JAX runs on the CPU.
- ``make T``: its recipe (``make -n``, the install step skipped) with ``python`` as $(PY), each
  line reduced as here.
- ``for i in ...; do CMD & done; wait``: one CMD per value, all at once (a free port for the
  coordinator); every process must exit 0.
- ``python benchmarks/X.py ARGS``: run at its ``--smoke`` size by
  tests/benchmarks/test_smoke.py, which must have ``test_X``; here (one process for all of
  them) the script is imported as ``__main__`` and its parser must accept ARGS.
- ``ruff check .``, ``cat FILE``: as written (FILE under the reduced workdir).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow  # left out of `make test-fast`

DOCUMENTS = ('README.md', 'CHANGELOG.md', os.path.join('benchmarks', 'README.md'),
             *sorted(os.path.relpath(p, ROOT)
                     for p in glob.glob(os.path.join(ROOT, 'docs', '*.md'))))
SMOKE_TESTS = os.path.join(ROOT, 'tests', 'benchmarks', 'test_smoke.py')
COMMAND_WORDS = {'python', 'python3', 'make', 'pytest', 'ruff', 'srun', 'gcloud', 'for'}
SHELLS = ('sh', 'bash', 'shell', 'console')
TIMEOUT = 600

# Config overrides per mode (they replace the documented values of the same fields).
REDUCE = {
    'sample': {'eval.num_samples': '4', 'eval.batch_size': '4', 'sampling.steps': '2'},
    'bench': {'bench.steps': '(2,)', 'bench.num_samples': '4', 'bench.batch_size': '4',
              'bench.nfe': '(4,)', 'bench.rtols': '(0.1,)', 'bench.eps_rels': '(0.5,)'},
    'tune': {'tune.steps': '(2,4)', 'tune.alphas': '(2.0,5.0)', 'tune.refine': '2'},
    'likelihood': {'eval.num_samples': '4', 'eval.batch_size': '4', 'eval.bpd_rtol': '1e-3',
                   'eval.bpd_atol': '1e-3'},
}
SMALL_DATA = {'data.image_size': '8', 'sampling.pds.num_stat_images': '4'}
# a config that reads a committed network (sampling.checkpoint_dir) keeps its network and
# image size: smaller sample counts, ladders and references only
COMMITTED_NETWORK = {
    'bench': {'bench.num_samples': '20', 'bench.batch_size': '20', 'bench.nfe': '(4,)',
              'bench.rtols': '(0.1,)', 'bench.eps_rels': '(0.5,)',
              'bench.converged_steps': '2', 'bench.ode_reference_rtol': '0.1'},
    'tune': {'tune.steps': '(2,)', 'tune.alphas': '(2.0,5.0)', 'tune.num_samples': '20',
             'tune.batch_size': '20'},
}
COMMITTED_DATA = {'bench.moment_images': '64', 'bench.memorisation_images': '32',
                  'sampling.pds.num_stat_images': '16'}
# a network config's workdir here holds no checkpoint (the documented one holds a trained
# one): a tiny network, freshly initialised (allowed explicitly)
TINY_NETWORK = {'model.nf': '8', 'model.ch_mult': '(1,)', 'model.num_res_blocks': '0',
                'model.attn_resolutions': '()', 'sampling.allow_random_init': 'True'}
OUTPUTS = {'sample': 'metrics.json', 'bench': os.path.join('bench', 'quality.csv'),
           'tune': os.path.join('tune', 'alpha.json'),
           'likelihood': os.path.join('likelihood', 'report_exact.json')}
# Placeholders in command lines, and what stands in for them.
PLACEHOLDERS = {'--batch B': '--batch 2', '<file>': 'cpu_layout',
                '<copy of the training workdir>': 'runs/trained_field16'}


# --- extraction

# a fenced block: its indentation (at most 3 spaces), language and body
FENCE = re.compile(r'^( {0,3})```([\w-]*)[^\n]*\n(.*?)^ {0,3}```[ \t]*$', re.M | re.S)
SPAN = re.compile(r'`([^`]+)`')
MARK = re.compile(r'<!--\s*not-run:(.*?)-->', re.S)


@dataclasses.dataclass(frozen=True)
class Command:
    text: str  # normalized
    reason: str | None  # the not-run mark's reason, None: it must run
    where: str  # file:line


@dataclasses.dataclass(frozen=True)
class BadMark:
    where: str
    problem: str


def normalize(command: str) -> str:
    return ' '.join(command.split())


def is_command(span: str) -> bool:
    words = span.split()
    while words and re.fullmatch(r'[A-Z_][A-Z0-9_]*=\S*', words[0]):
        words = words[1:]
    return len(words) >= 2 and words[0] in COMMAND_WORDS  # a bare word names the tool


def blank(text: str, spans) -> str:
    """text with each (start, end) span replaced by spaces (newlines kept): positions stay."""
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            if chars[i] != '\n':
                chars[i] = ' '
    return ''.join(chars)


def extract(text: str, name: str = '<text>') -> tuple[list[Command], list[BadMark]]:
    """The commands of a markdown text in order (each with its not-run reason or None), and
    the marks that have no reason or no command right after them."""
    line = lambda pos: f'{name}:{text.count(chr(10), 0, pos) + 1}'
    fences = list(FENCE.finditer(text))
    prose = blank(text, [m.span() for m in fences])
    spans = [m for m in SPAN.finditer(prose) if is_command(m.group(1))]
    # where each command block or span starts (its first backtick) -> its lines
    starts = {}
    for m in fences:
        if m.group(2) in SHELLS:
            lines = []
            for ln in m.group(3).replace('\\\n', ' ').splitlines():
                ln = re.sub(r'(^|\s)#(\s.*)?$', '', ln).strip()
                if ln:
                    lines.append(normalize(ln))
            starts[m.start() + len(m.group(1))] = lines
    for m in spans:
        starts[m.start()] = [normalize(m.group(1))]
    reasons, bad = {}, []
    for mark in MARK.finditer(blank(prose, [m.span() for m in SPAN.finditer(prose)])):
        after = mark.end() + len(text[mark.end():]) - len(text[mark.end():].lstrip())
        if not mark.group(1).strip():
            bad.append(BadMark(line(mark.start()), 'a not-run mark without a reason'))
        elif after not in starts:
            bad.append(BadMark(line(mark.start()), 'a not-run mark with no command block or '
                               'command span right after it'))
        else:
            reasons[after] = normalize(mark.group(1))
    found = [Command(cmd, reasons.get(start), line(start))
             for start in sorted(starts) for cmd in starts[start]]
    return found, bad


def documented() -> tuple[list[Command], list[BadMark]]:
    found, bad = [], []
    for name in DOCUMENTS:
        path = os.path.join(ROOT, name)
        if os.path.exists(path):
            with open(path) as f:
                cmds, marks = extract(f.read(), name)
            found += cmds
            bad += marks
    return found, bad


FOUND, BAD_MARKS = documented()
COMMANDS = list(dict.fromkeys(c.text for c in FOUND))
# a command that appears unmarked anywhere must run
RUNNABLE = list(dict.fromkeys(c.text for c in FOUND if c.reason is None))
NOT_RUN = {c.text: c.reason for c in FOUND if c.reason is not None and c.text not in RUNNABLE}


# --- reduction

class NotReducibleError(Exception):
    """A README command this test does not know how to run at a reduced size."""


@dataclasses.dataclass
class Job:
    argv: list[str]
    env: dict[str, str]
    outputs: list[str] = dataclasses.field(default_factory=list)  # must exist afterwards


@dataclasses.dataclass
class Covered:
    """A benchmark script: run at --smoke size by tests/benchmarks/test_smoke.py."""

    script: str
    args: list[str]


Stage = list  # of Job (run at once) or one Covered


def base_env(assignments: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_DISABLE_MOST_OPTIMIZATIONS='1')
    for key, value in assignments.items():
        env[key] = os.path.join(ROOT, value) if key == 'PYTHONPATH' else value
    return env


def split_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while words and re.fullmatch(r'[A-Z_][A-Z0-9_]*=\S*', words[0]):
        key, value = words[0].split('=', 1)
        env[key] = value
        words = words[1:]
    return env, words


def relocate_workdirs(lines: list[str], tmp: str) -> list[str]:
    """Every --workdir of these lines (and each later mention of it) moved under tmp."""
    moved = {}
    for line in lines:
        for workdir in re.findall(r'--workdir=(\S+)', line):
            moved.setdefault(workdir, os.path.join(tmp, f'workdir{len(moved)}'))
    for old, new in moved.items():
        lines = [line.replace(old, new) for line in lines]
    return lines


def reduce_main(args: list[str], env: dict[str, str]) -> Job:
    flags = dict(a[2:].split('=', 1) for a in args if a.startswith('--') and '=' in a)
    mode = flags.get('mode', 'sample')
    if mode not in REDUCE or 'config' not in flags or 'workdir' not in flags:
        raise NotReducibleError(f'main.py --mode={mode} with flags {sorted(flags)}')
    overrides = {**REDUCE[mode], **SMALL_DATA}
    output = OUTPUTS[mode]
    with open(os.path.join(ROOT, flags['config'])) as f:
        committed = mode in COMMITTED_NETWORK and 'checkpoint_dir' in f.read()
    if committed:
        overrides = {**COMMITTED_NETWORK[mode], **COMMITTED_DATA}
    if mode == 'bench' and ('config.bench.samplers' in flags or committed):  # samplers
        output = os.path.join('bench', 'samplers.csv')
    if 'config.sampling.pds.tuned' in flags:  # a tuned table covers the README's own N only
        overrides.pop('sampling.steps', None)
        # and records the settings it was tuned on, which the reduced image size departs from
        overrides['sampling.pds.tuned_any_config'] = True
    if not flags['config'].startswith('configs/analytic/') and not committed:
        overrides.update(TINY_NETWORK)
    kept = [a for a in args if a.split('=', 1)[0][len('--config.'):] not in overrides]
    return Job([sys.executable, 'main.py', *kept,
                *(f'--config.{k}={v}' for k, v in overrides.items())], env,
               [os.path.join(flags['workdir'], output)])


def reduce_line(line: str, tmp: str) -> list[Stage]:
    """The stages (run one after the other) of one command line, already relocated."""
    assignments, words = split_assignments(shlex.split(line))
    env = base_env(assignments)
    if not words:
        raise NotReducibleError(line)
    if words[0] in ('python', 'python3') and len(words) > 1:
        if words[1] == 'main.py':
            return [[reduce_main(words[2:], env)]]
        if words[1].startswith('benchmarks/') and words[1].endswith('.py'):
            return [[Covered(words[1], words[2:])]]
    if words[:2] == ['ruff', 'check']:
        return [[Job([sys.executable, '-m', 'ruff', *words[1:]], env)]]
    if words[0] == 'cat' and len(words) == 2 and words[1].startswith(tmp):
        return [[Job(['cat', words[1]], env)]]
    raise NotReducibleError(line)


def make_recipe(targets: list[str]) -> list[str]:
    """The recipe lines of make targets, with python as $(PY) and the install step skipped."""
    env = {k: v for k, v in os.environ.items() if k not in ('MAKELEVEL', 'MAKEFLAGS', 'MFLAGS')}
    out = subprocess.run(['make', '--no-print-directory', '-n', '-o',
                          os.path.join('.venv', '.installed'), 'PY=python', *targets],
                         cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    return [normalize(line) for line in out.stdout.replace('\\\n', ' ').splitlines()
            if line.strip()]


def free_port() -> int:
    from pds.runtime.distributed import free_port as port

    return port()


def plan(command: str, tmp: str) -> list[Stage]:
    """How ``command`` runs here, as stages; NotReducibleError if it cannot."""
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    loop = re.fullmatch(r'for (\w+) in ([^;]+); do (.+) & done; wait', command)
    if loop:
        var, values, body = loop.groups()
        body = re.sub(r'localhost:\d+', f'localhost:{free_port()}', body)
        [body] = relocate_workdirs([body], tmp)
        jobs = []
        for value in values.split():
            stages = reduce_line(body.replace(f'${var}', value), tmp)
            if len(stages) != 1 or not all(isinstance(j, Job) for j in stages[0]):
                raise NotReducibleError(command)
            jobs += stages[0]
        return [jobs]
    if command.startswith('make '):
        lines = relocate_workdirs(make_recipe(command.split()[1:]), tmp)
    else:
        lines = relocate_workdirs([command], tmp)
    return [stage for line in lines for stage in reduce_line(line, tmp)]


# --- running

def run_jobs(jobs: list[Job], command: str) -> None:
    procs = [subprocess.Popen(job.argv, cwd=ROOT, env=job.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
             for job in jobs]
    failures = []
    try:
        for job, proc in zip(jobs, procs, strict=True):
            out, _ = proc.communicate(timeout=TIMEOUT)
            if proc.returncode != 0:
                failures.append(f'{shlex.join(job.argv)} exited {proc.returncode}:\n'
                                f'{out[-4000:]}')
            failures += [f'{shlex.join(job.argv)} did not write {path}'
                         for path in job.outputs if not os.path.exists(path)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not failures, f'README command: {command}\n' + '\n'.join(failures)


def smoke_test_names() -> set[str]:
    with open(SMOKE_TESTS) as f:
        return set(re.findall(r'^def (test_\w+)\(', f.read(), re.M))


PARSE_CHECK = textwrap.dedent('''
    import argparse, json, runpy, sys

    class Parsed(Exception):
        pass

    parse = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parse(self, args, namespace)
        raise Parsed

    argparse.ArgumentParser.parse_args = parse_only
    result = {}
    for script, args in json.loads(sys.argv[1]):
        sys.argv = [script, *args]
        try:
            runpy.run_path(script, run_name='__main__')
            result[script + ' ' + ' '.join(args)] = 'ran past its parser'
        except Parsed:
            result[script + ' ' + ' '.join(args)] = 'ok'
        except SystemExit as e:
            result[script + ' ' + ' '.join(args)] = f'exit {e.code}'
    print('RESULT ' + json.dumps(result))
''')


@pytest.fixture(scope='module')
def parsed_benchmark_args(tmp_path_factory) -> dict[str, str]:
    """Each benchmark command's arguments through its script's own parser, all scripts in one
    process (their imports run as in a real start; nothing past the parser does)."""
    import json

    tmp = str(tmp_path_factory.mktemp('parse'))
    calls = [[c.script, c.args] for command in RUNNABLE
             for stage in plan_or_empty(command, tmp) for c in stage if isinstance(c, Covered)]
    proc = subprocess.run([sys.executable, '-c', PARSE_CHECK, json.dumps(calls)], cwd=ROOT,
                          env=base_env({'PYTHONPATH': '.'}), capture_output=True, text=True,
                          timeout=TIMEOUT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len('RESULT '):])


def plan_or_empty(command: str, tmp: str) -> list[Stage]:
    try:
        return plan(command, tmp)
    except NotReducibleError:
        return []


# --- tests

def test_extract_reads_marks():
    """Marks before a fenced block (also indented in a list item) and before an inline span
    apply to them; an unmarked command stays runnable; a mark without a reason or without a
    command after it is reported."""
    text = textwrap.dedent('''\
        Run `make demo` first.

        <!-- not-run: needs a cluster -->
        ```sh
        srun -n 2 \\
            python main.py --mode=train  # a comment
        ```

        1. a step:

           <!-- not-run: a download -->
           ```sh
           python main.py --mode=convert --source=x.pth
           ```

        See <!-- not-run: prose -->`python main.py --mode=sample`, and `ruff check .`.
        <!-- not-run: -->
        ```sh
        ruff check .
        ```
        <!-- not-run: nothing follows -->
        Plain text, and `python` alone is a word.
        ''')
    found, bad = extract(text, 'x.md')
    assert [(c.text, c.reason) for c in found] == [
        ('make demo', None),
        ('srun -n 2 python main.py --mode=train', 'needs a cluster'),
        ('python main.py --mode=convert --source=x.pth', 'a download'),
        ('python main.py --mode=sample', 'prose'),
        ('ruff check .', None),
        ('ruff check .', None)]
    assert [(b.where, b.problem) for b in bad] == [
        ('x.md:17', 'a not-run mark without a reason'),
        ('x.md:21', 'a not-run mark with no command block or command span right after it')]


def test_commands_are_found():
    assert len(COMMANDS) > 10, COMMANDS
    assert 'make demo' in RUNNABLE


def test_not_run_marks_are_well_formed():
    assert not BAD_MARKS, '\n'.join(f'{b.where}: {b.problem}' for b in BAD_MARKS)


def test_every_command_runs_or_is_marked(tmp_path):
    unknown = []
    for command in RUNNABLE:
        try:
            plan(command, str(tmp_path))
        except NotReducibleError as e:
            where = next(c.where for c in FOUND if c.text == command)
            unknown.append(f'{where}: {command}  ({e})')
    assert not unknown, ('documented commands neither runnable here nor marked '
                         '<!-- not-run: reason -->:\n' + '\n'.join(unknown))


@pytest.mark.parametrize('command', RUNNABLE, ids=[c[:80] for c in RUNNABLE])
def test_readme_command(command, tmp_path, request):
    try:
        stages = plan(command, str(tmp_path))
    except NotReducibleError as e:
        pytest.fail(f'not runnable and not marked not-run: {command} ({e})')
    for stage in stages:
        if isinstance(stage[0], Covered):
            [covered] = stage
            name = 'test_' + os.path.splitext(os.path.basename(covered.script))[0]
            assert name in smoke_test_names(), f'{SMOKE_TESTS} has no {name}'
            parsed = request.getfixturevalue('parsed_benchmark_args')
            key = covered.script + ' ' + ' '.join(covered.args)
            assert parsed.get(key) == 'ok', f'{command}: {parsed.get(key)}'
        else:
            run_jobs(stage, command)
