"""The HTTP API (FastAPI): REST for machines and other teams, and nginx-rtmp's callbacks."""
