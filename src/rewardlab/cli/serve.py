"""`rewardlab serve MODEL_DIR`: argument parsing only; the server lives in `rewardlab.serve`."""

from __future__ import annotations

import argparse

from rewardlab.serve.config import DEFAULT_HOST, DEFAULT_MAX_QUEUE, DEFAULT_PORT, OVERLENGTH_POLICIES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` command."""
    p = subparsers.add_parser(
        "serve",
        help="serve a reward model over HTTP (OpenRLHF /get_reward, chat /score)",
        description=(
            "Serve a saved reward model over HTTP with dynamic batching. Endpoints: POST /get_reward "
            "(OpenRLHF remote reward protocol), POST /score (chat messages rendered with the model's "
            "template), GET /health, GET /metrics (Prometheus text)."
        ),
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a saved rewardlab reward model folder")
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}, this machine only)"
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--max-batch", dest="max_batch", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument(
        "--max-wait-ms", dest="max_wait_ms", type=float, default=5.0,
        help="how long the first waiting text waits for others to join its batch (default 5)",
    )
    p.add_argument(
        "--max-batch-tokens", dest="max_batch_tokens", type=int, default=None,
        help="tokens per forward pass, summed over its texts (padded size when the model cannot pack); "
        "default: no limit beyond --max-batch",
    )
    p.add_argument(
        "--max-queue", dest="max_queue", type=int, default=DEFAULT_MAX_QUEUE,
        help="scoring requests held at once (being read, tokenized, waiting or scored); one more gets 503 "
        f"with Retry-After (default {DEFAULT_MAX_QUEUE})",
    )
    p.add_argument(
        "--max-body-bytes", dest="max_body_bytes", type=int, default=16 * 1024 * 1024,
        help="larger request bodies get 413 (default 16 MiB)",
    )
    p.add_argument(
        "--max-texts", dest="max_texts", type=int, default=1024, help="texts per request; more gets 413 (default 1024)"
    )
    p.add_argument(
        "--max-tokens", dest="max_tokens", type=int, default=None,
        help="tokens per text (default: the model's max_length)",
    )
    p.add_argument(
        "--overlength", choices=OVERLENGTH_POLICIES, default=None,
        help="longer texts: keep their last --max-tokens tokens and say so (truncate) or answer 400 (reject); "
             "default: as the model was trained (truncation drop: reject, prompt-left: truncate)",
    )
    p.add_argument(
        "--token-env", dest="token_env", metavar="VAR", default=None,
        help="require 'Authorization: Bearer <token>' with the token read from environment variable VAR",
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument(
        "--log-level", dest="log_level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    """Build the settings and serve; a bad setting, a port in use or a bad model folder is a
    `RewardlabError` (a `ServeConfigError` for the first two), which `rewardlab.cli.main` prints
    in one line with exit status 2."""
    from rewardlab.errors import RewardlabError, UserFileError
    from rewardlab.serve.config import ServeConfig, token_from_env
    from rewardlab.serve.runner import run_server

    config = ServeConfig(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_texts=args.max_texts,
        max_tokens=args.max_tokens,
        max_batch_tokens=args.max_batch_tokens,
        max_queue=args.max_queue,
        overlength=args.overlength,
        token=token_from_env(args.token_env) if args.token_env else None,
        log_level=args.log_level,
    )
    try:
        run_server(args.model_dir, config, device=args.device)
    except RewardlabError:
        raise
    except (FileNotFoundError, ValueError) as error:  # a model folder a loader refused without a RewardlabError
        raise UserFileError(str(error)) from error  # printed by `rewardlab.cli.main` like every other error
    return 0
