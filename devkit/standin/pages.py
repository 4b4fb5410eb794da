"""What the stand-in's HTML pages (Checkout, the Customer Portal) share: escaping."""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    """``value`` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)
