"""GPU cost analytics: the price catalog, GPU-hours and spend from telemetry presence, idle cost, cost per
million tokens, daily spend with a month-end projection, and the seam for auto-shutdown savings."""
