#!/usr/bin/env python3
"""Latency by percentile, from one or more HdrHistogram percentile-distribution files, as SVG.

    wschat-bench URL ... --histogram wschat.hgrm
    scripts/plot_latency.py wschat.hgrm node-ws.hgrm --out latency.svg [--title TEXT]

Each file is what `wschat-bench --histogram` writes (HdrHistogram's own text format, values in
milliseconds); the series is named after the file. The x axis is HdrHistogram's: 1/(1-p) on a
log scale, so the tail from 90% to 99.999% gets as much room as the body; the y axis is latency
in milliseconds.
"""
import argparse
import math
import os


def read(path):
    """(percentile, value in ms) points of one file."""
    points = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) < 3 or line.startswith("#"):
                continue
            try:
                value, percentile = float(fields[0]), float(fields[1])
            except ValueError:
                continue  # the header line
            if percentile < 1.0:
                points.append((percentile, value))
    return points


def svg(series, title):
    width, height, left, right, top, bottom = 760, 440, 70, 170, 40, 60
    xs = [math.log10(1 / (1 - p)) for _, points in series for p, _ in points]
    ys = [v for _, points in series for _, v in points]
    xmax = max(max(xs), 3)
    ymax = max(ys) * 1.1 or 1

    def px(p):
        return left + math.log10(1 / (1 - p)) / xmax * (width - left - right)

    def py(v):
        return height - bottom - v / ymax * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">{title}</text>']
    for decade, label in [(0, "0%"), (1, "90%"), (2, "99%"), (3, "99.9%"), (4, "99.99%"), (5, "99.999%")]:
        if decade > xmax:
            break
        x = left + decade / xmax * (width - left - right)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{label}</text>')
    for i in range(6):
        v = ymax * i / 5
        y = py(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 16}" text-anchor="middle">percentile</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" transform="rotate(-90 16 {(top + height - bottom) / 2})" text-anchor="middle">latency (ms)</text>')
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (name, points) in enumerate(series):
        colour = colours[i % len(colours)]
        line = " ".join(f"{px(p):.1f},{py(v):.1f}" for p, v in points)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = top + 10 + i * 20
        out.append(f'<line x1="{width - right + 15}" y1="{ly}" x2="{width - right + 40}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{width - right + 46}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="percentile-distribution files (wschat-bench --histogram)")
    parser.add_argument("--out", required=True, help="SVG file to write")
    parser.add_argument("--title", default="Latency by percentile")
    args = parser.parse_args()
    series = [(os.path.splitext(os.path.basename(path))[0], read(path)) for path in args.files]
    empty = [name for name, points in series if not points]
    if empty:
        parser.error(f"no percentile lines in: {', '.join(empty)}")
    with open(args.out, "w") as f:
        f.write(svg(series, args.title))


if __name__ == "__main__":
    main()
