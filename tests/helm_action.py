"""Run by the Python >= 3.12 venv that has helm-sdkpy: lint a chart, or install it against a
kubeconfig (the stand-in API). Prints one JSON document on stdout.

python helm_action.py lint CHART
python helm_action.py install CHART KUBECONFIG_JSON VALUES_JSON
"""

import asyncio
import json
import sys

from helm_sdkpy import Configuration, Install, Lint


async def main() -> None:
    action, chart = sys.argv[1], sys.argv[2]
    if action == "lint":
        result = await Lint(Configuration()).run(chart)
    else:
        config = Configuration(namespace="monitoring", kubeconfig=sys.argv[3])
        result = await Install(config).run("unpod", chart, values=json.loads(sys.argv[4]),
                                           wait=False, timeout=60)
    print(json.dumps(result, default=str))


asyncio.run(main())
