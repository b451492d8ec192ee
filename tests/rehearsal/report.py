"""The numbers a rehearsal measures (build times, time to healthy, image sizes, idle RSS), printed at the end of
the run and kept as `report.json` in the rehearsal cache."""

from __future__ import annotations

from typing import Any

REPORT: dict[str, Any] = {}
