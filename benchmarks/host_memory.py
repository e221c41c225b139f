"""Host peak memory of ``python main.py --mode=sample`` against the number of rounds.

Each run is a separate ``main.py --mode=sample`` process on an exact-score config (no network
weights), with few sampler iterations and a batch that makes one round several MB. A run that
streams its rounds to disk keeps a flat peak RSS as the number of rounds grows; a run that
held every sample would grow by the sample bytes of each round. Only the CLI is used, so this
measures whatever the current code does.

    python benchmarks/host_memory.py [--rounds 1,4,16,64] [--out benchmarks/results] [--replot]
    python benchmarks/host_memory.py --smoke --out /tmp/host_memory    # seconds, on the CPU

Per run: the peak RSS from ``os.wait4`` (ru_maxrss), an RSS time series polled from
/proc/<pid>/status, the wall time, the sample bytes per round and in all, and the bytes the
run wrote under <workdir>/samples. Writes <out>/host_memory.json and <out>/host_memory.png.
``--smoke``: rounds 1 and 2 of batch 2 at 8 x 8, one iteration, on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024


def image_shape(config_path: str) -> tuple[int, int, int]:
    """(H, W, C) from the config file's data fields (the config only, no project internals)."""
    sys.path.insert(0, REPO)
    try:
        spec = importlib.util.spec_from_file_location('_host_memory_config', config_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        data = module.get_config().data
        return int(data.image_size), int(data.image_size), int(data.num_channels)
    finally:
        sys.path.remove(REPO)


def read_rss_kib(pid: int) -> int | None:
    """VmRSS of a live process in KiB; None once it has exited (or is a zombie)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return None


def machine_info() -> dict:
    info = {
        'platform': platform.platform(), 'python': platform.python_version(),
        'cpu_count': os.cpu_count(), 'cpus_usable': len(os.sched_getaffinity(0)),
        'jax': importlib.metadata.version('jax'),
    }
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        info['jaxlib'] = importlib.metadata.version('jaxlib')
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemTotal:'):
                info['mem_total_mib'] = round(int(line.split()[1]) / 1024)
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                info['cpu_model'] = line.split(':', 1)[1].strip()
                break
    return info


def count_entries(path: str) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


def dir_bytes(path: str) -> tuple[int, int]:
    """(number of files, total bytes) under path."""
    n = total = 0
    for root, _, files in os.walk(path):
        for name in files:
            n += 1
            total += os.path.getsize(os.path.join(root, name))
    return n, total


def config_overrides(args) -> list[str]:
    """The ``--config.*`` flags of every sampling run."""
    flags = [f'--config.eval.batch_size={args.batch_size}',
             f'--config.sampling.steps={args.steps}',
             f'--config.sampling.save_raw={args.save_raw}']
    if args.image_size is not None:
        flags.append(f'--config.data.image_size={args.image_size}')
    if args.num_stat_images is not None:
        flags.append(f'--config.sampling.pds.num_stat_images={args.num_stat_images}')
    return flags


def run_once(args, rounds: int, round_bytes: int) -> dict:
    num_samples = rounds * args.batch_size
    tmp = tempfile.mkdtemp(prefix='host_memory_')
    workdir = os.path.join(tmp, 'workdir')
    log_path = os.path.join(tmp, 'log.txt')
    cmd = [sys.executable, 'main.py', f'--config={args.config}', f'--workdir={workdir}',
           '--mode=sample', '--overwrite',
           f'--config.eval.num_samples={num_samples}', *config_overrides(args)]
    samples_dir = os.path.join(workdir, 'samples')
    metrics_path = os.path.join(workdir, 'metrics.json')
    series: list[tuple[float, float, int]] = []  # (seconds, RSS MiB, entries in samples/)
    t_metrics = None
    try:
        with open(log_path, 'wb') as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            done = threading.Event()

            def poll():
                nonlocal t_metrics
                while not done.is_set():
                    kib = read_rss_kib(proc.pid)
                    t = round(time.perf_counter() - t0, 3)
                    if kib is not None:
                        series.append((t, round(kib / 1024, 1), count_entries(samples_dir)))
                    if t_metrics is None and os.path.exists(metrics_path):
                        t_metrics = t
                    done.wait(args.interval)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # interrupted: do not leave the sampling run behind
                proc.kill()
                proc.wait()
                raise
            wall = time.perf_counter() - t0
            done.set()
            poller.join()
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            with open(log_path, errors='replace') as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f'exit code {proc.returncode}: {" ".join(cmd)}\n{tail}')
        metrics = {}
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                metrics = json.load(f)
        files, written = dir_bytes(samples_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run = {
        'rounds': rounds, 'num_samples': num_samples, 'batch_size': args.batch_size,
        'command': ' '.join(cmd[1:]),
        'peak_rss_mib': round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        'seconds_to_metrics_json': t_metrics,
        'wall_seconds': round(wall, 2),
        'user_seconds': round(usage.ru_utime, 2), 'system_seconds': round(usage.ru_stime, 2),
        'sample_bytes_per_round': round_bytes,
        'sample_bytes_total': rounds * round_bytes,
        'sample_mib_total': round(rounds * round_bytes / MIB, 1),
        'files_written': files, 'bytes_written': written,
        'metrics': {k: metrics[k] for k in ('rounds', 'num_samples', 'compile_seconds',
                                             'sampling_seconds', 'iterations', 'nfe')
                    if k in metrics},
        'rss_series': {'interval_seconds': args.interval, 'seconds': [t for t, _, _ in series],
                       'rss_mib': [r for _, r, _ in series],
                       'entries_in_samples_dir': [n for _, _, n in series]},
    }
    run.update(phases(run['rss_series']))
    return run


def phases(series: dict) -> dict:
    """Split the polled RSS series by what is under <workdir>/samples (no file names used):
    startup until the first entry appears (the first round being written), the round loop
    until the last change in the entry count (the last file of the run: the grid, written
    after the rounds), and the finish after it (scores, metrics.json, exit)."""
    t, rss, n = series['seconds'], series['rss_mib'], series['entries_in_samples_dir']
    first = next((i for i, k in enumerate(n) if k > 0), None)
    last = max((i for i in range(1, len(n)) if n[i] != n[i - 1]), default=None)

    def peak(lo, hi):
        return max(rss[lo:hi], default=None) if lo is not None and hi is not None else None

    return {
        'peak_rss_polled_mib': max(rss, default=None),
        'seconds_to_first_output': None if first is None else t[first],
        'seconds_to_last_output': None if last is None else t[last],
        'peak_rss_startup_mib': peak(0, first),
        'peak_rss_round_loop_mib': peak(first, last),
        'peak_rss_finish_mib': peak(last, len(rss)),
    }


def summarise(runs: list[dict], max_growth_mib: float) -> dict:
    """Peak growth from the fewest to the most rounds, against holding every sample. Flat: the
    whole-run peak (ru_maxrss) grows by at most max_growth_mib. The round loop's peak is
    reported on its own, since the startup peak can hide growth below its margin."""
    lo, hi = runs[0], runs[-1]
    # with one round the loop window (first file to last file) holds no sampling: compare the
    # round loop from the smallest run with two or more rounds
    lo_loop = next((r for r in runs if r['rounds'] >= 2), lo)

    def growth(key, a=lo):
        a, b = a.get(key), hi.get(key)
        return None if a is None or b is None else round(b - a, 1)

    held = (hi['sample_bytes_total'] - lo['sample_bytes_total']) / MIB
    g = growth('peak_rss_mib')
    loop = growth('peak_rss_round_loop_mib', lo_loop)
    return {
        'rounds': [lo['rounds'], hi['rounds']],
        'round_loop_rounds': [lo_loop['rounds'], hi['rounds']],
        'baseline_peak_rss_mib': lo['peak_rss_mib'],
        'peak_growth_mib': g,
        'round_loop_peak_growth_mib': loop,
        'finish_peak_growth_mib': growth('peak_rss_finish_mib'),
        'held_growth_mib': round(held, 1),
        'growth_over_held': round(g / held, 3) if held else None,
        'max_growth_mib': max_growth_mib,
        'flat': g <= max_growth_mib,
        'round_loop_flat': None if loop is None else loop <= max_growth_mib,
    }


def plot(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    base = runs[0]
    rounds = [r['rounds'] for r in runs]
    peaks = [r['peak_rss_mib'] for r in runs]
    held = [base['peak_rss_mib'] + (r['sample_bytes_total'] - base['sample_bytes_total']) / MIB
            for r in runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.plot(rounds, peaks, 'o-', label='whole run: peak RSS (ru_maxrss)')
    for key, label, style in (('peak_rss_round_loop_mib', 'round loop: peak RSS (polled)', '^-'),
                              ('peak_rss_finish_mib', 'after the rounds: peak RSS (polled)',
                               'v:')):
        vals = [r[key] for r in runs]
        if None not in vals:
            ax1.plot(rounds, vals, style, label=label)
    ax1.plot(rounds, held, 's--', color='tab:red',
             label='if all float32 samples were held')
    ax1.set_xscale('log', base=2)
    ax1.set_xticks(rounds, [str(r) for r in rounds])
    ax1.set_xlabel(f'rounds (batch {base["batch_size"]}, '
                   f'{base["sample_bytes_per_round"] / MIB:.1f} MiB float32 per round)')
    ax1.set_ylabel('peak RSS (MiB)')
    ax1.set_ylim(bottom=0)
    ax1.set_title('host peak memory of main.py --mode=sample')
    ax1.grid(alpha=0.3)
    ax1.legend(loc='upper left')
    longest = runs[-1]
    s = longest['rss_series']
    ax2.plot(s['seconds'], s['rss_mib'], lw=1)
    for t, label, color in ((longest['seconds_to_first_output'], 'first round written',
                             'tab:green'),
                            (longest['seconds_to_last_output'], 'last file in samples/',
                             'tab:orange'),
                            (longest['seconds_to_metrics_json'], 'metrics.json written',
                             'tab:gray')):
        if t is not None:
            ax2.axvline(t, ls=':', color=color, label=label)
    ax2.legend(loc='upper left')
    ax2.set_xlabel('seconds since launch')
    ax2.set_ylabel('RSS (MiB)')
    ax2.set_ylim(bottom=0)
    ax2.set_title(f'RSS over time, {longest["rounds"]} rounds')
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--rounds', default='1,4,16,64',
                   help='comma-separated round counts, one sampling run each')
    p.add_argument('--out', default=os.path.join(REPO, 'benchmarks', 'results'))
    p.add_argument('--config', default='configs/analytic/ffhq_256.py',
                   help='an exact-score config (relative to the repo root)')
    p.add_argument('--batch-size', type=int, default=16, help='eval.batch_size')
    p.add_argument('--steps', type=int, default=2, help='sampling.steps (iterations)')
    p.add_argument('--image-size', type=int, default=None,
                   help="data.image_size (default: the config's)")
    p.add_argument('--num-stat-images', type=int, default=None,
                   help="sampling.pds.num_stat_images (default: the config's)")
    p.add_argument('--save-raw', action=argparse.BooleanOptionalAction, default=True,
                   help='sampling.save_raw: also write float32 samples')
    p.add_argument('--interval', type=float, default=0.05, help='RSS poll interval (s)')
    p.add_argument('--max-growth-mib', type=float, default=128.0,
                   help='peak growth from fewest to most rounds still called flat')
    p.add_argument('--check', action='store_true', help='exit 1 when the peak is not flat')
    p.add_argument('--replot', action='store_true',
                   help='no runs: recompute the summary and the plot from <out>/host_memory.json')
    p.add_argument('--smoke', action='store_true',
                   help='toy sizes on the CPU (rounds 1,2 of batch 2 at 8 x 8, 1 iteration): '
                        'checks the script end to end in seconds; measures nothing')
    args = p.parse_args()
    if args.smoke:  # the sampling runs inherit these (see benchmarks/smoke.py)
        os.environ['JAX_PLATFORMS'] = 'cpu'
        os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
        args.rounds, args.batch_size, args.steps = '1,2', 2, 1
        args.image_size, args.num_stat_images = 8, 4
    rounds = sorted({int(r) for r in args.rounds.split(',') if r.strip()})
    if not rounds or rounds[0] < 1:
        p.error('--rounds: positive integers')
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, 'host_memory.json')
    png_path = os.path.join(args.out, 'host_memory.png')
    if args.replot:  # recompute the derived numbers and the plot from the stored series
        with open(json_path) as f:
            result = json.load(f)
        for run in result['runs']:
            run.update(phases(run['rss_series']))
            print(progress_line(run))
        result['replotted'] = True
    else:
        h, w, c = image_shape(os.path.join(REPO, args.config))
        if args.image_size is not None:
            h = w = args.image_size
        round_bytes = args.batch_size * h * w * c * 4  # float32 samples of one round
        result = {
            'benchmark': 'host_memory', 'config': args.config, 'image_shape': [h, w, c],
            'batch_size': args.batch_size, 'steps': args.steps, 'save_raw': args.save_raw,
            'overrides': config_overrides(args), 'smoke': args.smoke,
            'machine': machine_info(), 'load_average_start': os.getloadavg(), 'runs': [],
        }
        t_all = time.perf_counter()
        for r in rounds:
            run = run_once(args, r, round_bytes)
            result['runs'].append(run)
            print(progress_line(run), flush=True)
            with open(json_path, 'w') as f:  # updated after every run
                json.dump(result, f, indent=1)
        result['load_average_end'] = os.getloadavg()
        result['total_wall_seconds'] = round(time.perf_counter() - t_all, 1)
    result['summary'] = summarise(result['runs'], args.max_growth_mib)
    with open(json_path, 'w') as f:
        json.dump(result, f, indent=1)
    plot(result['runs'], png_path)
    s = result['summary']
    lo, hi = s['rounds']
    print(f'peak growth {s["peak_growth_mib"]} MiB from {lo} to {hi} rounds (after the rounds: '
          f'{s["finish_peak_growth_mib"]} MiB; round loop: {s["round_loop_peak_growth_mib"]} '
          f'MiB from {s["round_loop_rounds"][0]} rounds) '
          f'(holding every sample: +{s["held_growth_mib"]} MiB); '
          f'{"flat" if s["flat"] else "NOT flat"} (limit {args.max_growth_mib:g} MiB)')
    print(f'wrote {json_path} and {png_path}')
    return 1 if args.check and not s['flat'] else 0


def progress_line(run: dict) -> str:
    return (f'rounds {run["rounds"]:4d}  samples {run["num_samples"]:6d}  '
            f'sample MiB {run["sample_mib_total"]:7.1f}  peak RSS {run["peak_rss_mib"]:7.1f} MiB '
            f'(round loop {run["peak_rss_round_loop_mib"]}, after the rounds '
            f'{run["peak_rss_finish_mib"]})  wall {run["wall_seconds"]:6.1f} s')

if __name__ == '__main__':
    sys.exit(main())
