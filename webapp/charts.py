"""Charts drawn on the server as SVG: no script, so they pass a strict CSP, print, and work
without JavaScript. Each has a <title> and the caller shows the same numbers as text too."""
from dataclasses import dataclass

from markupsafe import Markup, escape

# One colour per run status, the same as the status icons (static/css/app.css).
STATUS_COLOURS = {
    "succeeded": "#15803d", "succeeded_with_warnings": "#b45309", "failed": "#b91c1c",
    "cancelled": "#9ca3af", "skipped": "#d1d5db", "in_progress": "#6b7280", "queued": "#cbd5e1",
}


@dataclass
class Bar:
    label: str  # under the bar (may be "" to leave a gap) and in its tooltip
    parts: list[tuple[str, float]]  # (series key, value) stacked from the bottom
    href: str | None = None  # a bar may link somewhere (a run)


def stacked_bars(bars: list[Bar], *, title: str, colours: dict = STATUS_COLOURS, unit: str = "",
                 width: int = 640, height: int = 180, label_every: int = 1) -> Markup:
    """Vertical bars, each a stack of coloured parts, scaled to the tallest bar."""
    left, bottom, top = 40, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    tallest = max((sum(v for _, v in bar.parts) for bar in bars), default=0) or 1
    step = plot_w / max(len(bars), 1)
    bar_w = max(step * 0.75, 1)
    # A picture (role img) may hold no links: a chart whose bars link is a group of them.
    role = "group" if any(bar.href for bar in bars) else "img"
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="{role}" aria-label="{escape(title)}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        out.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="chart-axis">'
                   f'{escape(_number(tallest * fraction))}{escape(unit)}</text>')
    for index, bar in enumerate(bars):
        x = left + index * step + (step - bar_w) / 2
        y = top + plot_h
        tip = ", ".join(f"{key.replace('_', ' ')} {_number(value)}{unit}" for key, value in bar.parts if value)
        group = [f'<g><title>{escape(bar.label)}: {escape(tip or "none")}</title>']
        for key, value in bar.parts:
            if value <= 0:
                continue
            h = plot_h * value / tallest
            y -= h
            group.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{colours.get(key, "#6b7280")}"/>')
        group.append("</g>")
        markup = "".join(group)
        if bar.href:
            # A shortcut for the mouse; out of the keyboard's way (fifty bars would be fifty tab
            # stops): the caller's text fallback links the same places.
            markup = f'<a href="{escape(bar.href)}" tabindex="-1" aria-hidden="true">{markup}</a>'
        out.append(markup)
        if bar.label and index % label_every == 0:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
                       f'class="chart-axis">{escape(bar.label)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
