"""Entry point: ``python main.py --config=configs/... --workdir=DIR --mode=MODE``.

Config overrides follow ml_collections: ``--config.sampling.steps=66``. Bad input exits with
code 2 and one line on stderr naming the field, the value and what is allowed.
"""

import importlib
import sys

from absl import app, flags
from ml_collections import config_flags

from pds.errors import ConfigError

MODES = {
    'sample': 'pds.run_sample',
    'bench': 'pds.run_bench',
    'convert': 'pds.run_convert',
    'train': 'pds.run_train',
    'stats': 'pds.run_stats',
    'eval': 'pds.run_eval',
    'fid': 'pds.run_fid',
}
SOURCE_MODES = ('convert', 'fid', 'stats')  # modes whose run() takes ``source``

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for outputs.')
flags.DEFINE_enum('mode', 'sample', list(MODES), 'Run mode.')
flags.DEFINE_bool('overwrite', False, 'Replace outputs of an earlier run in --workdir.')
flags.DEFINE_string('source', None, 'Input for --mode=convert (a score_sde checkpoint), '
                    '--mode=fid (a folder of images or an .npz) or --mode=stats (optional).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    module = importlib.import_module(MODES[FLAGS.mode])
    extra = {'source': FLAGS.source} if FLAGS.mode in SOURCE_MODES else {}
    try:
        module.run(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite, **extra)
    except ConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    app.run(main)
