"""Entry point of `aura-gui`. The Chat window lands with its own issue; until then this says so."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("aura-gui: the desktop window is not built yet; use the `aura` command (aura chat --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
