"""The app's stylesheet, derived from the current palette so light and dark themes both read well."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

OK, WARN, ERROR = "#2eb872", "#e5a50a", "#e5484d"


def _rgba(color: QColor, alpha: float) -> str:
    return f"rgba({color.red()}, {color.green()}, {color.blue()}, {alpha:.2f})"


def _mix(a: QColor, b: QColor, t: float) -> str:
    """``a`` moved ``t`` of the way towards ``b``, as #rrggbb."""
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t)).name()


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def stylesheet(palette: QPalette) -> str:
    role = QPalette.ColorRole
    window, base, text = palette.color(role.Window), palette.color(role.Base), palette.color(role.Text)
    accent, on_accent = palette.color(role.Highlight), palette.color(role.HighlightedText)
    dark = is_dark(palette)
    border = _mix(window, text, 0.16 if dark else 0.13)
    muted = _mix(text, window, 0.45)
    canvas = _mix(base, window, 0.5) if not dark else _mix(window, QColor("black"), 0.25)
    assistant_bg = base.name() if not dark else _mix(window, text, 0.08)
    return f"""
#ChatView, #ChatInner {{ background: {canvas}; }}
#ChatHeader {{ background: {window.name()}; border-bottom: 1px solid {border}; }}
#ChatTitle {{ font-weight: 600; font-size: 11pt; }}
#EmptyHint {{ color: {muted}; font-size: 11pt; }}
#Bubble[role="user"] {{ background: {accent.name()}; border: none; border-radius: 16px;
    border-bottom-right-radius: 4px; }}
#Bubble[role="user"] QLabel {{ color: {on_accent.name()}; background: transparent; }}
#Bubble[role="user"] #ClipCaption {{ color: {_rgba(on_accent, 0.8)}; font-size: 8pt; }}
#Bubble[role="assistant"] {{ background: {assistant_bg}; border: 1px solid {border}; border-radius: 16px;
    border-bottom-left-radius: 4px; }}
#Bubble[role="assistant"][failed="true"] {{ background: {_rgba(QColor(ERROR), 0.10)};
    border: 1px solid {_rgba(QColor(ERROR), 0.55)}; }}
#Bubble QLabel {{ background: transparent; }}
#BubbleText {{ font-size: 10.5pt; }}
#BubbleMeta {{ color: {muted}; font-size: 8pt; }}
#BubbleCopy {{ border: none; padding: 2px; }}
#ClipPlay {{ background: {_rgba(on_accent, 0.22)}; border: none; border-radius: 16px; }}
#ClipPlay:hover {{ background: {_rgba(on_accent, 0.35)}; }}
#BottomPanel {{ background: {window.name()}; border-top: 1px solid {border}; }}
#MessageInput {{ padding: 7px 14px; border-radius: 18px; border: 1px solid {border}; background: {base.name()};
    font-size: 10.5pt; }}
#MessageInput:focus {{ border: 1px solid {accent.name()}; }}
#SendButton, #TalkButton {{ background: {accent.name()}; color: {on_accent.name()}; border: none;
    border-radius: 18px; padding: 8px 16px; font-weight: 600; }}
#SendButton:hover, #TalkButton:hover {{ background: {_mix(accent, text, 0.12)}; }}
#TalkButton {{ padding: 5px 14px; border-radius: 14px; }}
#TalkButton:pressed {{ background: {ERROR}; }}
#StopButton {{ background: {ERROR}; color: white; border: none; border-radius: 18px; padding: 8px 16px;
    font-weight: 600; }}
#AttachButton {{ border: 1px solid {border}; border-radius: 18px; padding: 8px; background: {base.name()}; }}
#AttachButton:hover {{ border-color: {accent.name()}; }}
#MicToggle {{ border: 1px solid {border}; border-radius: 14px; padding: 4px 12px; background: {base.name()}; }}
#MicToggle:checked {{ background: {_rgba(QColor(OK), 0.14)}; border-color: {_rgba(QColor(OK), 0.7)}; }}
#SegmentLeft, #SegmentRight {{ border: 1px solid {border}; background: {base.name()}; padding: 5px 12px;
    margin: 0; }}
#SegmentLeft {{ border-top-left-radius: 14px; border-bottom-left-radius: 14px; }}
#SegmentRight {{ border-top-right-radius: 14px; border-bottom-right-radius: 14px; border-left: none; }}
#SegmentLeft:checked, #SegmentRight:checked {{ background: {_rgba(accent, 0.16)}; color: {accent.name()};
    border: 1px solid {accent.name()}; }}
#MicState {{ color: {muted}; min-width: 150px; }}
#MicState[level="ok"] {{ color: {OK}; }}
#MicState[level="warning"] {{ color: {WARN}; }}
#MicState[level="error"] {{ color: {ERROR}; }}
#StatusBar QLabel {{ color: {muted}; padding: 0 4px; }}
#StatusSeparator {{ color: {border}; }}
"""
