#!/usr/bin/env python3
"""Draws the plots of docs/benchmarks.md from a run of bench/run.py.

    python3 bench/plot.py [--results bench/results/latest.json] [--out docs/benchmarks]

Writes OUT/rtt.png (request/reply round trip, p50 bars and p99 marks, per
system, 64 B and 4 KiB, both scheduling modes) and OUT/throughput.png
(messages/s per listener, 1 sender -> 1 and -> 4 listeners). Uses Debian's
python3-matplotlib.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLOURS = {'default': '#4477aa', 'pinned': '#ee7733'}


def usable(x):
    return not x['note'].startswith(('not available', 'failed'))


def label_of(x):
    t = x['test']
    if t.startswith('fan-out,'):
        return '%s (%s)' % (x['system'], t.split(', ', 1)[1])
    return x['system']


def grouped_barh(ax, labels, modes, values, extra=None, unit=''):
    """One group of bars (one per mode) per label; `extra` adds marks."""
    h = 0.8 / max(1, len(modes))
    ys = range(len(labels))
    for i, m in enumerate(modes):
        pos = [y + (i - (len(modes) - 1) / 2) * h for y in ys]
        vals = [values.get((lab, m), 0) for lab in labels]
        ax.barh(pos, vals, height=h, color=COLOURS.get(m, 'grey'), label='%s scheduling' % m)
        for p, v in zip(pos, vals):
            if v > 0:
                ax.text(v, p, ' %s' % fmt(v), va='center', fontsize=7)
        if extra:
            ev = [extra.get((lab, m)) for lab in labels]
            xs = [v for v in ev if v]
            ps = [p for p, v in zip(pos, ev) if v]
            ax.plot(xs, ps, linestyle='none', marker='|', markersize=8, color='black',
                    label='p99' if i == 0 else None)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.grid(axis='x', which='both', alpha=0.3)


def legend_below(fig, ax):
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=len(labels), fontsize=9)


def fmt(v):
    if v >= 1e6:
        return '%.2fM' % (v / 1e6)
    if v >= 1e4:
        return '%.0fk' % (v / 1e3)
    if v >= 100:
        return '%.0f' % v
    return '%.1f' % v


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--results', default=os.path.join(HERE, 'results', 'latest.json'))
    p.add_argument('--out', default=os.path.join(ROOT, 'docs', 'benchmarks'))
    args = p.parse_args()
    with open(args.results) as f:
        data = json.load(f)
    rows = [x for x in data['rows'] if usable(x)]
    meta = data['meta']
    modes = []
    for x in rows:
        if x['sched'] not in modes:
            modes.append(x['sched'])
    os.makedirs(args.out, exist_ok=True)
    sub = '%s, %s CPUs, %s run, load average before %s' % (
        meta['date'], meta['cpus'], meta['run'], meta['load_before'])

    # Round trips.
    fig, axes = plt.subplots(1, 2, figsize=(14, 7))
    for ax, payload in zip(axes, (64, 4096)):
        rt = [x for x in rows if x['test'] == 'round trip' and x['payload'] == payload]
        labels = []
        for x in rt:
            if x['system'] not in labels:
                labels.append(x['system'])
        p50 = {(x['system'], x['sched']): x['p50_us'] for x in rt}
        p99 = {(x['system'], x['sched']): x['p99_us'] for x in rt}
        grouped_barh(ax, labels, modes, p50, p99)
        ax.set_title('request/reply round trip, %d B: p50 (bars), p99 (|)' % payload,
                     fontsize=10)
        ax.set_xlabel('microseconds (log scale; lower is better)')
    legend_below(fig, axes[0])
    fig.suptitle('kbus and the buses users would otherwise pick - ' + sub, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(os.path.join(args.out, 'rtt.png'), dpi=110)
    plt.close(fig)

    # Throughput.
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, listeners in zip(axes, (1, 4)):
        tp = [x for x in rows if x['test'].startswith('fan-out') and x['listeners'] == listeners
              and x['rate'] > 0]
        labels = []
        for x in tp:
            if label_of(x) not in labels:
                labels.append(label_of(x))
        vals = {(label_of(x), x['sched']): x['rate'] for x in tp}
        grouped_barh(ax, labels, modes, vals)
        ax.set_title('announcements, 64 B, 1 sender -> %d listener%s' %
                     (listeners, '' if listeners == 1 else 's'), fontsize=10)
        ax.set_xlabel('messages/s per listener (log scale; higher is better)')
    legend_below(fig, axes[0])
    fig.suptitle('kbus and the buses users would otherwise pick - ' + sub, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(os.path.join(args.out, 'throughput.png'), dpi=110)
    plt.close(fig)
    print('wrote %s and %s' % (os.path.join(args.out, 'rtt.png'),
                               os.path.join(args.out, 'throughput.png')))


if __name__ == '__main__':
    main()
