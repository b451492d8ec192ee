"""The Google Cloud Storage adapter of the Parquet archive (official `google-cloud-storage` client).

Credentials come from the environment (workload identity on GKE, a service account key locally). The client honours
`STORAGE_EMULATOR_HOST` itself, which is how the tests reach `gcp-storage-emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import storage
from google.resumable_media import DataCorruption

from backend.errors import ConfigError, Unavailable

PARQUET = "application/vnd.apache.parquet"


@contextmanager
def _explained(what: str) -> Iterator[None]:
    """GCS failures become one line that names the object (never a credential). An unreachable endpoint surfaces
    as the client's retry deadline (a GoogleAPIError) after about two minutes."""
    try:
        yield
    except gexc.NotFound as exc:
        raise Unavailable(f"{what}: not found ({exc.message})") from None
    except gexc.GoogleAPIError as exc:
        raise Unavailable(f"{what} failed: {getattr(exc, 'message', exc)}") from None
    except DataCorruption:
        raise Unavailable(f"{what} failed: the CRC32C check did not match (corrupted in transit)") from None


class GcsTarget:
    """Objects under gs://BUCKET/PREFIX; paths are relative to the prefix."""

    def __init__(self, bucket: str, prefix: str, project: str | None) -> None:
        try:
            self._client = storage.Client(project=project)
        except DefaultCredentialsError as exc:
            raise ConfigError(f"ARCHIVE_URL names a GCS bucket but no Google credentials were found: {exc}") from None
        self._bucket = self._client.bucket(bucket)
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"gs://{bucket}/{self._prefix}"

    def write(self, path: str, data: bytes) -> None:
        """One object per call (GCS writes are atomic: a failed upload leaves no object); CRC32C checked in transit."""
        with _explained(f"upload of {self.url}{path}"):
            self._bucket.blob(self._prefix + path).upload_from_string(data, content_type=PARQUET, checksum="crc32c")

    def read(self, path: str) -> bytes:
        with _explained(f"download of {self.url}{path}"):
            return self._bucket.blob(self._prefix + path).download_as_bytes(checksum="crc32c")

    def list(self, prefix: str) -> list[str]:
        with _explained(f"listing {self.url}{prefix}"):
            names = self._client.list_blobs(self._bucket, prefix=self._prefix + prefix)
            return sorted(blob.name[len(self._prefix):] for blob in names)
