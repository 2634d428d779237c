"""Release tarballs for tests."""

from __future__ import annotations

import io
import tarfile


def tar_gz(files: dict[str, str]) -> bytes:
    """A gzipped tarball of regular files, name -> text."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()
