"""Small modal screens: confirm an action, show the keys, show an error's cause, ask for a path."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmModal(ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.question), id="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm_label} (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#yes")
    def confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def cancel(self) -> None:
        self.dismiss(False)


class ClosingModal(ModalScreen[None]):
    """A modal that only tells: its Close button (id `close`) or a close key dismisses it."""

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#close")
    def close_pressed(self) -> None:
        self.dismiss(None)


class ErrorModal(ClosingModal):
    """What failed (title) and why (cause, the error's own message); any of enter/escape closes it."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, cause: str) -> None:
        super().__init__()
        self.error_title = title
        self.cause = cause

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Label(Content(self.error_title), id="error-title")
            with VerticalScroll(id="error-cause-scroll"):
                yield Static(Content(self.cause), id="error-cause")
            with Horizontal(classes="buttons"):
                yield Button("Close (esc)", id="close", variant="primary")


class HelpModal(ClosingModal):
    """The keys of the screen that opened it, one per line, and a few words on how the screen works."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, title: str, keys: list[tuple[str, str]], notes: str = "") -> None:
        super().__init__()
        self.help_title = title
        self.keys = keys
        self.notes = notes

    def compose(self) -> ComposeResult:
        width = max((len(key) for key, _ in self.keys), default=1)
        lines = [Content.from_markup("[b]$title[/b]", title=self.help_title), Content("")]
        lines += [Content.from_markup("[b $accent]$key[/]  $what", key=key.ljust(width), what=what) for key, what in self.keys]
        if self.notes:
            lines += [Content(""), Content(self.notes)]
        with Vertical(classes="dialog help"):
            with VerticalScroll():
                yield Static(Content("\n").join(lines), id="help-text")
            with Horizontal(classes="buttons"):
                yield Button("Close (esc)", id="close", variant="primary")


class PromptModal(ModalScreen[str | None]):
    """Asks for one line of text (a file path, a name); dismisses with it, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", confirm_label: str = "OK") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Content(self.question), id="question")
            yield Input(self.value, id="answer")
            with Horizontal(classes="buttons"):
                yield Button(self.confirm_label, id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#answer")
    @on(Button.Pressed, "#ok")
    def submit(self) -> None:
        answer = self.query_one("#answer", Input).value.strip()
        self.dismiss(answer or None)

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self) -> None:
        self.dismiss(None)
