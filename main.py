"""Entry point: ``python main.py --config=configs/... --workdir=DIR --mode=MODE``.

Config overrides follow ml_collections: ``--config.sampling.steps=66``. Bad input exits with
code 2 and one line on stderr naming the field, the value and what is allowed.

Multi-process jobs (TPU pod slices, GPU clusters, several processes on one machine): run the
same command on every process with ``--distributed`` (see ``pds/runtime/distributed.py`` and
docs/usage.md, "Multi-host runs").
"""

import atexit
import os
import traceback
from typing import TYPE_CHECKING

from absl import app, flags, logging
from ml_collections import config_flags

from pds.modes import MODES, run_mode
from pds.runtime import progress, python_gc

if TYPE_CHECKING:
    from pds.runtime.distributed import Launch

# jax and the modes are imported once the flags and the config have been checked, so that a
# bad flag or config field fails in a fraction of a second (about 0.3 s; the solvers' config
# blocks are read from their modules' CONFIG_FIELDS literals without importing them).

SOURCE_MODES = ('convert', 'fid', 'stats')  # modes whose run() takes ``source``
TUNED_MODES = ('sample', 'eval')  # modes that read sampling.pds.tuned's alpha table
ONE_PROCESS_MODES = ('convert', 'fid')  # host-side tools: run them without --distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for outputs.')
flags.DEFINE_enum('mode', 'sample', list(MODES), 'Run mode.')
flags.DEFINE_bool('overwrite', False, 'Replace outputs of an earlier run in --workdir.')
flags.DEFINE_string('source', None, 'Input for --mode=convert (a score_sde checkpoint), '
                    '--mode=fid (a folder of images or an .npz) or --mode=stats (optional).')
flags.DEFINE_bool('distributed', False, 'Join a multi-process job (jax.distributed).')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 '
                    '(default: $JAX_COORDINATOR_ADDRESS or cluster auto-detection).')
flags.DEFINE_integer('num_processes', None, 'Processes in the job (default: '
                     '$JAX_NUM_PROCESSES or auto-detection).')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1 (default: '
                     '$JAX_PROCESS_ID or auto-detection).')
flags.DEFINE_integer('cpu_devices', None, 'Simulated CPU devices per process.')
flags.DEFINE_integer('heartbeat_timeout', 100, 'Seconds without heartbeats after which a '
                     'process counts as dead and the job stops.')
flags.DEFINE_integer('init_timeout', 300, 'Seconds to wait for every process to join.')
flags.mark_flags_as_required(['config', 'workdir'])


def one_line(err: BaseException) -> str:
    """An exception's message on one line (ml_collections' and absl's span several)."""
    text = ' '.join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def config_overrides(argv: list[str]) -> list[str]:
    return [a.split('=', 1)[0][2:] for a in argv if a.startswith('--config.')]


def _raised_in_config_file(err: BaseException, path: str | None) -> bool:
    """The error came from reading or running the config file (not from an override)."""
    if isinstance(err, OSError | SyntaxError | ImportError) or path is None:
        return True
    where = os.path.abspath(path)
    return any(os.path.abspath(frame.filename) == where
               for frame in traceback.extract_tb(err.__traceback__))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every failure (an unknown flag, a bad value, a missing or
    broken config file, an unknown or mistyped config field) as one line and exit code 2.
    A one-process run takes its workdir's lock first (:func:`take_workdir_lock`)."""
    take_workdir_lock(argv)
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # the file is loaded and the overrides applied by now
    except flags.Error as err:
        progress.fail(f'error: {one_line(err)}', 2)
    except Exception as err:
        path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
        if _raised_in_config_file(err, path):
            progress.fail(f'error: invalid --config={path!r}: a readable Python file defining '
                          f'get_config() ({type(err).__name__}: {one_line(err)})', 2)
        # an override ml_collections could not apply
        named = ', '.join(f'--{o}' for o in config_overrides(argv)) or 'none'
        progress.fail(f'error: invalid config override ({type(err).__name__}: '
                      f'{one_line(err)}); overrides given: {named}; each must name an '
                      'existing field of the config with a value of its type', 2)
    return rest


def take_workdir_lock(argv: list[str]) -> None:
    """One run per workdir: take the lock before the config file loads (it may import jax),
    so that a second run is refused in a fraction of a second; exit 2 naming the holder."""
    from pds.runtime import workdir_lock
    from pds.runtime.errors import ConfigError

    workdir = workdir_lock.workdir_from_argv(argv)
    if workdir is None:
        return  # main() takes it once the flags are parsed
    try:
        atexit.register(workdir_lock.WorkdirLock(workdir).acquire().release)
    except ConfigError as err:
        progress.fail(f'error: {err}', 2)


def launch_from_flags() -> 'Launch':
    """The ``distributed.Launch`` of the command line."""
    from pds.runtime.distributed import Launch

    return Launch(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes,
                  FLAGS.process_id, FLAGS.cpu_devices, FLAGS.heartbeat_timeout,
                  FLAGS.init_timeout)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    from pds.experiment import config_checks
    from pds.runtime import workdir_lock
    from pds.runtime.errors import ConfigError, RunError

    try:  # the config alone: every process of a job meets the same error, before joining
        if not FLAGS.distributed and not workdir_lock.holds(FLAGS.workdir):  # flag files
            atexit.register(workdir_lock.WorkdirLock(FLAGS.workdir).acquire().release)
        config_checks.check_config(FLAGS.config, FLAGS.mode)
    except ConfigError as err:
        progress.fail(f'error: {err}', 2)
    import jax

    from pds.storage import leftovers

    if not FLAGS.distributed:  # the lock is ours: no live run of this program writes these
        leftovers.remove_temporaries(FLAGS.workdir)

    from pds.experiment.assemble import apply_tuned_alpha
    from pds.runtime import distributed

    try:
        distributed.initialize(launch_from_flags())
        if not distributed.is_main():
            logging.set_verbosity(logging.WARNING)  # logs and progress come from process 0
        if FLAGS.mode in ONE_PROCESS_MODES and jax.process_count() > 1:
            raise ConfigError('--mode', FLAGS.mode, 'sample, bench, train, stats, eval or '
                              'likelihood in a multi-process job (convert and fid are '
                              'one-process tools: drop --distributed)')
        if FLAGS.distributed and (lock := workdir_lock.hold_for_job(FLAGS.workdir)):
            atexit.register(lock.release)
            leftovers.remove_temporaries(FLAGS.workdir)
        extra = {'source': FLAGS.source} if FLAGS.mode in SOURCE_MODES else {}
        config = FLAGS.config
        if FLAGS.mode in TUNED_MODES:  # reports then show the alpha the run used
            config = apply_tuned_alpha(config)
        run_mode(FLAGS.mode, config, FLAGS.workdir, overwrite=FLAGS.overwrite, **extra)
    except ConfigError as err:
        progress.close_bars()  # the message starts on a fresh line
        distributed.abort(f'error: {err}', 2, grace=30.0)
    except RunError as err:  # every process meets it alike (its checks are collective)
        progress.close_bars()
        distributed.abort(f'error: {err}', 1, grace=30.0)
    except Exception as err:
        progress.close_bars()
        if jax.process_count() == 1:
            raise
        traceback.print_exc()
        distributed.abort(f'error: {type(err).__name__}: {str(err).strip()} (in a '
                          f'{jax.process_count()}-process job; if this is a failed collective, '
                          'another process probably stopped: see its log)', 1)


if __name__ == '__main__':
    python_gc.relax_collector()
    app.run(main, flags_parser=parse_flags)
