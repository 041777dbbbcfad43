"""The image's HEALTHCHECK: exit 0 when the server in this container answers /health with 200."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('ASL_VLLM_PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    sys.exit(f"{url}: {error}")
