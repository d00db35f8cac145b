"""http_reader: GET a URL -> bytes, with an optional on-disk cache keyed by URL."""

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from oremda_lab.worker.sdk import PortValue, operator

CACHE_ENV = "OREMDA_HTTP_CACHE"


def cache_dir():
    """Where cached bodies live (created on demand)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "oremda-lab" / "http"
    return Path(root)


@operator
def http_reader(inputs, params):
    url = params["url"]
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"http_reader only fetches http(s) URLs, not {url!r}")
    key = hashlib.sha256(url.encode()).hexdigest()
    cached_file = cache_dir() / key
    cached, content_type = False, ""
    if params.get("cache", True) and cached_file.is_file():
        body, cached = cached_file.read_bytes(), True
    else:
        with urllib.request.urlopen(url, timeout=params.get("timeout", 60)) as response:
            body = response.read()
            content_type = response.headers.get("Content-Type", "")
        if params.get("cache", True):
            cached_file.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent reader never sees half a file.
            with tempfile.NamedTemporaryFile(dir=cached_file.parent, delete=False) as tmp:
                tmp.write(body)
            os.replace(tmp.name, cached_file)
    meta = {
        "url": url,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "content_type": content_type,
        "cached": cached,
        "filename": Path(urllib.parse.urlparse(url).path).name,
    }
    return {"data": PortValue(body, meta)}
