"""The keys that mean the same wherever the app offers them, declared once.

- `1`..`n` show a screen's tabs in order (`tab_bindings`), through the screen's `show_tab` action.
- `[` / `]` smooth the curves less / more (`smoothing_bindings`, the `smoothing(direction)` action): one
  footer entry, "[ ] Smoothing"; a help lists each key on its own line, under its own direction.
- `+` / `-` / `r` zoom a chart in, out and back to its data (`ZOOM_BINDINGS`, the `zoom(zoom_in)` and
  `reset_zoom` actions), out of the footer: 80 columns hold the rest, and the helps list them.
- `esc` goes back (`BACK`), `?` opens the screen's help (`HELP`, its `help` action), `q` quits (`QUIT`).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.binding import Binding

BACK = Binding("escape", "app.pop_screen", "Back")
HELP = Binding("question_mark", "help", "Help")
QUIT = Binding("q", "app.quit", "Quit")

SMOOTHING_KEYS = Binding.Group("Smoothing", compact=True)

ZOOM_BINDINGS = (
    Binding("plus", "zoom(True)", "Zoom in", key_display="+", show=False),
    Binding("minus", "zoom(False)", "Zoom out", key_display="-", show=False),
    Binding("r", "reset_zoom", "Reset zoom", show=False),
)


def tab_bindings(tabs: Iterable[tuple[str, str]], footer: str | None = None) -> list[Binding]:
    """Keys `1`..`n` for the tabs given as (tab id, title), in order, each out of the footer.

    `footer`: the name of one footer entry that stands for them all ("1-n", on key 1).
    """
    tabs = list(tabs)
    keys = [Binding(str(number), f"show_tab('{tab_id}')", title, show=False)
            for number, (tab_id, title) in enumerate(tabs, 1)]
    if footer is not None and tabs:
        keys.insert(0, Binding("1", f"show_tab('{tabs[0][0]}')", footer, key_display=f"1-{len(tabs)}"))
    return keys


def smoothing_bindings(show: bool = True) -> list[Binding]:
    """`[` and `]`: the smoothing one level down / up; `show`: their footer entry is shown."""
    return [
        Binding("left_square_bracket", "smoothing(-1)", "Smoothing down", show=show, group=SMOOTHING_KEYS),
        Binding("right_square_bracket", "smoothing(1)", "Smoothing up", show=show, group=SMOOTHING_KEYS),
    ]
