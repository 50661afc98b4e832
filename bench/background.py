"""Background load: other users' jobs that keep the Horde's queue long while a benchmark measures.

    python -m bench.background --url …/api/ --depth 16 --permit HOST:PORT

Keeps ``--depth`` image jobs in flight (each submission takes a permit, and its key, from the
runner's pacer), looking at each one every ``--poll`` seconds with ``generate/check``; never
fetches a status.
On SIGTERM it DELETEs whatever it still has in flight, so the next case starts with an empty
queue, and prints ``{"submitted", "finished", "deleted", "errors"}``. Its calls are not counted
for either client: it is a different user, as on the real Horde.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

import aiohttp

from bench.pacer import acquire_permit

AGENT = "horde-bench-background:1.0:bench"


async def run(args: argparse.Namespace) -> dict[str, int]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host, port = args.permit.rsplit(":", 1)
    stats = {"submitted": 0, "finished": 0, "deleted": 0, "errors": 0}
    in_flight: set[str] = set()
    body = {
        "prompt": "background load",
        "models": ["stable_diffusion"],
        "params": {"width": args.size, "height": args.size, "steps": args.steps, "n": 1},
    }
    headers = {"Client-Agent": AGENT}

    async def lane(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            key = await acquire_permit(host, int(port), "background")
            if stop.is_set():
                return
            async with http.post(
                args.url + "v2/generate/async", json=body, headers={**headers, "apikey": key}
            ) as response:
                answer = await response.json(content_type=None)
            if response.status != 202:
                stats["errors"] += 1
                print(f"background submit: {response.status} {answer}", file=sys.stderr, flush=True)
                await asyncio.sleep(args.poll)
                continue
            gen_id = answer["id"]
            stats["submitted"] += 1
            in_flight.add(gen_id)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.poll)
                if stop.is_set():
                    return
                async with http.get(args.url + f"v2/generate/check/{gen_id}", headers=headers) as response:
                    check = await response.json(content_type=None)
                if response.status == 200 and check.get("done"):
                    in_flight.discard(gen_id)
                    stats["finished"] += 1
                    break

    async with aiohttp.ClientSession() as http:
        lanes = [asyncio.create_task(lane(http)) for _ in range(args.depth)]
        await stop.wait()
        await asyncio.gather(*lanes, return_exceptions=True)
        for gen_id in list(in_flight):
            async with http.delete(args.url + f"v2/generate/status/{gen_id}", headers=headers) as response:
                stats["deleted"] += response.status == 200
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--permit", required=True)
    parser.add_argument("--poll", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
