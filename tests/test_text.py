"""Text from a model or an evaluation is shown, never obeyed, by a terminal."""

from engine.text import printable


def test_escape_sequences_become_visible():
    hostile = "ok \x1b]0;title\x07 \x1b[2J \x1b[31mred\x1b[0m"
    shown = printable(hostile)
    assert "\x1b" not in shown and "\x07" not in shown
    assert "␛]0;title␇" in shown and "red" in shown


def test_ordinary_text_and_line_breaks_pass():
    assert printable("a\nb\tc — ü") == "a\nb\tc — ü"
    assert printable(None) == ""


def test_one_line_shows_breaks_and_unicode_separators():
    shown = printable("a\nb\r\u2028c\u202e", one_line=True)
    assert "\n" not in shown and "\r" not in shown and "\u2028" not in shown
    assert shown == "a⏎b␍<U+2028>c<U+202E>"
