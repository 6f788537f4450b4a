#!/usr/bin/env python3
"""Plots server RSS over time from a soak.py churn result as an SVG (standard library only).

    python3 scripts/plot_rss.py soak.json docs/churn-rss.svg

The blue line is RSS sampled every second; the green one is the idle process plus what the
server counts its rooms' histories as costing (wschat_history_bytes). The grey rules mark the
steady window (from every room's history being full to the churn's end), and the dashed red
segments the leak rule the churn scenario checks over it: RSS at its end above both 10% over
its start and 2.5% over its value three quarters through.
The two dots are RSS once everyone had gone (the histories kept) and once the histories had
been pushed out.
"""
import json
import math
import sys


def plot(churn, path):
    samples = churn["rss"]
    kept = {t: b for t, _, b, *_ in churn.get("history_kept", [])}
    width, height, left, bottom, top, right = 760, 400, 80, 50, 40, 30
    t_end = churn.get("evicted_at_s") or max(t for t, _ in samples)
    t_max = math.ceil(t_end / 10) * 10
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
    title = (f"wschat-server RSS during churn: {churn['clients']:,} clients in {churn['rooms']:,} rooms, "
             f"{span}, {churn['churn_cycles']:,} reconnections, --history {churn.get('history', 100)}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" font-size="13" text-anchor="middle">{title}</text>']
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
    steady_from, steady_until = churn["steady_s"]
    for t, label in ((steady_from, "histories full: steady window from here"), (steady_until, "churn ends")):
        out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{height - bottom}" stroke="#999"/>')
        anchor = "end" if t == steady_until else "start"
        dx = -4 if t == steady_until else 4
        out.append(f'<text x="{px(t) + dx:.1f}" y="{top + 12}" text-anchor="{anchor}" fill="#666">{label}</text>')
    # The leak rule: the window's end above both its start + 10% and its three quarters + 2.5%.
    window = [t for t, _ in samples if steady_from <= t <= steady_until]
    t_late = next((t for t in window if t >= window[0] + 0.75 * (window[-1] - window[0])), steady_from) \
        if window else steady_from
    late_bound = (churn.get("rss_steady_three_quarters_kib") or churn["rss_steady_start_kib"]) * 1.025 / 1024
    for t_from, v, label, dy in ((steady_from, bound, "start + 10%", 14), (t_late, late_bound, "+ 2.5%", -5)):
        out.append(f'<line x1="{px(t_from):.1f}" y1="{py(v):.1f}" x2="{px(steady_until):.1f}" '
                   f'y2="{py(v):.1f}" stroke="#d62728" stroke-dasharray="6,4"/>')
        out.append(f'<text x="{px(t_from) + 4:.1f}" y="{py(v) + dy:.1f}" fill="#d62728">{label}</text>')
    out.append(f'<text x="{width - right - 4}" y="{height - bottom - 8}" text-anchor="end" fill="#d62728">'
               f'a leak ends the window above both dashed red lines</text>')
    if kept:
        idle = churn["rss_idle_kib"]
        points = " ".join(f"{px(t):.1f},{py((idle + b / 1024) / 1024):.1f}" for t, b in sorted(kept.items()))
        out.append(f'<polyline points="{points}" fill="none" stroke="#2ca02c" stroke-width="1.2" '
                   f'stroke-dasharray="3,3"/>')
        t_label = min(steady_from / 2, t_max)
        b_label = next((b for t, b in sorted(kept.items()) if t >= t_label), 0)
        out.append(f'<text x="{px(t_label) + 6:.1f}" y="{py((idle + b_label / 1024) / 1024) + 16:.1f}" '
                   f'fill="#2ca02c">idle + history bytes (server\'s count)</text>')
    points = " ".join(f"{px(t):.1f},{py(v):.1f}" for (t, _), v in zip(samples, mib))
    out.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    dots = [(samples[-1][0], churn["rss_after_kib"], "everyone gone", "end")]
    if churn.get("evicted_at_s"):
        dots.append((churn["evicted_at_s"], churn["rss_evicted_kib"], "histories pushed out", "end"))
    for t, kib, label, anchor in dots:
        x, y = px(t), py(kib / 1024)
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#1f77b4"/>')
        out.append(f'<text x="{x - 6:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}">{label}</text>')
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
