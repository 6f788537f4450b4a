#!/usr/bin/env python3
"""Plots server RSS over time from a soak.py churn result as an SVG (standard library only).

    python3 scripts/plot_rss.py soak.json docs/churn-rss.svg

The line is RSS sampled every second; the dashed line is the leak bound the churn scenario
checks (10% above the RSS at the start of the steady load, marked by the grey rule).
"""
import json
import math
import sys


def plot(churn, path):
    samples = churn["rss"]
    width, height, left, bottom, top, right = 760, 400, 80, 50, 40, 30
    t_max = max(t for t, _ in samples)
    mib = [r / 1024 for _, r in samples]
    bound = churn["rss_steady_start_kib"] * 1.10 / 1024
    y_max = math.ceil(max(max(mib), bound) / 10) * 10 or 10
    y_step = max(1, y_max // 5)

    def px(t):
        return left + t / t_max * (width - left - right)

    def py(v):
        return height - bottom - v / y_max * (height - top - bottom)

    duration = churn["duration_s"]
    span = f"{duration / 60:g} min" if duration >= 60 else f"{duration:g} s"
    title = (f"wschat-server RSS during churn: {churn['clients']:,} clients, {span}, "
             f"{churn['churn_cycles']:,} reconnections")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" font-size="14" text-anchor="middle">{title}</text>']
    for v in range(0, y_max + 1, y_step):
        y = py(v)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{v} MiB</text>')
    t_step = 60 if t_max > 180 else 10 if t_max > 30 else 1
    for t in range(0, int(t_max) + 1, t_step):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">seconds</text>')
    steady = next((t for t, r in samples if r == churn["rss_steady_start_kib"]), None)
    if steady is not None:
        out.append(f'<line x1="{px(steady):.1f}" y1="{top}" x2="{px(steady):.1f}" y2="{height - bottom}" '
                   f'stroke="#999"/>')
        out.append(f'<text x="{px(steady) + 4:.1f}" y="{top + 12}" fill="#666">steady load from here</text>')
    out.append(f'<line x1="{left}" y1="{py(bound):.1f}" x2="{width - right}" y2="{py(bound):.1f}" '
               f'stroke="#d62728" stroke-dasharray="6,4"/>')
    out.append(f'<text x="{width - right - 4}" y="{py(bound) - 5:.1f}" text-anchor="end" fill="#d62728">'
               f'leak bound: steady start + 10%</text>')
    points = " ".join(f"{px(t):.1f},{py(v):.1f}" for (t, _), v in zip(samples, mib))
    out.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().split("\n\n")[1])
    with open(sys.argv[1]) as f:
        results = json.load(f)
    if "churn" not in results:
        sys.exit(f"{sys.argv[1]} has no churn result")
    plot(results["churn"], sys.argv[2])


if __name__ == "__main__":
    main()
